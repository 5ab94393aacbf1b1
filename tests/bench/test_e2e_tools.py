"""Smoke tests of the end-to-end bench tools at tiny sizes (bench/e2e.py and its helpers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _e2e_receiver as receiver
from bench import chart
from bench.loadgen import jobs, message
from codec import Policy, count
from gateway.config import StoreConfig

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_message_mix_is_distinct_and_has_the_parts_it_claims() -> None:
    msgs = [message(r) for r in range(1, 101)]
    assert len({m["to"] for m in msgs}) == len({m["text"] for m in msgs}) == 100
    parts = {}
    for r, m in enumerate(msgs, start=1):
        policy = Policy(mode="ucs2" if m.get("encoding") == "ucs2" else "transliterate")
        c = count(m["text"], policy)
        parts[r % 10] = (c.encoding, c.parts)
    assert {parts[k] for k in range(6)} == {("gsm7", 1)}
    assert {parts[k] for k in (6, 7)} == {("ucs2", 1)}
    assert {parts[k] for k in (8, 9)} == {("gsm7", 2)}


def test_batch_jobs_carry_100_messages_and_cover_the_count_once() -> None:
    got = list(jobs("h", "k", "batch", 1, 250))
    assert [(f, n) for f, n, _ in got] == [(1, 100), (101, 100), (201, 50)]
    body = got[2][2].split(b"\r\n\r\n", 1)[1]
    doc = json.loads(body)
    assert [m["client_ref"] for m in doc["messages"]] == [str(r) for r in range(201, 251)]
    assert f"Content-Length: {len(body)}".encode() in got[2][2]


def test_receiver_counts_finals_once_and_reports_duplicates() -> None:
    sink = receiver.Received()
    ev = {"type": "SMS_SENT", "data": {"client_ref": "7"}}
    fin = {"type": "SMS_DELIVERED", "data": {"client_ref": "7"}}
    sink.record(json.dumps(ev).encode(), 1.0)
    sink.record(json.dumps([fin, {"type": "SMS_NOT_SENT", "data": {"client_ref": "8"}}]).encode(),
                2.0)
    sink.record(json.dumps(fin).encode(), 3.0)  # a repeat (at-least-once delivery)
    sink.record(b"not json", 4.0)
    assert sink.final_at == {7: 2.0, 8: 2.0} and sink.delivered_at == {7: 2.0}
    assert (sink.events, sink.duplicates, sink.bad) == (4, 1, 1)
    assert receiver.summary(sink)["final_by_type"] == {"SMS_DELIVERED": 1, "SMS_NOT_SENT": 1}


def test_chart_writes_a_self_contained_page(tmp_path: Path) -> None:
    tl = {"t": [0.5, 1.5, 2.5], "panels": [
        {"title": "throughput", "unit": "msgs/s", "series": {"a": [1, 5, 3], "b": [None, 2, 2]}}]}
    png = chart.render({"run": tl}, "T", str(tmp_path / "c.html"), str(tmp_path / "c.png"))
    page = (tmp_path / "c.html").read_text()
    assert page.count("<svg") == 1 and "polyline" in page and "<script" not in page
    assert "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    if png:
        assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_e2e_runs_both_modes_at_a_tiny_size(tmp_path: Path) -> None:
    out, figs = tmp_path / "r.json", tmp_path / "chart"
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--batch-count", "300", "--single-count", "60",
         "--paced-seconds", "1", "--duration", "10", "--drain", "15", "--callback-batch", "10",
         "--out", str(out), "--chart", str(figs)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    head = json.loads(done.stdout.strip().splitlines()[-1])
    assert head["lost"] == head["duplicates"] == head["without_final"] == 0
    assert head["e2e_batch_msgs_per_s"] > 0 and head["e2e_single_msgs_per_s"] > 0
    assert head["accept_p99_ms"] is not None
    doc = json.loads(out.read_text())
    batch = doc["modes"]["batch"]
    assert batch["messages_accepted_total"] == 300
    assert batch["parts_expected"] == batch["parts_received_distinct"] == 360
    assert batch["metrics_sample"]["septet_api_messages_accepted_total"] == 300
    writer = {"store writer process"} if StoreConfig().resolved_writer == "process" else set()
    assert set(batch["cpu_s_per_1000_msgs"]) == {"gateway", "simulator", "loadgen",
                                                 "receiver+orchestrator"} | writer
    assert (tmp_path / "chart.html").exists()
    assert "[batch]" in done.stderr  # the progress line
