"""Overload: the real gateway offered twice what it can take, for a bounded time.

    python -m bench.overload                    # ~8 s calibration, then 20 s at 2x
    python -m bench.overload --duration 60 --factor 3 --in-flight 256

On loopback: the SMSC simulator (``python -m adapters.simulator``) and ``septet serve``
(``store.sync = true``, one ``[[smpp]]`` connector, ``http.max_in_flight = --in-flight``),
then this process as the client, over raw keep-alive sockets with pre-encoded requests
(batches of ``--batch`` messages, every text distinct, recipients cycling over ``--numbers``):

1. calibration: a closed loop (``--connections`` requests at a time) measures the capacity,
   the accepted messages per second the gateway sustains;
2. overload: an open loop offers ``--factor`` x that rate for ``--duration`` s (request *i*
   is due at ``start + i / rate``, latency counted from its due time: no coordinated
   omission), on up to ``--sockets`` connections. Answers are counted, never retried.

Figures: accepted messages/s during the overload (should stay at capacity), 503 answers, their
latency (should be fast), whether each carried ``Retry-After``, the accepted requests' latency,
other errors, and the gateway's RSS (``VmRSS``) at the start and end of the overload and its
peak (should stay flat). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench._common import free_port, percentile

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MiB: RSS includes the LMDB file pages the process touched (the
    store is a memory map, so it grows as the store does); RssAnon is the heap."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "RssAnon:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out.get("VmRSS", 0.0), out.get("RssAnon", 0.0)


@dataclass
class Tally:
    accepted_requests: int = 0
    accepted_messages: int = 0
    rejected_503: int = 0
    with_retry_after: int = 0
    other: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    lat_503: list[float] = field(default_factory=list)
    lat_ok: list[float] = field(default_factory=list)


class Requests:
    """Pre-encoded ``POST /v1/messages`` batches, each message distinct."""

    def __init__(self, key: str, batch: int, numbers: int) -> None:
        self.key = key
        self.batch = batch
        self.numbers = numbers
        self.next = 0

    def take(self) -> bytes:
        first = self.next * self.batch
        self.next += 1
        items = [{"to": f"+35196{(first + i) % self.numbers:07d}", "from": "Septet",
                  "text": f"overload {first + i}"} for i in range(self.batch)]
        body = json.dumps({"messages": items}, separators=(",", ":")).encode()
        return (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body


class Conn:
    """One keep-alive connection: send a request, read one answer (status, headers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buf = b""

    async def exchange(self, req: bytes) -> tuple[int, dict[bytes, bytes]]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buf = b""
        try:
            await self.stream.send_all(req)
            while b"\r\n\r\n" not in self.buf:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("closed")
                self.buf += data
            head, _, rest = self.buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get(b"content-length", b"0"))
            while len(rest) < length:
                data = await self.stream.receive_some(65536)
                if not data:
                    raise trio.BrokenResourceError("closed")
                rest += data
            self.buf = rest[length:]
            if headers.get(b"connection", b"").lower() == b"close":
                await self.close()
            return status, headers
        except (trio.BrokenResourceError, OSError):
            await self.close()
            raise

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


def _count(t: Tally, status: int, headers: dict[bytes, bytes], latency: float, batch: int) -> None:
    if status == 202:
        t.accepted_requests += 1
        t.accepted_messages += batch
        t.lat_ok.append(latency)
    elif status == 503:
        t.rejected_503 += 1
        t.lat_503.append(latency)
        if headers.get(b"retry-after"):
            t.with_retry_after += 1
    else:
        t.other[status] = t.other.get(status, 0) + 1


async def closed_loop(port: int, reqs: Requests, connections: int, seconds: float) -> Tally:
    t = Tally()
    deadline = trio.current_time() + seconds

    async def worker() -> None:
        conn = Conn(port)
        while trio.current_time() < deadline:
            started = trio.current_time()
            try:
                status, headers = await conn.exchange(reqs.take())
            except (trio.BrokenResourceError, OSError):
                t.errors += 1
                continue
            _count(t, status, headers, trio.current_time() - started, reqs.batch)
        await conn.close()

    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    return t


