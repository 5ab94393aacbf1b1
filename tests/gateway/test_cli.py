"""The septet command: config, accounts, and `serve` answering the README's first curl."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import trio

from gateway import cli
from gateway import config as cfg


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "db"))
    monkeypatch.setenv("SEPTET_STORE__SYNC", "false")
    return tmp_path


def test_config_prints_resolved_tree(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["store"]["path"] == str(env / "db") and doc["http"]["port"] == 8080


def test_bad_config_exits_2_naming_every_key(env: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEPTET_HTTP__PORT", "x")
    monkeypatch.setenv("SEPTET_HTTP__NOPE", "1")
    assert cli.main(["config"]) == 2
    err = capsys.readouterr().err
    assert "http.port" in err and "http.nope" in err


def test_accounts_lifecycle(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["accounts", "create", "shop", "--prefix", "351", "--encoding", "ucs2"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk_")
    assert cli.main(["accounts", "create", "shop"]) == 1
    assert "exists" in capsys.readouterr().err
    assert cli.main(["accounts", "list"]) == 0
    assert capsys.readouterr().out.split() == ["shop"]
    assert cli.main(["accounts", "set", "shop", "--callback-secret", "s"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["default_prefix"] == "351" and shown["callback_secret"] == "(set)"
    assert cli.main(["accounts", "key", "shop"]) == 0
    assert capsys.readouterr().out.startswith("sk_")
    assert cli.main(["accounts", "revoke", key]) == 0
    assert cli.main(["accounts", "revoke", key]) == 1
    assert cli.main(["accounts", "show", "nobody"]) == 1


@pytest.mark.slow
async def test_serve_answers_the_readme_curl_and_delivers(env: Path) -> None:
    config = cfg.load(None, env={"SEPTET_STORE__PATH": str(env / "db"), "SEPTET_HTTP__PORT": "0",
                                 "SEPTET_STORE__SYNC": "false",
                                 "SEPTET_SIMULATOR__DELIVERY_DELAY": "0"})
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: cli.serve(
            config, key_file=str(env / "key"), task_status=task_status))
        key = (env / "key").read_text().strip()
        assert (env / "db" / "dev-key").stat().st_mode & 0o777 == 0o600
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            # exactly what curl -d sends: no JSON content type
            r = await c.post("/v1/messages", headers={
                "authorization": f"Bearer {key}",
                "content-type": "application/x-www-form-urlencoded"},
                content='{"to":"+351912345678","from":"Septet","text":"Olá"}'.encode())
            assert r.status_code == 202, r.text
            with trio.fail_after(10):
                while True:
                    view = (await c.get(f"/v1/messages/{r.json()['id']}",
                                        headers={"authorization": f"Bearer {key}"})).json()
                    if view["state"] == "DELIVERED":
                        break
                    await trio.sleep(0.05)
            assert [e["event"] for e in view["events"]] == ["SMS_SENT", "SMS_DELIVERED"]
            assert view["part_status"][0]["connector"] == "simulator"
            assert (await c.get("/readyz")).status_code == 200
        nursery.cancel_scope.cancel()
