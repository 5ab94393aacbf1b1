"""SMPP 3.4 framing: ``Framer`` splits a TCP byte stream into PDUs (§3.1, command_length).

Owns the stream buffer and the rule that a bad frame length loses the stream. Sans-IO and
pure; package-internal (``adapters.smpp.pdu`` re-exports ``Framer``).
Must not import: trio, gateway, actors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters.errors import InvalidPdu, RemoteProtocolViolation
from adapters.smpp._decode import decode_frame
from adapters.smpp._octets import HEADER_LENGTH, MAX_PDU_LENGTH, Buffer, unpack_u32

Decoder = Callable[[Buffer, int, int], Any]
"""Decodes one sound frame ``buf[pos:end]``; raises ``InvalidPdu`` as ``decode_frame`` does."""


class Framer:
    """Splits a byte stream into PDUs as bytes arrive (§3.1: command_length frames each PDU).

    ``feed(data)`` returns every complete PDU in order; a well-framed PDU that does not parse
    is returned as an ``InvalidPdu`` value in its place. A frame length below 16 or above
    ``max_length`` raises ``RemoteProtocolViolation``: the stream cannot be resynchronised
    and the connection must close. After that, every ``feed`` raises again.
    """

    __slots__ = ("_broken", "_buffer", "_max_length")

    def __init__(self, max_length: int = MAX_PDU_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = max_length
        self._broken = ""

    @property
    def buffered(self) -> int:
        """Octets received but not yet part of a complete PDU."""
        return len(self._buffer)

    def feed(self, data: bytes, decode: Decoder = decode_frame) -> list[Any]:
        """Add ``data`` and return the PDUs it completes.

        ``decode`` turns each frame into what is returned (default ``decode_frame``: a ``Pdu``);
        a hot path may pass one that answers its common PDUs with plain tuples and hands the
        rest to ``decode_frame``. An ``InvalidPdu`` it raises is returned in the PDU's place.
        """
        if self._broken:
            raise RemoteProtocolViolation(self._broken)
        if self._buffer:
            self._buffer += data
            buf: Buffer = self._buffer
        else:
            buf = data
        out: list[Any] = []  # PDUs, or what ``decode`` makes of them
        pos = 0
        size = len(buf)
        while size - pos >= HEADER_LENGTH:
            length = unpack_u32(buf, pos)[0]
            if length < HEADER_LENGTH or length > self._max_length:
                self._broken = f"command_length {length} is not a valid PDU length"
                raise RemoteProtocolViolation(self._broken)
            if size - pos < length:
                break
            try:
                out.append(decode(buf, pos, pos + length))
            except InvalidPdu as exc:
                out.append(exc)
            pos += length
        if buf is self._buffer:
            del self._buffer[:pos]
        elif pos < size:
            self._buffer += data[pos:]
        return out
