"""Ingress benchmark: accepted messages/s and latency of POST /v1/messages on a real server.

    python -m bench.ingress                 # starts the server in a child process
    python -m bench.ingress --url http://127.0.0.1:8080 --key sk_...   # an already running one

The server runs in ANOTHER process than this load generator. By default (``--carrier
ingress-only``) it is the HTTP server + API + the real ``Gateway.accept`` over a fresh LMDB
store with ``sync=True`` (every commit an fsync) and no actors consuming the outbox;
``--carrier simulator`` runs `septet serve` exactly as `make serve` does; ``--carrier http-only``
runs the HTTP server alone with an application that answers 202 at once, so that the server CPU
per request is the HTTP layer's own (socket loop, parsing, answer writing). The generator keeps
many keep-alive connections, each pipelining up to ``--depth`` requests over a raw
non-blocking socket, all driven by one epoll loop (pre-encoded requests, responses framed by
Content-Length), so that the client costs little next to the server (~4–7 µs of CPU per
single-message request; it shares the machine's cores with the server).

Per phase it prints the server's CPU µs per accepted message (user + system time of the server
process, from /proc), the client's CPU µs per request, and how many messages each store commit
carried (from the server's /metrics): on a shared machine these say more than requests/s.

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
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench._common import free_port


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
    """Frames HTTP/1.1 responses (Content-Length only) out of a byte stream; returns statuses."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[int]:
        buf = self.buf + data if self.buf else data
        statuses = []
        pos, n = 0, len(buf)
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            i = buf.find(b"content-length: ", pos, end)
            if i < 0:
                i = buf.lower().find(b"content-length:", pos, end)
                length = int(buf[i + 15:buf.find(b"\r\n", i)]) if i >= 0 else 0
            else:
                length = int(buf[i + 16:buf.find(b"\r\n", i)])
            if n < end + 4 + length:
                break
            statuses.append(int(buf[pos + 9:pos + 12]) if buf.startswith(b"HTTP/1.", pos) else 0)
            pos = end + 4 + length
        self.buf = buf[pos:]
        return statuses


class _Conn:
    __slots__ = ("backlog", "frames", "idx", "out", "sent", "sock")

    def __init__(self, sock: socket.socket, idx: int) -> None:
        self.sock = sock
        self.sent: deque[float] = deque()  # due time of each outstanding request, FIFO
        self.backlog: deque[float] = deque()  # paced: due, not yet sent (window full)
        self.frames = _Responses()
        self.idx = idx
        self.out = b""  # bytes not yet accepted by the kernel


def run_phase_sync(name: str, host: str, port: int, reqs: list[bytes], batch: int, *,
                   seconds: float, connections: int, depth: int, rate: float | None) -> Phase:
    """One phase over raw non-blocking sockets and one epoll loop (no event-loop library:
    the generator shares the machine's cores with the server, so it must cost little).

    Peak (``rate`` None): every connection keeps ``depth`` requests outstanding, refilling its
    window in one send. Paced: request k is due at start + k/rate and goes to connection
    k mod ``connections``; its latency is counted from when it was due, even when it had to
    wait for a free place in that connection's window (no coordinated omission).
    """
    phase = Phase(name)
    interval = 1.0 / rate if rate else None
    ep = select.epoll()
    conns: dict[int, _Conn] = {}
    for _ in range(connections):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        conns[s.fileno()] = _Conn(s, random.randrange(len(reqs)))
        ep.register(s.fileno(), select.EPOLLIN)
    ring = list(conns.values())
    start = time.perf_counter()
    deadline = start + seconds
    n_reqs = len(reqs)
    latencies = phase.latencies
    errors = phase.errors
    done = accepted = due_count = 0

    def send(c: _Conn, data: bytes) -> None:
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data) or c.out:
            c.out = data[n:]
            ep.modify(c.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if c.out else 0))

    def fill(c: _Conn, now: float) -> None:
        """Send what the window allows: new requests (peak) or the backlog (paced)."""
        free = depth - len(c.sent)
        if free <= 0:
            return
        if interval is None:
            if now >= deadline:
                return
            dues = [now] * free
        else:
            if not c.backlog:
                return
            dues = [c.backlog.popleft() for _ in range(min(free, len(c.backlog)))]
        i = c.idx
        c.idx = i + len(dues)
        data = b"".join([reqs[(i + j) % n_reqs] for j in range(len(dues))])
        c.sent.extend(dues)
        send(c, c.out + data if c.out else data)

    now = last = time.perf_counter()
    if interval is None:
        for c in ring:
            fill(c, now)
    while True:
        now = time.perf_counter()
        timeout = 0.05
        if interval is not None and now < deadline:
            touched = set()
            due = start + due_count * interval
            while due <= now and due < deadline:
                c = ring[due_count % len(ring)]
                c.backlog.append(due)
                touched.add(c)
                due_count += 1
                due = start + due_count * interval
            for c in touched:
                fill(c, now)
            timeout = max(0.0, min(timeout, due - now))
        elif now >= deadline:
            if not any(c.sent or c.backlog for c in ring) or now >= deadline + 5:
                break
            last = now
        for fd, ev in ep.poll(timeout):
            c = conns[fd]
            if ev & select.EPOLLOUT and c.out:
                send(c, c.out)
            if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                continue
            try:
                data = c.sock.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                ep.unregister(fd)
                ring.remove(c)
                del conns[fd]
                c.sock.close()
                if not ring:
                    break
                continue
            t = time.perf_counter()
            sent = c.sent
            for status in c.frames.feed(data):
                latencies.append(t - sent.popleft())
                done += 1
                if status == 202:
                    accepted += batch
                else:
                    errors[status] = errors.get(status, 0) + 1
            fill(c, t)
        if not ring:
            break
    phase.seconds = max(seconds, last - start)
    phase.requests = done
    phase.accepted_msgs = accepted
    ep.close()
    for c in ring:
        c.sock.close()
    return phase


