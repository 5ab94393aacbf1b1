"""Load generator of the end-to-end benchmark: drives ``POST /v1/messages`` from its own process.

    python -m bench.loadgen --port 8080 --key sk_... --mode batch --count 100000 \\
        --duration 20 --connections 16 --out result.json

Each of ``--connections`` keep-alive connections sends one request and reads its answer
(closed loop), over a raw socket with requests all encoded before the clock starts, so the
client costs little next to the server. ``--rate R`` paces requests instead (request *i* is due at ``start + i / R``; its
latency counts from that due time, so a stalled server cannot hide its queue: no coordinated
omission). Answers 429/503 are retried after a short pause (the same messages, so a count run
still sends each message once it is accepted); other errors are counted and skipped.

Every message carries ``client_ref`` = its sequence number and a distinct recipient and text,
so the callback receiver and the simulator's per-part counters can tell each one apart. The
mix (by sequence number modulo 10): 6 GSM7 single-part, 2 UCS-2 single-part, 2 GSM7 two-part.

Progress goes to stdout as ``progress <sent> <accepted> <errors>`` lines; at the end the
per-request records are written to ``--out`` (JSON) and ``done`` is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import resource
import select
import socket
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REQUEST_TIMEOUT = 30.0  # seconds for one request and its answer, then counted as an error
FILLER = ("Septet end-to-end benchmark long text, split into two concatenated parts by the "
          "gateway and sent to the simulated SMSC; each part must arrive exactly once. ")


def message(ref: int) -> dict[str, Any]:
    """The message with sequence number ``ref`` (distinct recipient and text)."""
    kind = ref % 10
    doc: dict[str, Any] = {"to": f"+35191{ref % 10_000_000:07d}", "from": "Septet",
                           "client_ref": str(ref)}
    if kind < 6:
        doc["text"] = f"Septet bench {ref}: your code is {ref % 1_000_000:06d}. Thanks!"
    elif kind < 8:
        doc["text"] = f"Привет {ref}: код {ref % 10_000:04d}"
        doc["encoding"] = "ucs2"
    else:
        doc["text"] = f"Septet bench {ref}: {FILLER}{FILLER[:20]}"
    return doc


def request(host: str, key: str, body: bytes) -> bytes:
    """One pre-encoded HTTP/1.1 keep-alive request."""
    return (f"POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


def jobs(host: str, key: str, mode: str, start: int, count: int) -> Iterator[tuple[int, int, bytes]]:
    """``(first_ref, n, request bytes)`` for ``count`` messages from ``start``, built lazily."""
    size = 100 if mode == "batch" else 1
    for first in range(start, start + count, size):
        n = min(size, start + count - first)
        if size == 1:
            body = json.dumps(message(first), ensure_ascii=False, separators=(",", ":"))
        else:
            body = json.dumps({"messages": [message(r) for r in range(first, first + n)]},
                              ensure_ascii=False, separators=(",", ":"))
        yield first, n, request(host, key, body.encode())


@dataclass
class Records:
    """Per-request results (arrays keep 100k requests small)."""

    first: array[int] = field(default_factory=lambda: array("q"))
    n: array[int] = field(default_factory=lambda: array("l"))
    t_send: array[float] = field(default_factory=lambda: array("d"))
    t_resp: array[float] = field(default_factory=lambda: array("d"))
    sent_msgs: int = 0
    accepted_msgs: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class _Conn:
    """One keep-alive connection's state: the job in flight, the unsent bytes, the answer."""

    __slots__ = ("attempts", "due", "job", "out", "rbuf", "sock", "t_deadline", "unsent",
                 "want_out")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.job: tuple[int, int, bytes] | None = None
        self.due = 0.0  # when the job was due (latency counts from here)
        self.attempts = 0  # connection failures of this job (3: counted as an error)
        self.out = b""  # request bytes the kernel has not taken yet
        self.rbuf = b""
        self.t_deadline = math.inf  # the answer must have come by then (REQUEST_TIMEOUT)
        self.unsent = False  # a paced job waiting for its due time (not yet counted as sent)
        self.want_out = False  # registered for EPOLLOUT (the kernel did not take it all)


