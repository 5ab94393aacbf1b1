"""Ingress benchmark: accepted messages/s and latency of POST /v1/messages on a real server.

    python -m bench.ingress                 # starts `septet serve` in a child process
    python -m bench.ingress --url http://127.0.0.1:8080 --key sk_...   # an already running one

The server runs in ANOTHER process than this load generator: `septet serve` on a fresh LMDB
store in a temporary directory with ``sync=True`` (every commit an fsync) and the built-in
simulator as its carrier, exactly what `make serve` runs. The generator keeps many keep-alive
connections, each pipelining requests over a raw socket (pre-encoded requests, responses
framed by Content-Length), so that the client costs little next to the server.

Phases (each a fixed duration):
  1. single, peak: one message per request, as fast as the server answers;
  2. single, paced at half the measured peak: the latency that counts (p50/p99 from the time a
     request was due, so a stalled server cannot hide its queue: no coordinated omission);
  3. batch, peak: 100 messages per request;
  4. batch, paced at half of that peak.
Every recipient number is distinct within a run (random Portuguese mobiles), so the server's
number cache does not flatter it. The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")


@dataclass
class Phase:
    """Results of one phase."""

    name: str
    seconds: float = 0.0
    requests: int = 0
    accepted_msgs: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.accepted_msgs / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.name:<14} {self.req_per_s:>9.0f} req/s {self.msgs_per_s:>9.0f} msgs/s  "
                f"p50 {self.pct(50):6.1f} ms  p99 {self.pct(99):6.1f} ms  "
                f"requests {self.requests}  errors {self.errors or 0}")


def _numbers(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(f"+3519{rnd.choice('1236')}{rnd.randrange(10**7):07d}")
    return list(out)


def _request(host: str, key: str, body: bytes) -> bytes:
    return (f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def make_requests(host: str, key: str, batch: int, count: int, seed: int) -> list[bytes]:
    numbers = _numbers(count * batch, seed)
    reqs = []
    for i in range(count):
        items = [{"to": numbers[i * batch + j], "from": "Septet",
                  "text": f"Your code is {random.randrange(10**6):06d}. Olá!"} for j in range(batch)]
        body = json.dumps(items[0] if batch == 1 else {"messages": items}).encode()
        reqs.append(_request(host, key, body))
    return reqs


class _Responses:
    """Frames HTTP/1.1 responses (Content-Length only) out of a byte stream."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[int]:
        self.buf += data
        statuses = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return statuses
            head = bytes(self.buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return statuses
            m = _STATUS.match(self.buf)
            statuses.append(int(m.group(1)) if m else 0)
            del self.buf[:end + 4 + length]


async def _connection(host: str, port: int, reqs: list[bytes], batch: int, phase: Phase,
                      deadline: float, depth: int, interval: float | None) -> None:
    stream = await trio.open_tcp_stream(host, port)
    sent: list[float] = []  # due time of each outstanding request, FIFO
    frames = _Responses()
    window = trio.Semaphore(depth)
    idx = random.randrange(len(reqs))

    async def sender() -> None:
        nonlocal idx
        due = trio.current_time()
        while trio.current_time() < deadline:
            await window.acquire()
            if interval is not None:
                due += interval
                await trio.sleep_until(due)
                sent.append(due)
                out = reqs[idx % len(reqs)]
                idx += 1
            else:  # peak: fill the whole free window in one write
                due = trio.current_time()
                batch = [reqs[idx % len(reqs)]]
                idx += 1
                while True:
                    try:
                        window.acquire_nowait()
                    except trio.WouldBlock:
                        break
                    batch.append(reqs[idx % len(reqs)])
                    idx += 1
                sent.extend([due] * len(batch))
                out = b"".join(batch)
            await stream.send_all(out)

    async def receiver() -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            now = trio.current_time()
            for status in frames.feed(data):
                due = sent.pop(0)
                window.release()
                if now < deadline + 5:
                    phase.requests += 1
                    phase.latencies.append(now - due)
                    if status == 202:
                        phase.accepted_msgs += batch
                    else:
                        phase.errors[status] = phase.errors.get(status, 0) + 1
            if trio.current_time() >= deadline and not sent:
                return

    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await receiver()
        nursery.cancel_scope.cancel()


async def run_phase(name: str, host: str, port: int, reqs: list[bytes], batch: int, *,
                    seconds: float, connections: int, depth: int, rate: float | None) -> Phase:
    phase = Phase(name)
    interval = connections / rate if rate else None
    start = trio.current_time()
    deadline = start + seconds
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(_connection, host, port, reqs, batch, phase, deadline, depth, interval)
    phase.seconds = trio.current_time() - start
    return phase


# ---------------------------------------------------------------------------------------------
# The server under test


def api_cpu(batch: int, n: int = 20_000) -> float:
    """CPU µs per message of the HTTP layer alone, in this process: parse the request bytes,
    route, authenticate, validate, build the messages, serialise the answer. The gateway is a
    null one (no store), so this is what the HTTP/API code itself costs."""
    import asyncio  # noqa: F401  (keeps trio's import-time cost out of the measurement)

    from gateway.accounts import Account
    from gateway.api import create_api
    from gateway.config import ApiConfig
    from gateway.http._protocol import ReaderLimits, RequestReader, response_bytes

    class _Null:
        ready = True

        class store:
            @staticmethod
            def db(name: bytes) -> bytes:
                return name

        async def accept(self, messages: Any, also: Any = None) -> None:
            return None

    api = create_api(_Null(), ApiConfig(), check_callback=lambda url: url)
    account = Account("bench")
    api.accounts.authenticate = lambda key: account  # type: ignore[method-assign]
    reqs = make_requests("h", "sk_x", batch, max(1, n // batch), 1)

    async def run() -> float:
        reader = RequestReader(ReaderLimits())
        t = time.process_time()
        for data in reqs:
            for req in reader.feed(data):
                response_bytes(await api(req), date="x", keep_alive=True)
        return (time.process_time() - t) / (len(reqs) * batch) * 1e6

    trio.run(run)  # warm: number cache, regex compilation
    return float(trio.run(run))


async def inprocess(batch: int, concurrency: int, total: int = 20_000) -> tuple[float, float]:
    """HTTP/API code + real Gateway.accept + real store (sync=True), no sockets: CPU µs per
    message and messages/s, with ``concurrency`` requests in flight (they share commits)."""
    import resource

    from gateway.accounts import Account
    from gateway.api import create_api
    from gateway.app import Gateway
    from gateway.config import ApiConfig
    from gateway.http._protocol import ReaderLimits, RequestReader, response_bytes
    from gateway.store import open_store

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    with tempfile.TemporaryDirectory(prefix="septet-bench-") as tmp:
        async with open_store(Path(tmp) / "db", sync=True) as store:
            api = create_api(Gateway(store, []), ApiConfig(), check_callback=lambda url: url)
            account = Account("bench")
            api.accounts.authenticate = lambda key: account  # type: ignore[method-assign]
            reader = RequestReader(ReaderLimits())
            parsed = [r for d in make_requests("h", "k", batch, total // batch, 7)
                      for r in reader.feed(d)]

            async def worker(items: list[Any]) -> None:
                for req in items:
                    response_bytes(await api(req), date="x", keep_alive=True)

            t, wall = cpu(), time.perf_counter()
            async with trio.open_nursery() as nursery:
                for k in range(concurrency):
                    nursery.start_soon(worker, parsed[k::concurrency])
            used, wall = cpu() - t, time.perf_counter() - wall
    n = len(parsed) * batch
    return used / n * 1e6, n / wall


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve_ingress_only(workdir: str, port: int) -> None:
    """The HTTP layer over the real store and a real (not running) Gateway: accept commits
    with sync=True exactly as in `septet serve`, but no actor consumes the outbox. Isolates
    ingress (HTTP + validation + group commit) from the delivery pipeline's CPU."""
    from gateway.accounts import Account, AccountBook
    from gateway.api import create_api
    from gateway.app import Gateway
    from gateway.config import ApiConfig
    from gateway.http import HttpServer, ServerLimits
    from gateway.store import open_store

    async with open_store(Path(workdir) / "db", sync=True) as store:
        gateway = Gateway(store, [])
        key = await AccountBook(store).create(Account("bench"))
        server = HttpServer(create_api(gateway, ApiConfig()), ServerLimits(max_in_flight=100_000))
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, "127.0.0.1", port)
            gc.collect()
            gc.freeze()  # as `septet serve` does after start-up
            (Path(workdir) / "key").write_text(key + "\n")
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()


def start_server(workdir: Path, carrier: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = _free_port()
    if carrier == "ingress-only":
        proc = subprocess.Popen([sys.executable, "-m", "bench.ingress", "--serve-ingress-only",
                                 str(workdir), "--port", str(port)], stdout=subprocess.DEVNULL)
        return _wait_ready(proc, workdir, port)
    env = {**os.environ, "SEPTET_SIMULATOR__ENABLED": str(carrier == "simulator").lower(),
           "SEPTET_HTTP__PORT": str(port), "SEPTET_STORE__PATH": str(workdir / "db"),
           "SEPTET_STORE__SYNC": "true", "SEPTET_LOG_LEVEL": "WARNING",
           "SEPTET_HTTP__MAX_IN_FLIGHT": "100000"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--print-key-file",
                             str(workdir / "key")], env=env, stdout=subprocess.DEVNULL)
    return _wait_ready(proc, workdir, port)


def _wait_ready(proc: subprocess.Popen[bytes], workdir: Path, port: int
                ) -> tuple[subprocess.Popen[bytes], int, str]:
    for _ in range(300):
        if (workdir / "key").exists() and (workdir / "key").read_text().strip():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, port, (workdir / "key").read_text().strip()
            except OSError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"septet serve exited with {proc.returncode}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("septet serve did not start")


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), threads included."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measured(pid: int | None, phase_coro: Any) -> tuple[Phase, float]:
    """Run a phase; also return the server's CPU µs per accepted message during it."""
    before = _cpu_seconds(pid)
    phase = await phase_coro
    used = _cpu_seconds(pid) - before
    return phase, used / max(1, phase.accepted_msgs) * 1e6


async def bench(host: str, port: int, key: str, seconds: float, connections: int,
                depth: int, pid: int | None = None) -> dict[str, float]:
    load_start = os.getloadavg()[0]
    singles = make_requests(host, key, 1, 20_000, 1)
    batches = make_requests(host, key, 100, 400, 2)
    await run_phase("warm-up", host, port, singles, 1, seconds=1.0, connections=connections,
                    depth=depth, rate=None)
    p1, cpu1 = await _measured(pid, run_phase("single peak", host, port, singles, 1,
                                              seconds=seconds, connections=connections,
                                              depth=depth, rate=None))
    print(p1.line(), f" server CPU {cpu1:.0f} µs/msg", flush=True)
    p2 = await run_phase("single @50%", host, port, singles, 1, seconds=seconds,
                         connections=connections, depth=depth, rate=max(1.0, p1.req_per_s / 2))
    print(p2.line(), flush=True)
    bconn = max(4, connections // 8)
    p3, cpu3 = await _measured(pid, run_phase("batch100 peak", host, port, batches, 100,
                                              seconds=seconds, connections=bconn, depth=2,
                                              rate=None))
    print(p3.line(), f" server CPU {cpu3:.0f} µs/msg", flush=True)
    p4 = await run_phase("batch100 @50%", host, port, batches, 100, seconds=seconds,
                         connections=bconn, depth=2, rate=max(1.0, p3.req_per_s / 2))
    print(p4.line(), flush=True)
    return {
        "single_req_per_s": round(p1.req_per_s), "single_p50_ms": round(p2.pct(50), 2),
        "single_p99_ms": round(p2.pct(99), 2), "single_peak_p99_ms": round(p1.pct(99), 2),
        "batch_msgs_per_s": round(p3.msgs_per_s), "batch_p50_ms": round(p4.pct(50), 2),
        "batch_p99_ms": round(p4.pct(99), 2), "batch_peak_p99_ms": round(p3.pct(99), 2),
        "single_server_cpu_us_per_msg": round(cpu1, 1),
        "batch_server_cpu_us_per_msg": round(cpu3, 1),
        "errors": sum(sum(p.errors.values()) for p in (p1, p2, p3, p4)),
        "seconds_per_phase": seconds, "connections": connections, "pipeline_depth": depth,
        "sync": True, "loadavg_1m_start": round(load_start, 2),
        "loadavg_1m_end": round(os.getloadavg()[0], 2), "cpus": os.cpu_count() or 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="bench a running server instead of starting one")
    ap.add_argument("--key", help="API key for --url")
    ap.add_argument("--pid", type=int, help="server process id for --url (to read its CPU time)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--carrier", choices=("ingress-only", "none", "simulator"),
                    default="ingress-only",
                    help="ingress-only: HTTP + real store + Gateway.accept, no actors running; "
                         "none: `septet serve` without a carrier (the pipeline runs and ends "
                         "messages NOT_SENT); simulator: `septet serve` as `make serve` runs it")
    ap.add_argument("--api-cpu", action="store_true",
                    help="only measure the CPU cost of the HTTP/API code in-process")
    ap.add_argument("--serve-ingress-only", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--depth", type=int, default=4, help="pipelined requests per connection")
    args = ap.parse_args()
    if args.api_cpu:
        single, batched = api_cpu(1), api_cpu(100)
        print(f"HTTP/API layer alone: {single:.1f} µs per single-message request, "
              f"{batched:.1f} µs per message in batches of 100 (CPU, warm number cache)")
        figures: dict[str, float] = {"api_single_us": round(single, 1),
                                     "api_batch_us_per_msg": round(batched, 1)}
        for batch, conc in ((1, 1), (1, 64), (100, 8)):
            us, rate = trio.run(inprocess, batch, conc)
            print(f"API + Gateway.accept + store(sync=True), no sockets, batch {batch}, "
                  f"{conc} in flight: {us:.1f} µs CPU/msg, {rate:.0f} msgs/s")
            figures[f"inproc_b{batch}_c{conc}_us_per_msg"] = round(us, 1)
            figures[f"inproc_b{batch}_c{conc}_msgs_per_s"] = round(rate)
        print(json.dumps(figures))
        return
    if args.serve_ingress_only:
        trio.run(serve_ingress_only, args.serve_ingress_only, args.port)
        return
    proc = None
    with tempfile.TemporaryDirectory(prefix="septet-bench-") as tmp:
        if args.url:
            host, _, port_s = args.url.removeprefix("http://").partition(":")
            port, key = int(port_s or 80), args.key or ""
        else:
            proc, port, key = start_server(Path(tmp), args.carrier)
            host = "127.0.0.1"
        try:
            figures = trio.run(bench, host, port, key, args.seconds, args.connections, args.depth,
                               proc.pid if proc is not None else args.pid)
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