async def open_loop(port: int, reqs: Requests, rate: float, seconds: float, sockets: int,
                    sample: Any) -> Tally:
    """Request i due at start + i / rate, on whichever connection is free (up to ``sockets``)."""
    t = Tally()
    start = trio.current_time() + 0.1
    total = int(rate * seconds)
    index = 0
    free: list[Conn] = []
    opened = 0
    limiter = trio.Semaphore(sockets)

    async def one(i: int, due: float) -> None:
        nonlocal opened
        async with limiter:
            conn = free.pop() if free else Conn(port)
            try:
                status, headers = await conn.exchange(reqs.take())
            except (trio.BrokenResourceError, OSError):
                t.errors += 1
                return
            finally:
                pass
            _count(t, status, headers, trio.current_time() - due, reqs.batch)
            free.append(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        while index < total:
            due = start + index / rate
            await trio.sleep_until(due)
            nursery.start_soon(one, index, due)
            index += 1
        # let what is in flight finish (bounded), then stop sampling
        with trio.move_on_after(15):
            while limiter.value < sockets:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    for conn in free:
        await conn.close()
    return t


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    sim_port, http_port = free_port(), free_port()
    (work / "septet.toml").write_text(f"""
log_level = "WARNING"
[http]
port = {http_port}
max_in_flight = {args.in_flight}
[store]
path = "{work / 'store'}"
sync = true
[simulator]
enabled = false
[[smpp]]
name = "smsc"
port = {sim_port}
system_id = "septet"
password = "overload"
""")
    # spawning is quick; every wait for a child runs in a thread
    sim = subprocess.Popen([PY, "-m", "adapters.simulator", "--port", str(sim_port),  # noqa: ASYNC220
                            "--system-id", "septet", "--password", "overload", "--quiet"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = open(work / "gateway.log", "wb")  # noqa: SIM115, ASYNC230
    gw = subprocess.Popen([PY, "-m", "gateway.cli", "--config", str(work / "septet.toml"),  # noqa: ASYNC220
                           "serve"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    try:
        async with httpx.AsyncClient() as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await c.get(f"http://127.0.0.1:{http_port}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or gw.poll() is not None:
                    raise RuntimeError(f"gateway did not start: {work / 'gateway.log'}")
                await trio.sleep(0.05)
        key = (work / "store" / "dev-key").read_text().strip()
        reqs = Requests(key, args.batch, args.numbers)
        print(f"calibrating: closed loop, {args.connections} connections, "
              f"{args.calibrate:.0f} s", file=sys.stderr, flush=True)
        cal = await closed_loop(http_port, reqs, args.connections, args.calibrate)
        capacity = cal.accepted_messages / args.calibrate
        rate = args.factor * capacity / args.batch  # requests/s
        print(f"capacity {capacity:.0f} messages/s; offering {args.factor:g}x = "
              f"{rate * args.batch:.0f}/s for {args.duration:.0f} s", file=sys.stderr, flush=True)
        rss: list[tuple[float, float]] = []

        async def sample() -> None:
            while True:
                rss.append(_rss_mb(gw.pid))
                await trio.sleep(0.5)

        started = time.monotonic()
        over = await open_loop(http_port, reqs, rate, args.duration, args.sockets, sample)
        elapsed = min(time.monotonic() - started, args.duration + 15)
        gw_alive = gw.poll() is None
    finally:
        for proc in (gw, sim):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (gw, sim):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    offered = rate * args.batch
    return {
        "capacity_per_s": round(capacity),
        "offered_per_s": round(offered),
        "accepted_per_s": round(over.accepted_messages / args.duration),
        "accepted_share": round(over.accepted_messages / max(1.0, offered * args.duration), 3),
        "rejected_503": over.rejected_503,
        "retry_after_on_503": over.with_retry_after == over.rejected_503,
        "p50_503_ms": round(percentile(over.lat_503, 0.5) * 1000, 1),
        "p99_503_ms": round(percentile(over.lat_503, 0.99) * 1000, 1),
        "accepted_p99_ms": round(percentile(over.lat_ok, 0.99) * 1000, 1),
        "other_statuses": over.other,
        "connection_errors": over.errors,
        "rss_start_mb": round(rss[1][0], 1),
        "rss_end_mb": round(rss[-1][0], 1),
        "rss_max_mb": round(max(r[0] for r in rss), 1),
        "anon_start_mb": round(rss[1][1], 1),
        "anon_end_mb": round(rss[-1][1], 1),
        "anon_max_mb": round(max(r[1] for r in rss), 1),
        "anon_every_5s_mb": [round(r[1]) for r in rss[::10]],
        "gateway_alive": gw_alive,
        "seconds": round(elapsed, 1),
        "batch": args.batch,
        "max_in_flight": args.in_flight,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overload", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=2.0, help="offered load / capacity")
    ap.add_argument("--duration", type=float, default=20.0, help="overload seconds")
    ap.add_argument("--calibrate", type=float, default=8.0, help="calibration seconds")
    ap.add_argument("--batch", type=int, default=50, help="messages per request")
    ap.add_argument("--connections", type=int, default=32, help="calibration connections")
    ap.add_argument("--sockets", type=int, default=512, help="most connections when overloaded")
    ap.add_argument("--in-flight", type=int, default=128, help="http.max_in_flight")
    ap.add_argument("--numbers", type=int, default=50_000,
                    help="distinct recipients, cycled (the API caches up to "
                         "api.phone_cache_size = 200,000 parsed numbers)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="overload-"))
    try:
        r = trio.run(run, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"capacity {r['capacity_per_s']}/s, offered {r['offered_per_s']}/s for "
          f"{args.duration:g} s: accepted {r['accepted_per_s']}/s "
          f"({r['accepted_share']:.0%} of offered), 503 x {r['rejected_503']} "
          f"(Retry-After on all: {r['retry_after_on_503']}), 503 p50/p99 "
          f"{r['p50_503_ms']}/{r['p99_503_ms']} ms, accepted p99 {r['accepted_p99_ms']} ms, "
          f"other {r['other_statuses']}, connection errors {r['connection_errors']}, "
          f"RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB (max {r['rss_max_mb']}), of it heap "
          f"(RssAnon) {r['anon_start_mb']} -> {r['anon_end_mb']} MB (max {r['anon_max_mb']})",
          flush=True)
    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
