"""The rows the pipeline's store ops write: their layout, their packers, the write helpers.

Shared by the op modules (``_store_accept``: ingress; ``_store_pipeline``: dispatcher,
correlator, recovery; ``_store_reads``: the pump's and the correlator's reads).

Packing: a state row is a msgpack array of plain values (the layout below).
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
from typing import Any, Final, Protocol

import msgpack

from actors import correlation as corr

__all__ = ["Dbs", "row_packer"]


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
        return _tls.row_pack  # type: ignore[no-any-return]
    except AttributeError:
        _tls.row_pack = msgpack.Packer(use_bin_type=True, strict_types=True,
                                       default=_plain).pack
        return _tls.row_pack  # type: ignore[no-any-return]


def _packer() -> Callable[[Any], bytes]:
    """This thread's reused ``Packer(use_bin_type=True).pack``: packb builds a Packer per
    call, 1.3 µs against 0.5 µs, and ops pack ~7 rows a message. An op takes it once."""
    try:
        return _tls.pack  # type: ignore[no-any-return]
    except AttributeError:
        _tls.pack = msgpack.Packer(use_bin_type=True).pack
        return _tls.pack  # type: ignore[no-any-return]


def _pack(value: Any) -> bytes:
    """``msgpack.packb(value, use_bin_type=True)`` with this thread's strict row Packer."""
    return row_packer()(value)


_unpackb: Final = msgpack.unpackb


def _unpack(data: bytes) -> Any:
    return _unpackb(data, raw=False)


class Dbs(Protocol):
    """What the ops need of a store: the named database handles. :class:`gateway.store.Store`
    has them, and so does the writer process's own small holder (``gateway._store_writer_main``),
    which opens the same environment without a writer task."""

    _dbs: dict[bytes, Any]

    def db(self, name: bytes) -> Any:
        """The handle of named database ``name``."""
        ...


# The hot path works on the stored rows themselves (plain lists), not on StateRecord /
# PartRecord objects: unpacking into objects and back cost ~5 µs per message per batch.
# State row (StateRecord order): [state, seq, parts, code, reason, at, due, attempts, timeout,
# events, account, to, campaign, client_ref, callback_url]. The status events live in the row
# (one put per message per stage, not one more per event) and so do the Message fields the
# correlator needs for an event (no read and decode of the Message record when it turns SENT).
(_ST, _NSEQ, _PARTS, _CODE, _REASON, _AT, _DUE, _ATTEMPTS, _TIMEOUT, _EVENTS, _ACCOUNT, _TO,
 _CAMPAIGN, _CLIENT_REF, _CALLBACK_URL) = range(15)
# Part row: [status, connector, carrier_id, code, at] (PartRecord order)
_P_STATUS, _P_CONN, _P_CID, _P_CODE, _P_AT = range(5)


_NO_OVERWRITE: Final = (True, False, False)
"""``put(key, value, dupdata, overwrite, append, db)``'s middle arguments for overwrite=False.
The hottest LMDB calls pass their arguments by position: py-lmdb parses keywords at ~0.08 µs
a call (get 0.34 -> 0.26 µs, put 0.40 -> 0.32, measured)."""


def _new_part() -> list[Any]:
    return [corr.PART_PENDING, "", "", "", 0.0]


def _put_all(txn: Any, db: Any, items: list[tuple[bytes, bytes]]) -> None:
    """``txn.put(key, value, db=db)`` of each item, in order (later ones overwrite)."""
    if items:
        with txn.cursor(db=db) as cur:
            cur.putmulti(items)


def _count(txn: Any, store: Dbs, campaign: str, name: str, n: int = 1) -> None:
    key = campaign.encode() + b"\x00" + name.encode()
    db = store.db(b"campaigns")
    raw = txn.get(key, db=db)
    txn.put(key, _pack((msgpack.unpackb(raw) if raw else 0) + n), db=db)