async def run_phase(name: str, host: str, port: int, reqs: list[bytes], batch: int, *,
                    seconds: float, connections: int, depth: int, rate: float | None) -> Phase:
    """:func:`run_phase_sync` from trio (in this thread: nothing else runs meanwhile)."""
    return run_phase_sync(name, host, port, reqs, batch, seconds=seconds,
                          connections=connections, depth=depth, rate=rate)


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


async def serve_ingress_only(workdir: str, port: int) -> None:
    """The HTTP layer over the real store and a real (not running) Gateway: accept commits
    with sync=True exactly as in `septet serve`, but no actor consumes the outbox. Isolates
    ingress (HTTP + validation + group commit) from the delivery pipeline's CPU."""
    from gateway import metrics
    from gateway.accounts import Account, AccountBook
    from gateway.api import create_api
    from gateway.app import Gateway
    from gateway.config import ApiConfig
    from gateway.http import HttpServer, ServerLimits
    from gateway.store import open_store

    async with open_store(Path(workdir) / "db", sync=True) as store:
        gateway = Gateway(store, [])
        metrics.bind_store(store)  # /metrics reports commits and ops (msgs per commit)
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


async def serve_http_only(workdir: str, port: int) -> None:
    """The HTTP server alone (gateway.http) with an application that answers every request
    202 at once with a body and a Location header like POST /v1/messages does: the server CPU
    per request is the socket loop, parsing and answer writing, nothing else."""
    from gateway.http import HttpServer, Request, Response, ServerLimits

    body = b'{"id":"01JD0000000000000000000000","status":"ACCEPTED"}'
    headers = [("location", "/v1/messages/01JD0000000000000000000000")]

    async def app(request: Request) -> Response:
        return Response(202, body, headers=headers)

    server = HttpServer(app, ServerLimits(max_in_flight=100_000))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, "127.0.0.1", port)
        gc.collect()
        gc.freeze()
        (Path(workdir) / "key").write_text("none\n")
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()


def start_server(workdir: Path, carrier: str) -> tuple[subprocess.Popen[bytes], int, str]:
    port = free_port()
    if carrier == "http-only":
        proc = subprocess.Popen([sys.executable, "-m", "bench.ingress", "--serve-http-only",
                                 str(workdir), "--port", str(port)], stdout=subprocess.DEVNULL)
        return _wait_ready(proc, workdir, port)
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


def _store_counters(host: str, port: int) -> tuple[float, float]:
    """(commits, ops) of the server's store writer from /metrics; NaN when not exported."""
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return float("nan"), float("nan")
    found = dict(re.findall(rb"^(septet_store_(?:commits|ops))(?:_total)? ([0-9.e+]+)$", data,
                            re.MULTILINE))
    return (float(found.get(b"septet_store_commits", "nan")),
            float(found.get(b"septet_store_ops", "nan")))


@dataclass
class Cost:
    """What a phase cost: server CPU µs per message, client CPU µs per request, and how many
    messages each store commit carried (group commit at work)."""

    server_us_per_msg: float
    client_us_per_req: float
    msgs_per_commit: float

    def text(self) -> str:
        return (f" server CPU {self.server_us_per_msg:.0f} µs/msg  client CPU "
                f"{self.client_us_per_req:.0f} µs/req  {self.msgs_per_commit:.0f} msgs/commit")


