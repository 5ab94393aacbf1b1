"""Decoded batches that keep their channel bytes, and joining msgpack arrays without unpacking.

A stage that decodes a channel item and hands the very same messages on to something that
encodes them again (the dispatcher's parts to ``mark_submitting``, the correlator's items to
``apply``: the writer process ships both as ``encode_batch`` bytes) can hand a
:class:`WireBatch` instead: ``messages.encode_batch`` returns its ``wire`` as it is. A
WireBatch is a tuple, so the messages cannot change after the bytes were taken; the decoders
build one only when every row was already of its kind's current version, so ``wire`` is what
``encode_batch`` would write.

Must not import: trio, lmdb, gateway, adapters (pure data, as actors.messages).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Self

__all__ = ["WireBatch", "array_header", "array_of", "join_arrays"]


class WireBatch(tuple[Any, ...]):
    """Messages (a read-only sequence) and ``wire``, the msgpack batch they were decoded from."""

    wire: bytes

    def __new__(cls, messages: Iterable[Any], wire: bytes) -> Self:
        self = super().__new__(cls, messages)
        self.wire = wire
        return self


def array_header(data: bytes) -> tuple[int, int]:
    """(elements, header size) of the msgpack array ``data`` (fixarray, array 16, array 32).

    Raises:
        ValueError: ``data`` is not a msgpack array.
    """
    first = data[0] if data else -1
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC:
        return int.from_bytes(data[1:3], "big"), 3
    if first == 0xDD:
        return int.from_bytes(data[1:5], "big"), 5
    raise ValueError("not a msgpack array")


def join_arrays(items: Sequence[bytes]) -> bytes:
    """One msgpack array holding the elements of the arrays ``items``, in order.

    Only the array headers are read: the elements are copied as they are, so joining costs a
    copy, not an unpack and a pack.

    Raises:
        ValueError: an item is not a msgpack array.
    """
    if len(items) == 1:
        array_header(items[0])
        return items[0]
    total = 0
    bodies: list[bytes | memoryview] = []
    for data in items:
        n, skip = array_header(data)
        total += n
        bodies.append(memoryview(data)[skip:])
    return b"".join([_header(total), *bodies])


def array_of(elements: Sequence[bytes]) -> bytes:
    """One msgpack array of ``elements``, each already one packed msgpack object (e.g. store
    records, which are batch rows: ``actors.messages.encode``)."""
    return b"".join([_header(len(elements)), *elements])


def _header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")
