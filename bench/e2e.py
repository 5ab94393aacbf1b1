"""End-to-end benchmark: HTTP API → LMDB → SMPP simulator → receipts → callbacks, all real.

    python -m bench.e2e                       # both modes, default sizes (about a minute)
    python -m bench.e2e --callback-batch 1    # one callback request per event (the default config)
    python -m bench.e2e --modes batch --batch-count 200000 --duration 30
    septet bench e2e [same options]

For each mode a fresh set of processes on loopback:

* the SMSC simulator (``python -m adapters.simulator``), receipts at once, all DELIVRD;
* the gateway (``python -m gateway.cli serve``) on a new LMDB store with ``sync = true``,
  configured with one ``[[smpp]]`` connector to that simulator and an account whose
  callback URL points at the receiver;
* the load generator (``python -m bench.loadgen``): N keep-alive connections, a GSM7 / UCS-2
  / two-part mix, every message distinct (``client_ref`` = sequence number);
* this process: the callback receiver (bench/_e2e_receiver.py), the live progress line on
  stderr, and the bookkeeping.

A run sends for a fixed count or duration (whichever ends first), then waits (bounded) until
every accepted message has a final status at the receiver, stops the gateway (SIGINT, graceful)
and the simulator (which prints its per-part counters), and checks that the simulator accepted
each expected part exactly once (``lost``, ``duplicates``). The single mode is followed by a
short paced phase at half of its measured end-to-end rate: ``accept_p99_ms`` is the p99
accept latency there (measured from each request's due time).

Output: a table, ``--out`` (JSON with everything), a chart (``.html`` self-contained SVG and
``.png`` when matplotlib is installed) and, last, one JSON line of the headline figures.
CPU seconds come from /proc/<pid>/stat (utime + stime), peak RSS from VmHWM in /proc/<pid>/status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench import _e2e_receiver as receiver
from bench import chart
from bench._common import free_port
from bench.loadgen import message
from gateway.config import StoreConfig

PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------- processes


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[str, float]:
    """utime + stime of a live process split into its main thread and the others, seconds."""
    out = {"main": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            with open(task / "stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        key = "main" if task.name == str(pid) else "other threads"
        out[key] += (int(fields[11]) + int(fields[12])) / TICK
    return out


def children_cpu(pid: int) -> float:
    """utime + stime of the live child processes of ``pid`` (the store writer process with
    ``--store-writer process``), seconds."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            try:
                total += proc_cpu(int(kid))
            except OSError:
                pass  # ended meanwhile
    return total


def main_thread_waited(pid: int) -> float:
    """Seconds the main thread has spent runnable but waiting for a CPU (/proc schedstat)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def proc_peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def wait_port(port: int, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while True:
            try:
                s = await trio.open_tcp_stream("127.0.0.1", port)
                await s.aclose()
                return
            except OSError:
                await trio.sleep(0.05)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """A one-shot GET on loopback (Connection: close)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
                              .encode())
        data = b""
        with trio.move_on_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(h.split(b":")[1]) for h in head.split(b"\r\n")
                               if h.lower().startswith(b"content-length:")), None)
                if length is not None and len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12] or 0), body


