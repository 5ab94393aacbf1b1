"""The callback receiver of the end-to-end benchmark: a small HTTP/1.1 server on loopback.

It answers every POST with 200 at once and records, per ``client_ref`` (the load generator's
sequence number), when its first final status arrived (SMS_DELIVERED, SMS_NOT_DELIVERED,
SMS_NOT_SENT) and which one, counting repeated (msg, event) pairs as duplicate callbacks.
Bodies are one JSON object or a JSON array of them (gateway/callbacks.py).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httptools
import trio

FINAL = frozenset({"SMS_DELIVERED", "SMS_NOT_DELIVERED", "SMS_NOT_SENT"})
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Received:
    """What the receiver saw."""

    requests: int = 0
    events: int = 0
    duplicates: int = 0
    bad: int = 0
    final_at: dict[int, float] = field(default_factory=dict)  # ref -> monotonic arrival
    final_type: Counter[str] = field(default_factory=Counter)
    seen: set[tuple[int, str]] = field(default_factory=set)
    delivered_at: dict[int, float] = field(default_factory=dict)

    def record(self, body: bytes, now: float) -> None:
        self.requests += 1
        try:
            doc = json.loads(body)
        except ValueError:
            self.bad += 1
            return
        for ev in doc if isinstance(doc, list) else [doc]:
            self.events += 1
            kind = ev.get("type", "")
            try:
                ref = int(ev["data"]["client_ref"])
            except (KeyError, TypeError, ValueError):
                self.bad += 1
                continue
            if (ref, kind) in self.seen:
                self.duplicates += 1
                continue
            self.seen.add((ref, kind))
            if kind in FINAL and ref not in self.final_at:
                self.final_at[ref] = now
                self.final_type[kind] += 1
                if kind == "SMS_DELIVERED":
                    self.delivered_at[ref] = now


class _Proto:
    def __init__(self, sink: Received) -> None:
        self.sink = sink
        self.body: list[bytes] = []
        self.done = 0

    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.sink.record(b"".join(self.body), time.monotonic())
        self.done += 1


async def _connection(sink: Received, stream: trio.SocketStream) -> None:
    proto = _Proto(sink)
    parser = httptools.HttpRequestParser(proto)
    async with stream:
        try:
            while data := await stream.receive_some(65536):
                parser.feed_data(data)
                if proto.done:
                    await stream.send_all(_OK * proto.done)
                    proto.done = 0
        except (trio.BrokenResourceError, httptools.HttpParserError):
            return


async def serve(sink: Received, *, port: int = 0,
                task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled; ``task_status.started(bound port)``."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1", backlog=1024)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(partial(_connection, sink), listeners)


def summary(sink: Received) -> dict[str, Any]:
    """The JSON-ready counters."""
    return {"callback_requests": sink.requests, "callback_events": sink.events,
            "callback_duplicates": sink.duplicates, "callback_bad": sink.bad,
            "final_by_type": dict(sink.final_type)}
