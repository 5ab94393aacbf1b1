"""What the pipeline's store ops share: plain-string views of the state machine and the
correlation rules, and :class:`_Ctx`, the handles and per-batch scratch of one op (the state
rows it has read, written back in one ``putmulti`` per database by :meth:`_Ctx.flush`).

Used by ``gateway._store_pipeline`` (the dispatcher's mark, recovery, :class:`PipelineStore`)
and ``gateway._store_correlate`` (the correlator's ops).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from actors import correlation as corr
from actors import messages as m
from actors import states
from actors.messages import FINAL_STATES, ReceiptState, State
from actors.ports import Applied
from gateway._store_rows import (
    Dbs,
    _count,
    _pack,
    _put_all,
    _unpackb,
    row_packer,
)

EVENT_OF: Final[dict[State, str]] = {
    State.SENT: "SMS_SENT",
    State.DELIVERED: "SMS_DELIVERED",
    State.NOT_DELIVERED: "SMS_NOT_DELIVERED",
    State.NOT_SENT: "SMS_NOT_SENT",
}
_SEQ = itertools.count(time.time_ns())
_EVENT_HEAD: Final = (m.StatusEvent.TAG, m.StatusEvent.VERSION)


_OPEN: Final = (corr.PART_PENDING, corr.PART_SUBMITTING)

# Plain-string views of actors.states / actors.correlation, derived from them at import (the
# rows hold plain strings; State(...) and Enum.value cost ~0.5 µs each on the hot path).
_MOVES: Final[dict[tuple[str, str], tuple[str, bool]]] = {
    (a.value, b.value): (states.move(a, b)[0].value, states.move(a, b)[1])
    for a in State for b in State}
_FINAL: Final = frozenset(s.value for s in FINAL_STATES)
_EVENT: Final[dict[str, str]] = {k.value: v for k, v in EVENT_OF.items()}
_SENT, _DELIVERED, _NOT_DELIVERED, _NOT_SENT = State.SENT.value, State.DELIVERED.value, \
    State.NOT_DELIVERED.value, State.NOT_SENT.value
_AFTER_SENT: Final = frozenset({_DELIVERED, _NOT_DELIVERED})
_SUCCESS: Final = frozenset({_SENT, _DELIVERED})
_STATUSES: Final = (corr.PART_PENDING, corr.PART_SUBMITTING, corr.PART_ACCEPTED,
                    corr.PART_DELIVERED, corr.PART_FAILED, corr.PART_REJECTED)
_PART_FINAL: Final = frozenset(s for s in _STATUSES if corr.part_is_final(s))
_RECEIPT_STATUS: Final[dict[str, str]] = {
    s.value: corr.receipt_part_status(s.value) for s in ReceiptState}
"""receipt_part_status() of the exact ReceiptState words (others go through the function)."""
_FOLD_ONE: Final[dict[str, str | None]] = {
    s: (None if (t := corr.fold([s])) is None else t.value) for s in _STATUSES}
"""fold() of a one-part message (the common case), by part status."""



@dataclass(slots=True)
class _Ctx:
    """Handles and per-batch scratch of one correlation op."""

    txn: Any
    store: Dbs
    now: float
    timeout_s: float | None
    id_bases: Mapping[str, tuple[corr.IdBase, corr.IdBase]] = field(default_factory=dict)
    out: Applied = field(default_factory=Applied)
    cache: dict[bytes, list[Any]] = field(default_factory=dict)
    dirty: set[bytes] = field(default_factory=set)
    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (account,
    # campaign, counter name): the campaigns db key is built once per batch, by flush
    orphans: bool | None = None  # may the orphans db hold entries? (None: not looked yet)
    db_state: Any = None
    db_carriers: Any = None
    db_orphans: Any = None
    db_contacts: Any = None
    db_outbox: Any = None
    db_inflight: Any = None
    db_timeouts: Any = None
    now_packed: bytes = b""  # the contacts value (last SENT time) of this batch
    # Rows put by :meth:`flush` in one putmulti per db (see _put_all); nothing in an op reads
    # contacts or inflight, and carriers are read through ``carriers`` (:meth:`carrier`).
    contacts: list[tuple[bytes, bytes]] = field(default_factory=list)
    inflight: list[tuple[bytes, bytes]] = field(default_factory=list)
    carriers: dict[bytes, bytes] = field(default_factory=dict)
    timeouts: dict[bytes, bytes] = field(default_factory=dict)  # see _move

    def __post_init__(self) -> None:
        dbs = self.store._dbs  # hot path: skip Store.db's error handling
        self.db_state, self.db_carriers, self.db_orphans = (
            dbs[b"state"], dbs[b"carriers"], dbs[b"orphans"])
        self.db_contacts, self.db_outbox, self.db_inflight, self.db_timeouts = (
            dbs[b"contacts"], dbs[b"outbox"], dbs[b"inflight"], dbs[b"timeouts"])
        self.now_packed = _pack(self.now)

    def load(self, key: bytes) -> list[Any] | None:
        """The state row of ``key`` (a msg_id), cached until the next :meth:`flush`."""
        row = self.cache.get(key)
        if row is None:
            raw = self.txn.get(key, None, self.db_state)  # positional: see _NO_OVERWRITE
            if raw is None:
                return None
            row = self.cache[key] = _unpackb(raw, raw=False)
        return row

    def carrier(self, key: bytes) -> bytes | None:
        """The ``carriers`` row of ``key``, as put so far in this op."""
        row = self.carriers.get(key)
        return self.txn.get(key, None, self.db_carriers) if row is None else row

    def flush(self) -> None:
        """Write the changed state rows, the rows put since the last flush and the campaign
        counts, then forget the rows read (the transaction has them now: a later load reads
        them back)."""
        txn, cache, pack = self.txn, self.cache, row_packer()
        _put_all(txn, self.db_state, [(key, pack(cache[key])) for key in sorted(self.dirty)])
        _put_all(txn, self.db_carriers, list(self.carriers.items()))
        _put_all(txn, self.db_contacts, self.contacts)
        _put_all(txn, self.db_inflight, self.inflight)
        _put_all(txn, self.db_timeouts, list(self.timeouts.items()))
        for (account, campaign, name), n in self.counts.items():
            _count(txn, self.store, f"{account}\x00{campaign}", name, n)
        cache.clear()
        self.dirty.clear()
        self.counts.clear()
        self.carriers.clear()
        self.contacts.clear()
        self.inflight.clear()
        self.timeouts.clear()