class Child:
    """A child process with its stdout collected line by line."""

    def __init__(self, name: str, proc: trio.Process) -> None:
        self.name, self.proc = name, proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, nursery: trio.Nursery, name: str, argv: list[str],
                    env: dict[str, str] | None = None) -> Child:
        proc = await trio.lowlevel.open_process(
            argv, stdout=subprocess.PIPE, stderr=None,
            env={**os.environ, **(env or {})}, cwd=str(Path(__file__).resolve().parent.parent))
        child = cls(name, proc)
        nursery.start_soon(child._read)
        return child

    async def _read(self) -> None:
        buf = b""
        assert self.proc.stdout is not None
        async for chunk in self.proc.stdout:
            buf += chunk
            *done, buf = buf.split(b"\n")
            self.lines.extend(x.decode(errors="replace") for x in done)
        if buf:
            self.lines.append(buf.decode(errors="replace"))

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def rss(self) -> float:
        return proc_peak_rss_mib(self.proc.pid)

    async def stop(self, timeout: float = 20.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            with trio.move_on_after(timeout):
                return await self.proc.wait()
            self.proc.kill()
        return await self.proc.wait()


# ------------------------------------------------------------------------------- one run


@dataclass
class Phase:
    """Load-generator records of one phase plus what the receiver saw for them."""

    name: str
    doc: dict[str, Any]
    start_ref: int
    count: int
    finals: dict[int, float] = field(default_factory=dict)
    delivered: dict[int, float] = field(default_factory=dict)

    def accepted_refs(self) -> list[tuple[int, float]]:
        """(ref, accept time) of every accepted message."""
        out: list[tuple[int, float]] = []
        for first, n, t in zip(self.doc["first"], self.doc["n"], self.doc["t_resp"], strict=True):
            out.extend((r, t) for r in range(first, first + n))
        return out


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def analyse(phase: Phase) -> dict[str, Any]:
    d = phase.doc
    if not d["t_send"]:
        return {"accepted_msgs": 0}
    t0 = min(d["t_send"])
    t_last_acc = max(d["t_resp"])
    acc = phase.accepted_refs()
    accept_lat = [(r - s) * 1000 for s, r in zip(d["t_send"], d["t_resp"], strict=True)]
    finals = [phase.finals[r] for r, _ in acc if r in phase.finals]
    deliv_lat = [(phase.delivered[r] - t) * 1000 for r, t in acc if r in phase.delivered]
    t_last_final = max(finals, default=t0)
    return {
        "accepted_msgs": d["accepted_msgs"], "sent_msgs": d["sent_msgs"],
        "requests": len(d["t_send"]), "retried_requests": d["retries"], "errors": d["errors"],
        "final_msgs": len(finals), "delivered_msgs": len(deliv_lat),
        "accepted_msgs_per_s": round(d["accepted_msgs"] / max(t_last_acc - t0, 1e-9), 1),
        "e2e_msgs_per_s": round(len(finals) / max(t_last_final - t0, 1e-9), 1),
        "accept_ms": {f"p{p}": round(pct(accept_lat, p), 2) for p in (50, 95, 99)},
        "accept_to_delivered_ms": {f"p{p}": round(pct(deliv_lat, p), 1) for p in (50, 95, 99)},
        "_t0": t0,
    }


def timeline(phase: Phase, t0: float) -> dict[str, Any]:
    """Per-second series: accepted and final msgs/s, accept and delivered latency."""
    d = phase.doc
    acc_n: dict[int, int] = {}
    acc_lat: dict[int, list[float]] = {}
    for n, s, r in zip(d["n"], d["t_send"], d["t_resp"], strict=True):
        sec = int(r - t0)
        acc_n[sec] = acc_n.get(sec, 0) + n
        acc_lat.setdefault(sec, []).append((r - s) * 1000)
    fin_n: dict[int, int] = {}
    for t in phase.finals.values():
        fin_n[int(t - t0)] = fin_n.get(int(t - t0), 0) + 1
    accepted_at = dict(phase.accepted_refs())
    del_lat: dict[int, list[float]] = {}
    for ref, t in phase.delivered.items():
        if ref in accepted_at:
            del_lat.setdefault(int(t - t0), []).append((t - accepted_at[ref]) * 1000)
    last = max([*acc_n, *fin_n, 0])
    secs = list(range(last + 1))

    def lat(m: dict[int, list[float]], p: float) -> list[float | None]:
        return [round(pct(m[s], p), 2) if s in m else None for s in secs]

    return {"t": [s + 0.5 for s in secs], "panels": [
        {"title": "throughput", "unit": "msgs/s", "series": {
            "accepted (202)": [acc_n.get(s, 0) for s in secs],
            "final status (callback)": [fin_n.get(s, 0) for s in secs]}},
        {"title": "accept latency (per request)", "unit": "ms", "series": {
            "p50": lat(acc_lat, 50), "p99": lat(acc_lat, 99)}},
        {"title": "accept → DELIVERED callback", "unit": "ms", "series": {
            "p50": lat(del_lat, 50), "p99": lat(del_lat, 99)}},
    ]}


def gateway_toml(workdir: Path, http_port: int, sim_port: int, window: int,
                 callback_batch: int = 1, store_writer: str = "thread") -> str:
    return f"""log_level = "WARNING"
[callbacks]
batch_size = {callback_batch}
[http]
port = {http_port}
[store]
path = "{workdir / 'store'}"
sync = true
writer = "{store_writer}"
[simulator]
enabled = false
[api]
callbacks_allow_loopback = true
[dev]
create_account = false
[[smpp]]
name = "smsc"
host = "127.0.0.1"
port = {sim_port}
system_id = "septet"
password = "septet"
window = {window}
"""


def expected_parts(refs: list[int]) -> int:
    from codec import Policy, count

    gsm, ucs = Policy(mode="transliterate"), Policy(mode="ucs2")
    total = 0
    for r in refs:
        m = message(r)
        total += count(m["text"], ucs if m.get("encoding") == "ucs2" else gsm).parts
    return total


class Progress:
    """The live line on stderr."""

    def __init__(self, mode: str) -> None:
        self.mode, self.started, self.last = mode, time.monotonic(), 0.0

    def show(self, sent: int, accepted: int, final: int, done: bool = False) -> None:
        now = time.monotonic()
        tty = sys.stderr.isatty()
        if not done and now - self.last < (0.5 if tty else 2.0):
            return
        self.last = now
        el = now - self.started
        sys.stderr.write(("\r" if tty else "") + f"[{self.mode}] {el:5.1f}s sent {sent:>8} accepted {accepted:>8} "
                         f"final {final:>8}  {final / max(el, 1e-9):8.0f} final/s   ")
        if done or not tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def run_mode(mode: str, args: argparse.Namespace, workroot: Path) -> dict[str, Any]:
    """One mode on fresh processes; returns its figures and timelines."""
    workdir = workroot / mode
    workdir.mkdir()
    sink = receiver.Received()
    sim_port, http_port = free_port(), free_port()
    count = args.batch_count if mode == "batch" else args.single_count
    conns = args.batch_connections if mode == "batch" else args.single_connections
    progress = Progress(mode)
    async with trio.open_nursery() as nursery:
        cb_port = await nursery.start(partial(receiver.serve, sink))
        sim = await Child.start(nursery, "simulator", [
            PY, "-m", "adapters.simulator", "--port", str(sim_port), "--quiet",
            "--receipt-delay", args.receipt_delay])
        await wait_port(sim_port)
        toml = workdir / "septet.toml"
        toml.write_text(gateway_toml(workdir, http_port, sim_port, args.window,
                                    args.callback_batch, args.store_writer))
        with trio.fail_after(60):
            made = await trio.run_process(
                [PY, "-m", "gateway.cli", "--config", str(toml), "accounts", "create", "bench",
                 "--callback-url", f"http://127.0.0.1:{cb_port}/cb"], capture_stdout=True)
        key = made.stdout.decode().strip().splitlines()[-1]
        gw = await Child.start(nursery, "gateway", [
            PY, "-m", "gateway.cli", "--config", str(toml), "serve"])
        await wait_port(http_port, 30)
        with trio.fail_after(30):
            while (await http_get(http_port, "/readyz"))[0] != 200:
                await trio.sleep(0.1)
        if args.profile:
            spy = await Child.start(nursery, "py-spy", [
                str(Path(PY).parent / "py-spy"), "record", "--pid", str(gw.proc.pid), "--format",
                "raw", "--rate", str(args.profile_rate), "--nonblocking", "-o", f"{args.profile}.{mode}.txt"])
            await trio.sleep(1)
        cpu0 = {"gateway": gw.cpu(), "simulator": sim.cpu(),
                "store writer process": children_cpu(gw.proc.pid)}
        threads0 = thread_cpu(gw.proc.pid)
        rus0 = resource.getrusage(resource.RUSAGE_SELF)

        async def load(name: str, start: int, n: int, duration: float, rate: float,
                       sent_before: int) -> Phase:
            out = workdir / f"{name}.json"
            lg = await Child.start(nursery, "loadgen", [
                PY, "-m", "bench.loadgen", "--port", str(http_port), "--key", key, "--mode", mode,
                "--start", str(start), "--count", str(n), "--duration", str(duration),
                "--connections", str(conns), "--rate", str(rate), "--out", str(out)])
            give_up = time.monotonic() + duration + 60  # loadgen bounds itself; this is a guard
            busy0 = (time.monotonic(), gw.cpu(), main_thread_waited(gw.proc.pid))
            while lg.proc.returncode is None:
                if time.monotonic() > give_up:
                    lg.proc.kill()
                line = next((x for x in reversed(lg.lines) if x.startswith("progress")), "")
                if line:
                    _, s, a, _e = line.split()
                    progress.show(sent_before + int(s), sent_before + int(a), len(sink.final_at))
                await trio.sleep(0.2)
            if await lg.proc.wait() != 0 or not out.exists():
                raise RuntimeError(f"load generator failed (exit {lg.proc.returncode})")
            wall = max(time.monotonic() - busy0[0], 1e-9)
            busy[name] = round((gw.cpu() - busy0[1]) / wall, 2)
            starved[name] = round((main_thread_waited(gw.proc.pid) - busy0[2]) / wall, 2)
            return Phase(name, json.loads(out.read_text()), start, n)

        busy: dict[str, float] = {}  # gateway CPU seconds per second while a phase sends
        starved: dict[str, float] = {}  # ... and s/s its main thread was runnable without a CPU

        peak = await load("peak", 1, count, args.duration, args.rate, 0)
        paced = None
        if mode == "single" and args.paced_seconds > 0:
            # wait for the peak phase to drain so the paced phase measures itself only
            await drain(sink, peak, args.drain, progress)
            rate = analyse(_with_finals(peak, sink))["e2e_msgs_per_s"] / 2
            n = int(rate * args.paced_seconds)
            if n > 0:
                paced = await load("paced", 10_000_001, n, args.paced_seconds + 2, rate,
                                   peak.doc["sent_msgs"])
        for ph in (peak, paced):
            if ph is not None:
                await drain(sink, ph, args.drain, progress)
        progress.show(sum(p.doc["sent_msgs"] for p in (peak, paced) if p),
                      sum(p.doc["accepted_msgs"] for p in (peak, paced) if p),
                      len(sink.final_at), done=True)
        _, metrics_text = await http_get(http_port, "/metrics")
        cpu = {"gateway": gw.cpu() - cpu0["gateway"], "simulator": sim.cpu() - cpu0["simulator"]}
        if args.store_writer == "process":  # the gateway's second process (gateway._store_process)
            cpu["store writer process"] = (children_cpu(gw.proc.pid)
                                           - cpu0["store writer process"])
        main_cpu = thread_cpu(gw.proc.pid)["main"] - threads0["main"]
        # threads come and go (trio's worker cache): the others are the rest of the process
        threads = {"main": main_cpu, "other threads": cpu["gateway"] - main_cpu}
        rss = {"gateway": gw.rss(), "simulator": sim.rss()}
        rus1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu["receiver+orchestrator"] = (rus1.ru_utime + rus1.ru_stime
                                        - rus0.ru_utime - rus0.ru_stime)
        await gw.stop()
        if args.profile:
            with trio.move_on_after(20):
                await spy.proc.wait()
        await sim.stop()
        sim_stats: dict[str, Any] = next((json.loads(x) for x in reversed(sim.lines) if x.startswith("{")), {})
        nursery.cancel_scope.cancel()
    phases = [p for p in (peak, paced) if p is not None]
    for p in phases:
        _with_finals(p, sink)
    refs = [r for p in phases for r, _ in p.accepted_refs()]
    total = len(refs)
    want = expected_parts(refs)
    got = sim_stats.get("distinct_accepted", 0)
    lg_cpu = sum(p.doc["cpu_s"] for p in phases)
    cpu["loadgen"] = lg_cpu
    rss["loadgen"] = max(p.doc["peak_rss_kib"] for p in phases) / 1024
    rss["receiver+orchestrator"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = workdir / "store" / "data.mdb"
    lmdb_bytes = data.stat().st_blocks * 512 if data.exists() else 0
    figures = analyse(peak)
    t0 = figures.pop("_t0", 0.0)
    result = {
        "mode": mode, "connections": conns, "peak": figures,
        "messages_accepted_total": total, "parts_expected": want,
        "parts_received_distinct": got, "lost": max(0, want - got),
        "duplicates": sim_stats.get("duplicates", 0), "unexpected_parts": max(0, got - want),
        "messages_without_final": total - sum(1 for r in refs if r in sink.final_at),
        "without_final_sample": {r: sorted(k for (x, k) in sink.seen if x == r)
                                 for r in [r for r in refs if r not in sink.final_at][:5]},
        "simulator": sim_stats, "receiver": receiver.summary(sink),
        "cpu_s_per_1000_msgs": {k: round(v * 1000 / max(total, 1), 3) for k, v in cpu.items()},
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "gateway_cpu_s_per_1000_msgs_by_thread": {
            k: round(v * 1000 / max(total, 1), 3) for k, v in threads.items()},
        "gateway_busy_while_sending": busy,
        "gateway_main_thread_waiting_for_cpu": starved,
        "peak_rss_mib": {k: round(v, 1) for k, v in rss.items()},
        "lmdb_bytes": lmdb_bytes, "lmdb_bytes_per_msg": round(lmdb_bytes / max(total, 1), 1),
        "metrics_sample": _metric_lines(metrics_text),
    }
    if paced is not None:
        pf = analyse(paced)
        pf.pop("_t0", None)
        result["paced_half_peak"] = pf
    result["_timelines"] = {f"{mode} peak": timeline(peak, t0)}
    if paced is not None:
        result["_timelines"][f"{mode} paced at half peak"] = timeline(paced, min(paced.doc["t_send"]
                                                                              or [t0]))
    return result


def _with_finals(phase: Phase, sink: receiver.Received) -> Phase:
    lo, hi = phase.start_ref, phase.start_ref + phase.count
    phase.finals = {r: t for r, t in sink.final_at.items() if lo <= r < hi}
    phase.delivered = {r: t for r, t in sink.delivered_at.items() if lo <= r < hi}
    return phase


async def drain(sink: receiver.Received, phase: Phase, limit: float, progress: Progress) -> None:
    """Wait (at most ``limit`` s) until every accepted message of ``phase`` has a final status."""
    refs = [r for r, _ in phase.accepted_refs()]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        missing = sum(1 for r in refs if r not in sink.final_at)
        progress.show(phase.doc["sent_msgs"], phase.doc["accepted_msgs"], len(sink.final_at))
        if not missing:
            return
        await trio.sleep(0.25 if missing < 1000 else 0.5)


def _metric_lines(text: bytes) -> dict[str, float]:
    """A few counters from /metrics worth keeping with the result (summed over labels)."""
    keep = ("septet_dispatcher_submits_total", "septet_correlator_receipts_total",
            "septet_api_messages_accepted_total", "septet_segmenter_parts_total",
            "septet_api_saturated_total", "septet_store_commits_total", "septet_store_ops_total",
            "septet_store_commit_seconds_total", "septet_callback_requests_total",
            "septet_callback_events_total")
    out: dict[str, float] = {}
    for line in text.decode(errors="replace").splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in keep:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


# ------------------------------------------------------------------------------- main


def _table(r: dict[str, Any]) -> str:
    p = r["peak"]
    lines = [
        f"== {r['mode']} mode ({r['connections']} connections)",
        (f"  accepted            {p.get('accepted_msgs', 0):>9} msgs  "
        f"{p.get('accepted_msgs_per_s', 0):>9.0f} msgs/s"),
        (f"  final status        {p.get('final_msgs', 0):>9} msgs  "
        f"{p.get('e2e_msgs_per_s', 0):>9.0f} msgs/s end to end"),
        f"  accept latency      {p.get('accept_ms')}",
        f"  accept->DELIVERED   {p.get('accept_to_delivered_ms')}",
        (f"  parts expected {r['parts_expected']}  received once {r['parts_received_distinct']}  "
        f"lost {r['lost']}  duplicates {r['duplicates']}  without final {r['messages_without_final']}"),
        f"  cpu s / 1000 msgs   {r['cpu_s_per_1000_msgs']}",
        (f"  gateway by thread   {r['gateway_cpu_s_per_1000_msgs_by_thread']}  busy while "
         f"sending (CPU s/s) {r['gateway_busy_while_sending']}, main thread waiting for a CPU "
         f"(s/s) {r['gateway_main_thread_waiting_for_cpu']}"),
        f"  peak RSS MiB        {r['peak_rss_mib']}",
        (f"  SMPP I/O            simulator read {r['simulator'].get('reads', 0)} times and wrote "
         f"{r['simulator'].get('writes', 0)} times for {r['parts_received_distinct']} parts"),
        f"  LMDB                {r['lmdb_bytes'] / 2**20:.1f} MiB, {r['lmdb_bytes_per_msg']:.0f} B/msg",
    ]
    if "paced_half_peak" in r:
        q = r["paced_half_peak"]
        lines.append(f"  paced at half peak  {q.get('accepted_msgs_per_s', 0):.0f} msgs/s accept "
                     f"{q.get('accept_ms')}  ->DELIVERED {q.get('accept_to_delivered_ms')}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench.e2e", description="End-to-end load test (see module doc)")
    ap.add_argument("--modes", default="batch,single", help="comma list of batch, single")
    ap.add_argument("--batch-count", type=int, default=100_000, help="messages in batch mode")
    ap.add_argument("--single-count", type=int, default=40_000, help="messages in single mode")
    ap.add_argument("--duration", type=float, default=10.0,
                    help="stop sending after this many seconds even if the count is not reached")
    ap.add_argument("--batch-connections", type=int, default=8)
    ap.add_argument("--single-connections", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0.0,
                    help="offer this many msgs/s instead of a closed loop (0): CPU per message "
                         "at a fixed load compares builds on a busy machine better than peaks")
    ap.add_argument("--paced-seconds", type=float, default=5.0,
                    help="single mode: paced phase at half the peak rate (0: skip)")
    ap.add_argument("--drain", type=float, default=30.0,
                    help="wait at most this long for final statuses after sending")
    ap.add_argument("--receipt-delay", default="0,0", help="simulator MIN,MAX seconds")
    ap.add_argument("--callback-batch", type=int, default=100,
                    help="events per callback request (the notifier's batch_size; the gateway's "
                         "own default is 1, one event per request: pass 1 to measure that)")
    ap.add_argument("--window", type=int, default=64, help="SMPP window of the connector")
    ap.add_argument("--out", default="bench/out/e2e_result.json", help="JSON result file")
    ap.add_argument("--chart", default="bench/out/e2e_chart", help="chart path without extension")
    ap.add_argument("--profile", default="",
                    help="record the gateway with py-spy (collapsed stacks to PROFILE.<mode>.txt)")
    ap.add_argument("--profile-rate", type=int, default=50, help="py-spy samples per second")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    ap.add_argument("--store-writer", choices=("auto", "thread", "process"), default="auto",
                    help="the gateway's [store] writer (process: the pipeline's writes in a "
                         "writer process on a second core)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # "auto" decided here as the gateway decides it (same machine), so the writer process's CPU
    # is counted when there is one
    args.store_writer = StoreConfig(writer=args.store_writer).resolved_writer
    print(f"store writer: {args.store_writer}", flush=True)
    workroot = Path(tempfile.mkdtemp(prefix="septet-e2e-"))
    results: dict[str, Any] = {}
    try:
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            results[mode] = trio.run(run_mode, mode, args, workroot)
            print(_table(results[mode]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workroot, ignore_errors=True)
    timelines = {k: v for r in results.values() for k, v in r.pop("_timelines").items()}
    head = {
        "e2e_batch_msgs_per_s": results.get("batch", {}).get("peak", {}).get("e2e_msgs_per_s"),
        "e2e_single_msgs_per_s": results.get("single", {}).get("peak", {}).get("e2e_msgs_per_s"),
        "accepted_batch_msgs_per_s": results.get("batch", {}).get("peak", {}).get(
            "accepted_msgs_per_s"),
        "accepted_single_msgs_per_s": results.get("single", {}).get("peak", {}).get(
            "accepted_msgs_per_s"),
        "accept_p99_ms": results.get("single", {}).get("paced_half_peak", {}).get(
            "accept_ms", {}).get("p99"),
        "accept_p99_ms_peak_batch": results.get("batch", {}).get("peak", {}).get(
            "accept_ms", {}).get("p99"),
        "delivered_p99_ms_batch": results.get("batch", {}).get("peak", {}).get(
            "accept_to_delivered_ms", {}).get("p99"),
        "lost": sum(r["lost"] for r in results.values()),
        "duplicates": sum(r["duplicates"] for r in results.values()),
        "without_final": sum(r["messages_without_final"] for r in results.values()),
        "callback_batch": args.callback_batch,
    }
    head = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in head.items()}
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0],
               "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": head, "machine": machine, "modes": results,
                                          "timelines": timelines, "argv": sys.argv[1:]},
                                         indent=1, default=str))
    png_ok = chart.render(timelines, "Septet end-to-end benchmark", args.chart + ".html",
                          args.chart + ".png", notes=json.dumps(head, indent=1))
    print(f"result: {args.out}; chart: {args.chart}.html"
          + (f", {args.chart}.png" if png_ok else " (no PNG: matplotlib not installed)"))
    print(json.dumps(head), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
