"""Benchmark: status callbacks delivered per second to a local receiver in another process.

    python -m bench.callbacks [--events 20000] [--batch 1,100] [--per-endpoint 32]
                              [--max-in-flight N] [--statuses 1]
    python -m bench.callbacks --micro     # the outbox's CPU per message, no HTTP
    python -m bench.callbacks --clients all   # HTTP clients compared: CPU per request
    python -m bench.callbacks --no-http       # the notifier and outbox alone (no requests)

For each batch size, a fresh LMDB store (sync=True, fsync per group commit) gets ``--events``
StatusEvents through the notifier's inbox; the notifier enqueues them durably, signs and POSTs
them to a receiver running in a separate process (``python -m bench.callbacks --serve``), and
the clock stops when the receiver has acknowledged every event. ``--statuses 2`` gives each
message SMS_SENT and SMS_DELIVERED (the second released when the first is delivered), the
outbox's work per message in bench.e2e. Batch size 1 is one request per
callback (a JSON object); larger sizes send JSON arrays (the batched mode). The last line is
one JSON object with ``callbacks_per_s`` (the best mode), per-mode rates and CPU µs per
callback of the notifier's process (all threads, so the LMDB writer too; the receiver's process
is not counted), and the receiver's duplicate count (must be 0).

The module also holds :class:`Receiver` / :func:`serve_receiver`, a small trio HTTP/1.1 server
(keep-alive, Content-Length bodies) that tests use as a scriptable callback receiver: it can
answer errors, stall, and records every request.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from actors.messages import StatusEvent

RESPONSE_OK: Final = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


@dataclass(slots=True)
class Request:
    """One request as the receiver saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Receiver:
    """What the receiver answers and what it has seen.

    ``respond(request_number)`` returns a status code (0 = stall until cancelled); by default
    every request gets 200. ``record=False`` keeps only counters (benchmark).
    """

    respond: Callable[[int], int] = lambda n: 200
    record: bool = True
    requests: list[Request] = field(default_factory=list)
    count: int = 0
    events: int = 0
    ok_events: int = 0
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    def _note(self, request: Request, status: int) -> None:
        self.count += 1
        body = request.body.lstrip()
        n = body.count(b'"message_id"') if body[:1] == b"[" else 1
        self.events += n
        if status == 200:
            self.ok_events += n
            wid = request.headers.get("webhook-id", "")
            if wid in self.ids:
                self.duplicates += 1
            self.ids.add(wid)
        if self.record:
            self.requests.append(request)
        self.changed.set()
        self.changed = trio.Event()


async def _read_request(stream: trio.SocketStream, buffer: bytearray) -> Request | None:
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        data = await stream.receive_some(65536)
        if not data:
            return None
        body += data
    buffer[:] = body[length:]
    return Request(method, path, headers, bytes(body[:length]))


async def _handle(receiver: Receiver, stream: trio.SocketStream) -> None:
    buffer = bytearray()
    async with stream:
        try:
            while (request := await _read_request(stream, buffer)) is not None:
                status = receiver.respond(receiver.count)
                if status == 0:
                    receiver.count += 1
                    await trio.sleep_forever()
                receiver._note(request, status)
                if status == 200:
                    await stream.send_all(RESPONSE_OK)
                else:
                    await stream.send_all(
                        b"HTTP/1.1 %d Error\r\ncontent-length: 0\r\n\r\n" % status
                    )
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            return