async def _measured(pid: int | None, phase_coro: Any, host: str = "127.0.0.1", port: int = 0
                    ) -> tuple[Phase, Cost]:
    """Run a phase; also return what it cost (see :class:`Cost`)."""
    commits0, _ = _store_counters(host, port) if port else (float("nan"), 0.0)
    before, client0 = _cpu_seconds(pid), time.process_time()
    phase = await phase_coro
    used, client = _cpu_seconds(pid) - before, time.process_time() - client0
    commits1, _ = _store_counters(host, port) if port else (float("nan"), 0.0)
    return phase, Cost(used / max(1, phase.accepted_msgs) * 1e6,
                       client / max(1, phase.requests) * 1e6,
                       phase.accepted_msgs / max(1.0, commits1 - commits0))


async def bench(host: str, port: int, key: str, seconds: float, connections: int,
                depth: int, pid: int | None = None) -> dict[str, float]:
    load_start = os.getloadavg()[0]
    singles = make_requests(host, key, 1, 20_000, 1)
    batches = make_requests(host, key, 100, 400, 2)
    await run_phase("warm-up", host, port, singles, 1, seconds=1.0, connections=connections,
                    depth=depth, rate=None)
    p1, c1 = await _measured(pid, run_phase("single peak", host, port, singles, 1,
                                            seconds=seconds, connections=connections,
                                            depth=depth, rate=None), host, port)
    print(p1.line(), c1.text(), flush=True)
    p2, c2 = await _measured(pid, run_phase("single @50%", host, port, singles, 1,
                                            seconds=seconds, connections=connections,
                                            depth=depth, rate=max(1.0, p1.req_per_s / 2)),
                             host, port)
    print(p2.line(), c2.text(), flush=True)
    bconn = max(4, connections // 8)
    p3, c3 = await _measured(pid, run_phase("batch100 peak", host, port, batches, 100,
                                            seconds=seconds, connections=bconn, depth=2,
                                            rate=None), host, port)
    print(p3.line(), c3.text(), flush=True)
    p4, c4 = await _measured(pid, run_phase("batch100 @50%", host, port, batches, 100,
                                            seconds=seconds, connections=bconn, depth=2,
                                            rate=max(1.0, p3.req_per_s / 2)), host, port)
    print(p4.line(), c4.text(), flush=True)
    return {
        "single_req_per_s": round(p1.req_per_s), "single_p50_ms": round(p2.pct(50), 2),
        "single_p99_ms": round(p2.pct(99), 2), "single_peak_p99_ms": round(p1.pct(99), 2),
        "batch_msgs_per_s": round(p3.msgs_per_s), "batch_p50_ms": round(p4.pct(50), 2),
        "batch_p99_ms": round(p4.pct(99), 2), "batch_peak_p99_ms": round(p3.pct(99), 2),
        "single_server_cpu_us_per_msg": round(c1.server_us_per_msg, 1),
        "batch_server_cpu_us_per_msg": round(c3.server_us_per_msg, 1),
        "single_paced_server_cpu_us_per_msg": round(c2.server_us_per_msg, 1),
        "batch_paced_server_cpu_us_per_msg": round(c4.server_us_per_msg, 1),
        "single_client_cpu_us_per_req": round(c1.client_us_per_req, 1),
        "batch_client_cpu_us_per_req": round(c3.client_us_per_req, 1),
        "single_msgs_per_commit": round(c1.msgs_per_commit, 1),
        "batch_msgs_per_commit": round(c3.msgs_per_commit, 1),
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
    ap.add_argument("--carrier", choices=("ingress-only", "http-only", "none", "simulator"),
                    default="ingress-only",
                    help="ingress-only: HTTP + real store + Gateway.accept, no actors running; "
                         "http-only: the HTTP server alone, answering 202 at once (its CPU per "
                         "request); none: `septet serve` without a carrier (the pipeline runs and ends "
                         "messages NOT_SENT); simulator: `septet serve` as `make serve` runs it")
    ap.add_argument("--api-cpu", action="store_true",
                    help="only measure the CPU cost of the HTTP/API code in-process")
    ap.add_argument("--serve-ingress-only", metavar="DIR", help=argparse.SUPPRESS)
    ap.add_argument("--serve-http-only", metavar="DIR", help=argparse.SUPPRESS)
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
    if args.serve_http_only:
        trio.run(serve_http_only, args.serve_http_only, args.port)
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
