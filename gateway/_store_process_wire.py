"""The frames between the gateway and its store writer process (``[store] writer = "process"``).

Both sides import this module: the gateway (``gateway._store_process``) and the writer process
(``gateway._store_writer_main``). A frame is a 4-byte big-endian length and one msgpack value.

Requests (gateway → writer), one frame each::

    [rid, "accept", encode_batch(messages)]
    [rid, "mark", encode_batch(submit_parts), now]
    [rid, "apply", encode_batch(items), now]
    [rid, "expire", older_than, limit]
    [rid, "recover", policy, now]
    [rid, "cb_enqueue", encode_batch(status_events), now]
    [rid, "cb_settle", [[due_key, outcome, ...as the outcome needs], ...], now]

Replies (writer → gateway), one frame per commit, sent only after the commit returned, and one
per failed commit (``timings`` empty; its failed requests, if any)::

    [[took, ops_s, commit_s, ops_cpu_s, commit_cpu_s, child_cpu_s], [[rid, ok, payload], ...],
     failed_commits]

The child's first frame, once it has opened the environment::

    ["ready", pid, map_size, started (wall clock), open_s, stale_readers_cleared]

The callback outbox's two ops (``gateway._callback_ops``) answer ``[new, [[index, due_key],
...], [index, ...]]`` (enqueue: scheduled and waiting, indices into the events sent) and
``[due_key, ...]`` (settle: the events released).

``payload`` is the op's result in wire form (:func:`result_to_wire`) when ``ok``, else
``[exception class name, text]``. No closures or pickles cross the boundary: only op names and
msgpack-native arguments, the message kinds in their ``actors.messages`` wire form.

Must not import trio (the writer process runs plain blocking code).
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgpack

from actors import messages as m
from actors.ports import Applied, Recovered

WIRE_VERSION: Final = 3
"""Bumped whenever a frame's layout changes. The gateway passes its version to the child, which
refuses to serve another: the child is a fresh import of the installed code at each start, and
code replaced under a running gateway (an upgrade in place) must not be half understood.
2: reply frames carry the failed-commit count; the hello carries start-up timings.
3: the callback outbox's ops, cb_enqueue and cb_settle."""
HEADER: Final = struct.Struct("!I")
MAX_FRAME: Final = 1 << 30  # a frame longer than this is a protocol error, not a batch

OPS: Final = ("accept", "mark", "apply", "expire", "recover", "cb_enqueue", "cb_settle")


def frame(value: Any) -> bytes:
    """``value`` packed as one length-prefixed frame."""
    body: bytes = msgpack.packb(value, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into frames (sans-IO: feed bytes, take values)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        """Append bytes read from the stream."""
        self._buf += data

    def frames(self) -> list[Any]:
        """Every complete frame received so far, decoded, in order.

        Raises:
            ValueError: a frame header announces more than ``MAX_FRAME`` bytes.
        """
        out: list[Any] = []
        buf, pos, size = self._buf, 0, len(self._buf)
        while size - pos >= HEADER.size:
            (n,) = HEADER.unpack_from(buf, pos)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes")
            if size - pos - HEADER.size < n:
                break
            start = pos + HEADER.size
            out.append(msgpack.unpackb(buf[start:start + n], raw=False))
            pos = start + n
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held."""
        return len(self._buf)


def result_to_wire(op: str, value: Any) -> Any:
    """An op's result as msgpack-native values (the writer process side)."""
    if op == "apply":
        a: Applied = value
        return [a.event_rows, a.released, a.matched, a.duplicates, a.unknown, a.orphans_parked,
                a.orphans_matched, a.illegal, a.ignored, a.receipt_lags]
    if op == "recover":
        r: Recovered = value
        return [r.in_doubt, [m.to_wire(e) for e in r.events]]
    return value  # accept: None, mark: list[bool], expire: int, cb_*: already plain


def result_from_wire(op: str, raw: Any) -> Any:
    """Inverse of :func:`result_to_wire` (the gateway side)."""
    if op == "apply":
        (rows, released, matched, duplicates, unknown, parked, orphans_matched, illegal,
         ignored, lags) = raw
        return Applied(rows, [m.MsgId(x) for x in released], matched, duplicates, unknown,
                       parked, orphans_matched, illegal, ignored, lags)
    if op == "recover":
        events = [m.from_wire(row) for row in raw[1]]
        return Recovered(raw[0], events)  # type: ignore[arg-type]
    return raw
