"""docs/metrics.md lists exactly the septet_* metrics the code exports, and a real run moves them
consistently (parts submitted == parts made == receipts matched, messages delivered == sent)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import actors._metrics  # noqa: F401  (registers the core metrics)
import adapters.smpp._metrics  # noqa: F401  (registers the SMPP window collector)
import gateway.metrics
from gateway import cli
from gateway import config as cfg
from gateway.store import open_store

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(septet_[a-z0-9_]+)` \| (counter|gauge|histogram) \| ([^|]*)\|")


def catalogue() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, labels) from the table in docs/metrics.md."""
    out = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            labels = frozenset(re.findall(r"`([a-z_]+)`", m.group(3)))
            out[m.group(1)] = (m.group(2), labels)
    return out


def exposed_name(name: str, kind: str) -> str:
    return name + "_total" if kind == "counter" else name


async def code_metrics(tmp_path: Path) -> dict[str, str]:
    """name -> type of every septet_* family registered (the store collector bound to a store)."""
    async with open_store(str(tmp_path / "db"), sync=False, map_size=1 << 20) as store:
        gateway.metrics.bind_store(store)
        try:
            return {exposed_name(f.name, f.type): f.type for f in REGISTRY.collect()
                    if f.name.startswith("septet_")}
        finally:
            gateway.metrics.bind_store(None)


async def test_the_catalogue_and_the_code_name_the_same_metrics(tmp_path: Path) -> None:
    doc = catalogue()
    code = await code_metrics(tmp_path)
    assert len(doc) > 30
    assert sorted(set(code) - set(doc)) == [], "exported but not catalogued"
    assert sorted(set(doc) - set(code)) == [], "catalogued but not exported"
    assert {n: t for n, (t, _) in doc.items()} == code


def test_catalogued_labels_are_bounded_words() -> None:
    for name, (_, labels) in catalogue().items():
        assert labels <= {"route", "status", "field", "path", "code", "carrier", "outcome",
                          "event", "policy", "stage", "result", "routed"}, name  # routed: yes|no


def scrape_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= set(ls))


@pytest.mark.slow
async def test_a_real_run_moves_the_catalogue_consistently(tmp_path: Path) -> None:
    config = cfg.load(None, env={"SEPTET_STORE__PATH": str(tmp_path / "db"),
                                 "SEPTET_HTTP__PORT": "0", "SEPTET_STORE__SYNC": "false",
                                 "SEPTET_SIMULATOR__DELIVERY_DELAY": "0"})
    texts = ["Hello from the catalogue test", "Olá " + "x" * 200]  # 1 part, 2 parts (GSM7)
    sent = 20
    parts = sum(1 if i % 2 == 0 else 2 for i in range(sent))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: cli.serve(
            config, key_file=str(tmp_path / "key"), task_status=task_status))
        key = (tmp_path / "key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            before = scrape_values((await c.get("/metrics")).text)
            body = {"messages": [{"to": f"+3519123400{i:02d}", "from": "Septet",
                                  "text": texts[i % 2]} for i in range(sent)]}
            r = await c.post("/v1/messages", json=body, headers={"authorization": f"Bearer {key}"})
            assert r.status_code == 202, r.text
            with trio.fail_after(15):
                while True:
                    now = scrape_values((await c.get("/metrics")).text)
                    delivered = (total(now, "septet_correlator_events_total", event="SMS_DELIVERED")
                                 - total(before, "septet_correlator_events_total",
                                         event="SMS_DELIVERED"))
                    if delivered >= sent and total(now, "septet_event_loop_lag_seconds_count"):
                        break
                    await trio.sleep(0.05)
            text = (await c.get("/metrics")).text
            health = await c.get("/healthz")
        nursery.cancel_scope.cancel()
    after = scrape_values(text)
    assert health.status_code == 200 and health.json() == {
        "status": "ok", "carriers": {"simulator": True},
        "actors": dict.fromkeys(("scheduler", "rate_limiter", "segmenter", "dispatcher",
                                 "receipt_correlator", "notifier"), True)}

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    families = {f.name for f in text_string_to_metric_families(text)}
    for name, (kind, _) in catalogue().items():
        base = name[:-len("_total")] if kind == "counter" else name
        assert base in families, f"{name} missing from /metrics"
    assert delta("septet_api_messages_accepted_total") == sent
    assert delta("septet_ingress_messages_total") == sent
    assert delta("septet_segmenter_parts_total") == parts
    assert delta("septet_dispatcher_submits_total", carrier="simulator", outcome="accepted") == parts
    assert delta("septet_dispatcher_submits_total", outcome="permanent") == 0
    matched = (delta("septet_correlator_receipts_total", outcome="matched")
               + delta("septet_correlator_receipts_total", outcome="orphan_matched"))
    assert matched == parts
    assert delta("septet_correlator_events_total", event="SMS_SENT") == sent
    assert delta("septet_correlator_events_total", event="SMS_DELIVERED") == sent
    assert delta("septet_core_illegal_transitions_total") == 0
    assert delta("septet_http_requests_total", route="/v1/messages", status="202") == 1
    assert total(after, "septet_core_ready") == 1
    assert total(after, "septet_carrier_ready", carrier="simulator") == 1
    assert total(after, "septet_core_in_doubt_parts_at_start") == 0
    assert total(after, "septet_core_outbox_messages") == 0  # all SENT: none waits
    assert total(after, "septet_core_outbox_oldest_age_seconds") == 0
    assert delta("septet_store_commits_total") > 0
    assert delta("septet_dispatcher_submit_seconds_count", carrier="simulator") > 0
    assert delta("septet_store_ops_total") >= delta("septet_store_commits_total")
    assert 0 < total(after, "septet_store_used_bytes") <= total(after, "septet_store_map_size_bytes")
    assert total(after, "septet_event_loop_lag_seconds_count") > 0
    assert delta("septet_store_commit_latency_seconds_count") == delta("septet_store_commits_total")
    assert delta("septet_receipt_lag_seconds_count") == matched  # one value per matched receipt
    assert delta("septet_receipt_lag_seconds_sum") >= 0
    # bounded labels: no phone number, id or long free text ever becomes a label value
    for (_, labels) in after:
        for _, value in labels:
            assert len(value) <= 40 and not re.search(r"\d{5,}", value), value


async def test_liveness_names_an_actor_whose_task_is_gone(tmp_path: Path) -> None:
    import time

    from gateway.app import open_gateway
    from tests.fakes import ScriptedCarrier

    async def notifier_that_dies(inbox: object, *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()  # then returns: the task is gone

    async def notifier_that_lives(inbox: trio.MemoryReceiveChannel[bytes], *,
                                  task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async with inbox:
            async for _ in inbox:
                pass

    async with open_store(str(tmp_path / "db"), sync=False) as store:
        for notifier, alive in ((notifier_that_lives, True), (notifier_that_dies, False)):
            carrier = ScriptedCarrier(now=time.time)
            async with open_gateway(store, [carrier], notifier=notifier) as gw:
                await trio.lowlevel.checkpoint()
                doc = gw.liveness()
                assert doc["actors"]["notifier"] is alive
                assert doc["healthy"] is alive
                assert all(v for k, v in doc["actors"].items() if k != "notifier")
                assert set(doc["carriers"]) == {carrier.name}
