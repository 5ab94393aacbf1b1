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
import json
import resource
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import trio

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


class Connection:
    """One keep-alive connection: send a request, read one answer (status, body)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stream: trio.SocketStream | None = None
        self.buf = b""

    async def exchange(self, req: bytes) -> tuple[int, bytes]:
        for attempt in range(3):
            if self.stream is None:
                self.stream = await trio.open_tcp_stream(self.host, self.port)
                self.buf = b""
            try:
                # A bare CancelScope: trio.fail_after's generator wrapper was ~15 % of this
                # process's CPU per request.
                with trio.CancelScope(deadline=trio.current_time() + REQUEST_TIMEOUT):
                    await self.stream.send_all(req)
                    return await self._answer()
                raise trio.TooSlowError
            except trio.TooSlowError:
                await self.stream.aclose()
                self.stream = None
                raise
            except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError, OSError):
                self.stream = None
                if attempt == 2:
                    raise
                await trio.sleep(0.05)
        raise AssertionError("unreachable")

    async def _answer(self) -> tuple[int, bytes]:
        assert self.stream is not None
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            await self._more()
        head = self.buf[:end].lower()
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
        while len(self.buf) < end + 4 + length:
            await self._more()
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        if close:
            await self.stream.aclose()
            self.stream = None
        return status, body

    async def _more(self) -> None:
        assert self.stream is not None
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError
        self.buf += data


async def drive(args: argparse.Namespace) -> Records:
    """Run the load until every message is accepted, or ``--duration`` is over."""
    rec = Records()
    # Every request is encoded before the clock starts: JSON per request was ~15 % of this
    # process's CPU during the run, which on a shared machine the gateway needs.
    source = iter(list(jobs(args.host, args.key, args.mode, args.start, args.count)))
    started = time.monotonic()
    deadline = started + args.duration
    per_req = 100 if args.mode == "batch" else 1
    index = 0

    async def worker() -> None:
        nonlocal index
        conn = Connection(args.host, args.port)
        while time.monotonic() < deadline:
            job = next(source, None)
            if job is None:
                return
            first, n, req = job
            due = time.monotonic()
            if args.rate > 0:
                due = started + index / (args.rate / per_req)
                index += 1
                if due > deadline:
                    return
                await trio.sleep(max(0.0, due - time.monotonic()))  # trio's clock is offset
            rec.sent_msgs += n
            while True:
                try:
                    status, _ = await conn.exchange(req)
                except (OSError, EOFError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                    key = type(exc).__name__
                    rec.errors[key] = rec.errors.get(key, 0) + 1
                    break
                now = time.monotonic()
                if status == 202:
                    rec.first.append(first)
                    rec.n.append(n)
                    rec.t_send.append(due)
                    rec.t_resp.append(now)
                    rec.accepted_msgs += n
                    break
                if status in (429, 503) and now < deadline + 10:
                    rec.retries += 1
                    await trio.sleep(0.05)
                    continue
                rec.errors[str(status)] = rec.errors.get(str(status), 0) + 1
                break

    async def progress() -> None:
        while True:
            print(f"progress {rec.sent_msgs} {rec.accepted_msgs} "
                  f"{sum(rec.errors.values())}", flush=True)
            await trio.sleep(0.5)

    async with trio.open_nursery() as outer:
        outer.start_soon(progress)
        async with trio.open_nursery() as nursery:
            for _ in range(args.connections):
                nursery.start_soon(worker)
        outer.cancel_scope.cancel()
    return rec


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
    rec = trio.run(drive, args)
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
