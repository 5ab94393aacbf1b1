"""Property-based fuzzing of the HTTP API from its own ``/openapi.json`` with schemathesis
(installed for this suite: ``pip install schemathesis``): every operation gets requests
generated from the schema (valid and invalid ones), with a real API key, against a real
``septet serve`` process on 127.0.0.1. Asserted: no answer is a server error (5xx) other
than an intended 503. Bounded: a few examples per operation, well under a minute.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 25
PROVIDER = "fuzz"  # an HTTP provider, so the webhook routes reach their parsers
PROVIDER_TOKEN = "fuzz-provider-shared-secret-0123456789"


@pytest.fixture
def gateway(tmp_path: Path):  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "septet.toml"
    config.write_text(f'log_level = "ERROR"\n[http]\nport = {port}\n'
                      f'[store]\npath = "{tmp_path / "store"}"\nsync = false\n'
                      "[simulator]\ndelivery_delay = 0.0\n"
                      f'[[http_providers]]\nname = "{PROVIDER}"\nurl = "http://127.0.0.1:9/sms"\n'
                      f'receipt_token = "{PROVIDER_TOKEN}"\ninbound_id_path = "id"\n')
    key_file = tmp_path / "key"
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config),
                             "serve", "--print-key-file", str(key_file)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200 and key_file.exists():
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)
    yield url, key_file.read_text().strip()
    proc.terminate()
    proc.wait(timeout=20)


def test_no_operation_answers_a_server_error(gateway: tuple[str, str]) -> None:
    url, key = gateway
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 10
    failures: list[str] = []
    seen: dict[int | str, int] = {}
    for operation in operations:
        _fuzz(operation, url, key, failures, seen)
    print(len(operations), "operations", seen)
    assert not failures, "\n".join(failures[:20])
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0, seen  # both kinds were generated
    assert seen.get("webhook bodies read", 0) > 0, seen  # the receipt/inbound parsers were fuzzed


def _fuzz(operation: object, url: str, key: str, failures: list[str],
          seen: dict[int | str, int]) -> None:
    name = f"{operation.method.upper()} {operation.path}"  # type: ignore[attr-defined]

    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)
    def run(case: object) -> None:
        token = key
        params = case.path_parameters  # type: ignore[attr-defined]
        if params and "connector" in params:  # the HTTP provider's webhooks: its token, its name
            params["connector"], token = PROVIDER, PROVIDER_TOKEN
        response = case.call(base_url=url,  # type: ignore[attr-defined]
                             headers={"authorization": f"Bearer {token}"}, timeout=10)
        kind = response.status_code // 100 * 100
        seen[kind] = seen.get(kind, 0) + 1
        if params and "connector" in params and response.status_code not in (401, 404):
            seen["webhook bodies read"] = seen.get("webhook bodies read", 0) + 1
        if response.status_code >= 500 and response.status_code != 503:
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")

    run()
