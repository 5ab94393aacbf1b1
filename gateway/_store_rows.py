"""The packer of the pipeline's state rows (and other plain rows the store ops write).

Packing: a state row is a msgpack array of plain values (see ``_store_pipeline``'s layout).
:func:`row_packer` packs it with ``strict_types=True``, which skips msgpack's subclass checks
(0.80 -> 0.43 µs for a 143-byte row after SENT, measured); anything not of an exact msgpack
type (a tuple, a ``str`` enum, an ``IntEnum``) goes through :func:`_plain`, so the bytes are
exactly those of ``msgpack.packb(row, use_bin_type=True)``.

Measured and dropped: a cache of decoded rows between stages (the next stage taking the row an
op wrote, when the bytes it reads are those written) made the ops slower, not faster
(``--ops`` total 20.2 -> 22.7 µs): holding ~20k decoded rows costs more in allocator and CPU
cache misses than the ~0.7 µs unpack it saves (bench/RESULTS_oneproc.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import msgpack

__all__ = ["row_packer"]


def _plain(obj: Any) -> Any:
    """``obj`` as an exact msgpack type, the way msgpack's non-strict Packer would pack it.

    Raises:
        TypeError: not packable by msgpack.
    """
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, str):
        return str.__str__(obj)  # the characters, not an enum's str()
    if isinstance(obj, int):
        return int.__int__(obj)
    if isinstance(obj, float):
        return float.__float__(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, dict):
        return dict(obj)
    raise TypeError(f"cannot pack {type(obj).__name__}")


_tls = threading.local()


def row_packer() -> Callable[[Any], bytes]:
    """This thread's strict ``Packer.pack`` for state rows (bytes equal to ``packb``)."""
    try:
        return _tls.pack  # type: ignore[no-any-return]
    except AttributeError:
        _tls.pack = msgpack.Packer(use_bin_type=True, strict_types=True, default=_plain).pack
        return _tls.pack  # type: ignore[no-any-return]
