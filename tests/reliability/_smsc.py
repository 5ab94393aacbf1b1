"""A scripted, misbehaving SMSC for the hostile-input table: binds the gateway's SMPP client,
then sends whatever raw frames a case gives and records what comes back.

Frames are built by hand (``frame``, ``deliver_sm``) so that they can be wrong in ways the
codec would never produce: bad lengths, unterminated strings, overrunning TLVs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import trio

from adapters.smpp import pdu as p


def frame(command_id: int, body: bytes = b"", *, sequence: int = 7, status: int = 0,
          length: int | None = None) -> bytes:
    """One PDU: header (length, command id, status, sequence) and body."""
    n = 16 + len(body) if length is None else length
    return struct.pack(">IIII", n, command_id, status, sequence) + body


def cstr(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return raw + b"\x00"


def deliver_sm(text: bytes, *, esm_class: int = p.ESM_DELIVERY_RECEIPT, sequence: int = 7,
               tlvs: bytes = b"", sm_length: int | None = None, source: bytes = b"351910000001",
               dest: bytes = b"Septet", data_coding: int = 0) -> bytes:
    body = (cstr(b"") + bytes((1, 1)) + cstr(source) + bytes((5, 0)) + cstr(dest)
            + bytes((esm_class, 0, 0)) + cstr(b"") + cstr(b"") + bytes((0, 0, data_coding, 0))
            + bytes((len(text) if sm_length is None else sm_length,)) + text + tlvs)
    return frame(p.DELIVER_SM, body, sequence=sequence)


def tlv(tag: int, value: bytes, length: int | None = None) -> bytes:
    return struct.pack(">HH", tag, len(value) if length is None else length) + value


def receipt_text(receipt_id: str, stat: str = "DELIVRD", err: str = "000") -> bytes:
    return (f"id:{receipt_id} sub:001 dlvrd:001 submit date:2611242300 done date:2611242301 "
            f"stat:{stat} err:{err} text:hello").encode()


@dataclass
class Outcome:
    """What the ESME did after a case's frames: the PDUs it sent and whether it hung up."""

    pdus: list[Any] = field(default_factory=list)
    closed: bool = False

    def kinds(self) -> list[str]:
        return [type(x).__name__ for x in self.pdus]

    def statuses(self, kind: str) -> list[int]:
        return [getattr(x, "status", 0) for x in self.pdus if type(x).__name__ == kind]


@dataclass
class ScriptedSmsc:
    """Serve on 127.0.0.1; ``await play(frames)`` sends them on the bound connection."""

    port: int = 0
    connections: int = 0
    submits: int = 0
    _cases: Any = None
    _results: Any = None

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._cases, cases_recv = trio.open_memory_channel[bytes](0)
        results_send, self._results = trio.open_memory_channel[Outcome](0)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        while True:
            stream = await listeners[0].accept()
            self.connections += 1
            async with stream:
                await self._session(stream, cases_recv, results_send)

    async def play(self, frames: bytes, settle: float = 1.0) -> Outcome:
        """Send ``frames`` to the gateway; what it answered within ``settle`` seconds."""
        self._settle = settle
        await self._cases.send(frames)
        return await self._results.receive()

    async def _session(self, stream: trio.SocketStream, cases: Any, results: Any) -> None:
        framer = p.Framer()
        try:
            while True:  # bind, and answer keep-alives
                data = await stream.receive_some(65536)
                if not data:
                    return
                pdus = framer.feed(data)
                bound = False
                for x in pdus:
                    if isinstance(x, p.BindRequest):
                        await stream.send_all(p.encode(p.BindResponse(
                            x.mode, x.sequence, 0, "SCRIPTED", 0x34)))
                        bound = True
                if bound:
                    break
            while True:
                frames = await cases.receive()
                out = Outcome()
                await stream.send_all(frames)
                with trio.move_on_after(self._settle) as scope:
                    while True:
                        data = await stream.receive_some(65536)
                        # an answer came: wait only a little longer for more
                        scope.deadline = min(scope.deadline, trio.current_time() + 0.15)
                        if not data:
                            out.closed = True
                            break
                        for x in framer.feed(data):
                            if isinstance(x, p.EnquireLink):
                                await stream.send_all(p.encode(p.EnquireLinkResp(x.sequence)))
                            elif isinstance(x, p.SubmitSm):  # traffic of the API cases:
                                self.submits += 1  # accept it, it is not an answer
                                await stream.send_all(p.encode_submit_sm_resp(
                                    x.sequence, 0, f"S{self.submits}"))
                            else:
                                out.pdus.append(x)
                await results.send(out)
                if out.closed:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