def _answer(buf: bytes) -> tuple[int, bool, int] | None:
    """``(status, connection_close, length of the whole answer)`` of the first complete answer
    in ``buf``, or None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    status = int(head[9:12])
    length, close = 0, False
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:stop if stop >= 0 else len(head)])
    at = head.find(b"\r\nconnection:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        close = b"close" in head[at + 14:stop if stop >= 0 else len(head)]
    if len(buf) < end + 4 + length:
        return None
    return status, close, end + 4 + length


class Driver:
    """Every connection in one epoll loop over non-blocking sockets (no event-loop library:
    trio's streams cost this process ~70-110 µs of CPU per single-message request, a raw loop
    ~10, and on a 2-core machine the client's CPU is taken from the server under test). Each
    connection sends one request and waits for its answer (closed loop), or sends it when due
    (``--rate``); the semantics of every figure are those of the trio client it replaced."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rec = Records()
        # Every request is encoded before the clock starts: JSON per request was ~15 % of this
        # process's CPU during the run, which on a shared machine the gateway needs.
        self.source = iter(list(jobs(args.host, args.key, args.mode, args.start, args.count)))
        self.per_req = 100 if args.mode == "batch" else 1
        self.ep = select.epoll()
        self.by_fd: dict[int, _Conn] = {}
        self.timers: list[tuple[float, int, _Conn]] = []  # (when, tie-break, connection)
        self.index = 0
        self.started = self.deadline = 0.0
        self.active = 0  # connections with a job in flight or waiting to send one

    def run(self) -> Records:
        """Run the load until every message is accepted, or ``--duration`` is over."""
        self.started = time.monotonic()
        self.deadline = self.started + self.args.duration
        conns = [_Conn() for _ in range(self.args.connections)]
        for c in conns:
            self.active += 1
            self._next_job(c, self.started)
        next_progress = 0.0
        while self.active:
            now = time.monotonic()
            if now >= next_progress:  # also where timeouts are found (0.5 s late at most)
                self._progress()
                next_progress = now + 0.5
                for c in conns:
                    if c.t_deadline <= now:
                        self._fail(c, "TooSlowError", retry=False)
            while self.timers and self.timers[0][0] <= now:
                self._fire(heapq.heappop(self.timers)[2], now)
            wait = min(next_progress, self.timers[0][0] if self.timers else math.inf) - now
            for fd, ev in self.ep.poll(max(0.0, wait)):
                ready = self.by_fd.get(fd)
                if ready is not None:
                    self._on_event(ready, ev)
        for c in conns:
            self._close(c)
        self.ep.close()
        return self.rec

    def _progress(self) -> None:
        rec = self.rec
        print(f"progress {rec.sent_msgs} {rec.accepted_msgs} {sum(rec.errors.values())}",
              flush=True)

    def _next_job(self, c: _Conn, now: float) -> None:
        """Give ``c`` its next job (at once, or at its due time), or retire it."""
        job = next(self.source, None) if now < self.deadline else None
        if job is None:
            c.job = None
            self.active -= 1
            return
        c.job, c.attempts, c.due = job, 0, now
        if self.args.rate > 0:
            c.due = self.started + self.index / (self.args.rate / self.per_req)
            self.index += 1
            if c.due > self.deadline:
                c.job = None
                self.active -= 1
                return
            if c.due > now:
                c.unsent = True
                self._later(c, c.due)
                return
        self.rec.sent_msgs += job[1]
        self._send(c, now)

    def _later(self, c: _Conn, when: float) -> None:
        heapq.heappush(self.timers, (when, id(c), c))

    def _fire(self, c: _Conn, now: float) -> None:
        """A paced job fell due, or a retry's pause ended."""
        if c.job is None:
            return
        if c.unsent:
            c.unsent = False
            self.rec.sent_msgs += c.job[1]
        self._send(c, now)

    def _send(self, c: _Conn, now: float) -> None:
        assert c.job is not None
        if c.sock is None:
            try:
                sock = socket.create_connection((self.args.host, self.args.port))
            except OSError as exc:
                self._fail(c, type(exc).__name__, retry=True)
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            c.sock, c.rbuf, c.want_out = sock, b"", False
            self.by_fd[sock.fileno()] = c
            self.ep.register(sock.fileno(), select.EPOLLIN)
        c.out = c.job[2]
        c.t_deadline = now + REQUEST_TIMEOUT
        self._flush(c)

    def _flush(self, c: _Conn) -> None:
        assert c.sock is not None
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self._fail(c, type(exc).__name__, retry=True)
            return
        c.out = c.out[n:]
        if bool(c.out) != c.want_out:  # (a small request nearly always goes in whole)
            c.want_out = bool(c.out)
            self.ep.modify(c.sock.fileno(), select.EPOLLIN | (select.EPOLLOUT if c.out else 0))

    def _on_event(self, c: _Conn, ev: int) -> None:
        if ev & select.EPOLLOUT and c.out:
            self._flush(c)
            if c.sock is None:
                return
        if not ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            return
        assert c.sock is not None
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(c, type(exc).__name__, retry=True)
            return
        if not data:
            self._fail(c, "EOFError", retry=True)
            return
        c.rbuf += data
        got = _answer(c.rbuf)
        if got is None:
            return
        status, close, size = got
        c.rbuf = c.rbuf[size:]
        c.t_deadline = math.inf
        if close:
            self._close(c)
        self._on_status(c, status)

    def _on_status(self, c: _Conn, status: int) -> None:
        rec, now = self.rec, time.monotonic()
        assert c.job is not None
        first, n, _ = c.job
        if status == 202:
            rec.first.append(first)
            rec.n.append(n)
            rec.t_send.append(c.due)
            rec.t_resp.append(now)
            rec.accepted_msgs += n
        elif status in (429, 503) and now < self.deadline + 10:
            rec.retries += 1
            self._later(c, now + 0.05)  # the same messages again, after a short pause
            return
        else:
            rec.errors[str(status)] = rec.errors.get(str(status), 0) + 1
        self._next_job(c, now)

    def _fail(self, c: _Conn, kind: str, *, retry: bool) -> None:
        """The connection broke (retried on a new one, three attempts) or timed out."""
        self._close(c)
        c.t_deadline = math.inf
        c.attempts += 1
        if retry and c.attempts < 3:
            self._later(c, time.monotonic() + 0.05)
            return
        self.rec.errors[kind] = self.rec.errors.get(kind, 0) + 1
        self._next_job(c, time.monotonic())

    def _close(self, c: _Conn) -> None:
        if c.sock is not None:
            self.by_fd.pop(c.sock.fileno(), None)
            with contextlib.suppress(OSError):
                self.ep.unregister(c.sock.fileno())
            c.sock.close()
            c.sock = None
        c.out, c.rbuf = b"", b""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True, help="API key (Bearer)")
    ap.add_argument("--mode", choices=("single", "batch"), default="batch")
    ap.add_argument("--start", type=int, default=1, help="first sequence number (client_ref)")
    ap.add_argument("--count", type=int, default=100_000, help="messages to send at most")
    ap.add_argument("--duration", type=float, default=20.0, help="stop sending after this, s")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rate", type=float, default=0.0, help="messages/s (0: closed loop)")
    ap.add_argument("--out", required=True, help="where to write the per-request records")
    args = ap.parse_args(argv)
    rec = Driver(args).run()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    doc = {"first": rec.first.tolist(), "n": rec.n.tolist(), "t_send": rec.t_send.tolist(),
           "t_resp": rec.t_resp.tolist(), "sent_msgs": rec.sent_msgs,
           "accepted_msgs": rec.accepted_msgs, "retries": rec.retries, "errors": rec.errors,
           "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_kib": usage.ru_maxrss}
    with open(args.out, "w") as f:
        json.dump(doc, f)
    print(f"progress {rec.sent_msgs} {rec.accepted_msgs} {sum(rec.errors.values())}")
    print("done", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