async def serve_receiver(
    receiver: Receiver,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``receiver`` until cancelled; reports the bound port as started value."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
    bound = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(partial(_handle, receiver), listeners, handler_nursery=nursery)


# ------------------------------------------------------------------------------- benchmark


async def _serve_forever_reporting(port_file: str) -> None:
    """Receiver process: serve on a free port, write it, print totals on stdin EOF."""
    receiver = Receiver(record=False)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        await trio.Path(port_file).write_text(str(port))
        stdin = trio.lowlevel.FdStream(os.dup(0))
        while True:
            line = await stdin.receive_some(100)
            if not line:
                break
            print(json.dumps({"events": receiver.ok_events, "duplicates": receiver.duplicates}),
                  flush=True)
        nursery.cancel_scope.cancel()


def _events(n: int, url: str, statuses: int = 1) -> list[StatusEvent]:
    """``n`` events: ``statuses`` per message (SMS_SENT seq 1, then SMS_DELIVERED seq 2..),
    each message's later statuses 500 events after its first, as receipts come after submits
    (so they wait in the outbox behind seq 1 and are released when it is delivered)."""
    from actors.messages import MsgId, StatusEvent

    per_chunk = max(1, 500 // statuses)
    out: list[StatusEvent] = []
    for first in range(0, -(-n // statuses), per_chunk):
        ids = range(first, min(first + per_chunk, -(-n // statuses)))
        for seq in range(1, statuses + 1):
            out += [StatusEvent(MsgId(f"m{i:08d}"), "bench",
                                "SMS_SENT" if seq == 1 and statuses > 1 else "SMS_DELIVERED",
                                seq, time.time(), carrier_id=f"c{i}", campaign="bench",
                                parts=1, client_ref=f"r{i}", callback_url=url) for i in ids]
    return out[:n]


class _NoHttp:
    """A sender that answers 200 after one trio checkpoint: the notifier and outbox alone."""

    async def send(self, url: str, secret: bytes, events: object) -> object:
        from actors.ports import CallbackResult

        await trio.lowlevel.checkpoint()
        return CallbackResult(ok=True, status=200)


async def _run_mode(
    n: int, batch: int, per_endpoint: int, max_in_flight: int, port: int, statuses: int = 1,
    http: bool = True,
) -> tuple[float, float, float]:
    """One mode: ``(callbacks per second, CPU µs of this process per callback, CPU µs of its
    main thread (the event loop: notifier, sender, acker) per callback)``. ``http=False``
    swaps the HTTP sender for :class:`_NoHttp`."""
    from actors import messages, notifier
    from actors.callbacks_policy import RetryPolicy
    from gateway.callback_outbox import CallbackOutbox
    from gateway.callbacks import open_callback_sender
    from gateway.store import open_store

    url = f"http://127.0.0.1:{port}/hook"
    policy = RetryPolicy(batch_size=batch, per_endpoint=per_endpoint,
                         max_in_flight=max_in_flight or per_endpoint)
    stats = notifier.NotifierStats()
    events = _events(n, url, statuses)
    with tempfile.TemporaryDirectory() as tmp:
        async with open_store(tmp, sync=True) as store, \
                open_callback_sender(allow_loopback=True) as http_sender:
            sender = http_sender if http else _NoHttp()
            outbox = CallbackOutbox(store)
            send, recv = trio.open_memory_channel[bytes](8)
            start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
            async with trio.open_nursery() as nursery:
                await nursery.start(partial(
                    notifier.run, recv, outbox=outbox, sender=sender, policy=policy,
                    endpoint_for=lambda e: (e.callback_url, b"bench-secret"), stats=stats))
                async with send:
                    for i in range(0, n, 500):
                        await send.send(messages.encode_batch(events[i : i + 500]))
                    while stats.delivered < n:
                        await trio.sleep(0.01)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu
                main = time.thread_time() - main
    return n / elapsed, cpu / n * 1e6, main / n * 1e6


def micro(messages: int = 2000, rounds: int = 5) -> dict[str, float]:
    """CPU µs per message of the callback outbox's work for SMS_SENT + SMS_DELIVERED, without
    HTTP (best of ``rounds``): the writer-side ops (enqueue of each, the first's settlement
    releasing the second, the second's settlement; timed inside their transactions, sync off)
    and the reads (``due``) the notifier makes."""
    from actors.messages import MsgId, StatusEvent
    from actors.ports import Settlement
    from gateway.callback_outbox import CallbackOutbox
    from gateway.store import open_env

    class _Timed:  # gateway.store.Store's interface, writes inline and timed
        def __init__(self, path: str) -> None:
            self.env, self._dbs = open_env(Path(path), sync=False, metasync=False)
            self.spent = 0.0

        def db(self, name: bytes) -> object:
            return self._dbs[name]

        async def write(self, op: Callable[[object], object]) -> object:
            with self.env.begin(write=True) as txn:
                t0 = time.perf_counter()
                try:
                    return op(txn)
                finally:
                    self.spent += time.perf_counter() - t0

        def read(self) -> object:
            return self.env.begin()

    async def one(path: str, r: int) -> dict[str, float]:
        store = _Timed(path)
        outbox = CallbackOutbox(store)  # type: ignore[arg-type]
        t = 1.8e9 + r * 100
        ids = [MsgId(f"{r:04d}{i:012x}") for i in range(messages)]

        def events(seq: int, kind: str, at: float) -> list[StatusEvent]:
            return [StatusEvent(m, "acct", kind, seq, at, carrier_id="c" + m, parts=1,
                                client_ref="r") for m in ids]

        spent: dict[str, float] = {}

        async def timed(name: str, step: Awaitable[object]) -> None:
            store.spent = 0.0  # (a coroutine runs only when awaited: after this)
            await step
            spent[name] = store.spent

        await timed("enqueue_sent", outbox.enqueue(events(1, "SMS_SENT", t), now=t))
        await timed("enqueue_delivered", outbox.enqueue(
            events(2, "SMS_DELIVERED", t + 0.1), now=t + 0.1))
        for name, at in (("settle_sent", t + 1), ("settle_delivered", t + 2)):
            t0 = time.perf_counter()
            due = outbox.due(at, limit=2 * messages, skip=set())
            spent["due_" + name[7:]] = time.perf_counter() - t0
            assert len(due) == messages
            await timed(name, outbox.settle([Settlement(e, "delivered") for e in due], now=at))
        return {k: v / messages * 1e6 for k, v in spent.items()}

    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for k, v in trio.run(one, tmp, r).items():
                best[k] = min(best.get(k, math.inf), v)
    writer = sum(v for k, v in best.items() if not k.startswith("due_"))
    return {**{k + "_us": round(v, 2) for k, v in best.items()},
            "writer_us_per_message": round(writer, 2)}


CLIENTS: Final = ("httpx-client", "httpx-transport", "keepalive-stream", "keepalive-raw",
                  "bare-hand", "bare-httptools")


async def _client_run(kind: str, port: int, connections: int, requests: int) -> float:
    """Main-thread CPU µs per request of one client kind, ``connections`` tasks each sending
    ``requests / connections`` callbacks one after another (one connection each).

    ``httpx-client``: httpx.AsyncClient.post of the signed body (the stack's stock client);
    ``httpx-transport`` / ``keepalive-stream`` / ``keepalive-raw``: HttpCallbackSender.send
    (SSRF check, JSON body, signature) through httpx's AsyncHTTPTransport, KeepAliveTransport
    on trio's streams, and KeepAliveTransport's raw-socket path (the default); ``bare-hand``
    / ``bare-httptools``: a prebuilt request on a raw socket, the answer parsed by the
    transport's own reader or by httptools (the floor of any client on trio).
    """
    import socket

    import httptools
    import httpx

    from actors.messages import MsgId, StatusEvent
    from gateway import callbacks
    from gateway.callbacks import HttpCallbackSender, KeepAliveTransport

    url = f"http://127.0.0.1:{port}/hook"
    event = StatusEvent(MsgId("0000000000000042"), "bench", "SMS_DELIVERED", 2, time.time(),
                        carrier_id="c1", parts=1, client_ref="1", callback_url=url)
    body = callbacks.build_body([event])
    wid, ts = callbacks.webhook_id([event]), int(time.time())
    headers = {"content-type": "application/json", "user-agent": callbacks.USER_AGENT,
               "webhook-id": wid, "webhook-timestamp": str(ts),
               "webhook-signature": callbacks.sign(b"bench-secret", wid, ts, body)}
    raw = (callbacks._request_head(b"POST", b"/hook", [
        (b"host", f"127.0.0.1:{port}".encode()), (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in headers.items())]) + body)

    class _NoRaw(KeepAliveTransport):  # the same transport on trio's SocketStream only
        async def _connect(self, origin: callbacks.Origin) -> callbacks._Connection:
            return callbacks._Connection(await trio.open_tcp_stream(origin[1], origin[2]))

    class _Parsed:
        def __init__(self) -> None:
            self.done = False

        def on_message_complete(self) -> None:
            self.done = True

    async def bare(use_httptools: bool, n: int) -> None:
        sock = socket.socket()
        tsock = trio.socket.from_stdlib_socket(sock)
        await tsock.connect(("127.0.0.1", port))
        conn = callbacks._Connection(trio.SocketStream(tsock), raw=sock)
        for _ in range(n):
            if not use_httptools:
                status, _h, _b = await conn.exchange(raw)
            else:
                sock.send(raw)
                state = _Parsed()
                parser = httptools.HttpResponseParser(state)
                while not state.done:
                    await trio.lowlevel.wait_readable(sock)
                    parser.feed_data(sock.recv(65536))
                status = parser.get_status_code()
            assert status == 200
        tsock.close()

    per = requests // connections
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=connections))
    sender = HttpCallbackSender(allow_loopback=True, transport={
        "httpx-transport": httpx.AsyncHTTPTransport(), "keepalive-stream": _NoRaw()}.get(
            kind, KeepAliveTransport()))

    async def one(n: int) -> None:
        for _ in range(n):
            if kind == "httpx-client":
                assert (await client.post(url, content=body, headers=headers)).status_code == 200
            else:
                assert (await sender.send(url, b"bench-secret", [event])).ok

    for warm in (True, False):  # a first short round opens the connections
        n = max(1, per // 20) if warm else per
        cpu = time.thread_time()
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                if kind.startswith("bare-"):
                    nursery.start_soon(bare, kind == "bare-httptools", n)
                else:
                    nursery.start_soon(one, n)
        cpu = time.thread_time() - cpu
    await client.aclose()
    await sender.aclose()
    return cpu / (per * connections) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", metavar="PORT_FILE", help="run only the receiver (internal)")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--statuses", type=int, default=1,
                        help="statuses per message (2: SMS_SENT then SMS_DELIVERED, as in "
                             "bench.e2e; the second waits in the outbox behind the first)")
    parser.add_argument("--batch", default="1,100", help="comma-separated batch sizes")
    parser.add_argument("--per-endpoint", type=int, default=32)
    parser.add_argument("--max-in-flight", type=int, default=0,
                        help="requests in flight overall (default: --per-endpoint); the gateway's "
                             "defaults are --per-endpoint 8 --max-in-flight 256")
    parser.add_argument("--clients", default="",
                        help="compare HTTP clients instead (comma list of " + ",".join(CLIENTS)
                             + ", or all): main-thread CPU µs per request, 8 connections")
    parser.add_argument("--no-http", action="store_true",
                        help="answer every request at once without HTTP (the notifier and the "
                             "outbox alone; the receiver is not asked)")
    parser.add_argument("--micro", action="store_true",
                        help="only the outbox's CPU per message (SENT + DELIVERED), no HTTP")
    args = parser.parse_args()
    if args.micro:
        outbox_figures = micro()
        for name, value in outbox_figures.items():
            print(f"{name:28} {value:7.2f}")
        print(json.dumps(outbox_figures))
        return
    if args.serve:
        trio.run(_serve_forever_reporting, args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        proc = subprocess.Popen([sys.executable, "-m", "bench.callbacks", "--serve", port_file],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            while not os.path.exists(port_file) or not Path(port_file).read_text():
                time.sleep(0.05)
            port = int(Path(port_file).read_text())

            def ask() -> dict[str, int]:
                assert proc.stdin and proc.stdout
                proc.stdin.write("?\n")
                proc.stdin.flush()
                return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]

            if args.clients:
                kinds = CLIENTS if args.clients == "all" else args.clients.split(",")
                client_us = {}
                for kind in kinds:
                    n = args.events // (10 if kind.startswith("httpx") else 1)
                    client_us[kind] = round(trio.run(_client_run, kind, port, 8, n), 1)
                    print(f"{kind:18} {client_us[kind]:7.1f} µs main-thread CPU per request "
                          f"({n} requests)", flush=True)
                print(json.dumps({f"client_us_per_request_{k}": v for k, v in client_us.items()}))
                return
            figures: dict[str, float] = {}
            cpu_us: dict[str, float] = {}
            main_us: dict[str, float] = {}
            for batch in (int(b) for b in args.batch.split(",")):
                before = ask()["events"]
                rate, us, main = trio.run(_run_mode, args.events, batch, args.per_endpoint,
                                          args.max_in_flight, port, args.statuses,
                                          not args.no_http)
                got = ask()
                assert args.no_http or got["events"] - before >= args.events, (got, before)
                figures[f"batch_{batch}"] = round(rate)
                cpu_us[f"batch_{batch}"] = round(us, 1)
                main_us[f"batch_{batch}"] = round(main, 1)
                print(f"batch size {batch:>4}: {args.events} callbacks in "
                      f"{args.events / rate:.2f} s = {rate:,.0f} callbacks/s, "
                      f"{us:.1f} CPU µs per callback (notifier process), "
                      f"{main:.1f} of it on the main thread", flush=True)
            final = ask()
        finally:
            if proc.stdin:
                proc.stdin.close()
            proc.wait(timeout=10)
    print(json.dumps({
        "callbacks_per_s": max(figures.values()),
        **{f"callbacks_per_s_{k}": v for k, v in figures.items()},
        **{f"cpu_us_per_callback_{k}": v for k, v in cpu_us.items()},
        **{f"main_thread_us_per_callback_{k}": v for k, v in main_us.items()},
        "events": args.events,
        "statuses": args.statuses,
        "receiver_duplicates": final["duplicates"],
    }))


if __name__ == "__main__":
    main()
