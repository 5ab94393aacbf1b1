"""``python -m adapters.simulator``: options map onto SimulatorConfig; the process serves SMPP
and prints its counters as JSON when interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from adapters.simulator.config import SimulatorConfig
from adapters.simulator.main import config_from_args, parser
from adapters.smpp.client import SmppCarrier
from tests.adapters.test_client import Sink, parts

ROOT = Path(__file__).resolve().parents[2]


def test_options_map_onto_the_config() -> None:
    args = parser().parse_args([
        "--latency", "0.1", "--max-rate", "500", "--receipt-delay", "1,5",
        "--outcomes", "DELIVRD=90,undeliv=10", "--error-rate", "0.01", "--error-status", "0x58",
        "--disconnect-rate", "0.001", "--id-format", "hex", "--seed", "3", "--password", "pw"])
    assert config_from_args(args) == SimulatorConfig(
        password="pw", latency=0.1, max_submit_rate=500, receipt_delay_min=1.0,
        receipt_delay_max=5.0, outcomes=(("DELIVRD", 90.0), ("UNDELIV", 10.0)),
        submit_error_rate=0.01, submit_error_status=0x58, disconnect_rate=0.001,
        id_format="hex", seed=3)


async def test_simulator_process_serves_and_reports_counters() -> None:
    # Popen only starts the process (no wait); the blocking reads below run in a thread.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "adapters.simulator", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        with trio.fail_after(20):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        port = int(line.rsplit(":", 1)[1])
        sink = Sink()
        carrier = SmppCarrier("cli", "127.0.0.1", port, "a", "b")
        async with trio.open_nursery() as nursery:
            await nursery.start(carrier.run, sink)
            results = await carrier.submit_many(parts(10))
            await sink.wait_for(10)
            nursery.cancel_scope.cancel()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=20))
    assert all(r.ok for r in results)
    counters = json.loads(out.strip().splitlines()[-1])
    assert counters["submits_accepted"] == 10 and counters["distinct_accepted"] == 10
    assert counters["duplicates"] == 0 and counters["binds"] == 1
