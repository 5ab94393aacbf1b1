"""Pure correlation helpers: carrier-id keys and folding part statuses into a message status.

Carrier ids
-----------
Carriers disagree with themselves: the submit_sm_resp may say ``0x04000000086ECD50`` or
``86ecd50`` while the receipt says ``288230376293190992`` (SMPP 3.4 §5.2.23 leaves the
format to the SMSC; many SMSCs answer hex and report decimal, or the other way round, with
or without leading zeros). The store indexes a submitted id under ONE key
(:func:`index_key`) and a receipt id is looked up under a short list of candidate keys
(:func:`lookup_keys`), most likely first:

* ``0x…`` or hex digits with a letter: the hex value;
* decimal digits: the decimal value, then the same digits read as hex, then the decimal
  value written in hex if that string has no letters (an SMSC that answered digit-only hex
  ``08047312`` and reports decimal ``134509330``);
* anything else is kept verbatim, byte for byte (never case-folded or trimmed inside), so
  non-numeric ids are not corrupted.

Numbers become ``#<decimal>`` and other ids ``=<verbatim>``: the two forms cannot collide.
The first candidate that exists in the index wins. Guessing is ambiguous for digit-only ids
(``10`` may be ten or sixteen), so a connector can be configured with its id type
(``ID_TYPES``, Kannel's ``msg-id-type``): then each id has exactly one reading and one key.

Part folding
------------
A message's parts each have a status letter (``PART_*``); :func:`fold` maps them onto the
message state of DESIGN.md §3: DELIVERED when every part is, NOT_DELIVERED when any part
finally fails after one was accepted, NOT_SENT when no part was accepted and all failed,
SENT while any part is accepted and none failed.

Pure: no I/O, no clock, no trio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from actors.messages import ReceiptState, State

__all__ = [
    "ID_TYPES",
    "PART_ACCEPTED",
    "PART_DELIVERED",
    "PART_FAILED",
    "PART_PENDING",
    "PART_REJECTED",
    "PART_SUBMITTING",
    "PartRecord",
    "StateRecord",
    "fold",
    "index_key",
    "lookup_keys",
    "primary_key",
    "receipt_part_status",
]

_HEX_PREFIXED: Final = re.compile(r"0[xX][0-9a-fA-F]+\Z")
_HEX: Final = re.compile(r"[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\Z")
_DEC: Final = re.compile(r"[0-9]+\Z")
_HEX_DIGITS: Final = re.compile(r"[0-9a-fA-F]+\Z")
MAX_ID: Final = 400  # LMDB keys are at most 511 bytes; connector and prefix need the rest
MAX_NUMERIC: Final = 64  # longer ids stay verbatim, never read as numbers: int() of a huge
# digit string is slow and refused past 4,300 digits, and its key could pass LMDB's limit


def _num(value: int) -> bytes:
    return b"#%d" % value


def _verbatim(carrier_id: str) -> bytes:
    return b"=" + carrier_id.encode("utf-8", "surrogatepass")[:MAX_ID]


IdBase = int | None
"""How a connector writes its ids: 16 (hex), 10 (decimal) or None (guess per id)."""

ID_TYPES: Final[dict[str, tuple[IdBase, IdBase]]] = {
    # name: (base of submit_sm_resp ids, base of receipt ids); Kannel calls it msg-id-type
    "auto": (None, None),
    "decimal": (10, 10),
    "hex": (16, 16),
    "hex-submit": (16, 10),  # hex in the submit response, decimal in receipts (common)
    "hex-receipt": (10, 16),
}


def _in_base(s: str, base: int) -> bytes | None:
    digits = s[2:] if base == 16 and s[:2] in ("0x", "0X") else s
    if (_DEC if base == 10 else _HEX_DIGITS).match(digits):
        return _num(int(digits, base))
    return None


def index_key(carrier_id: str, base: IdBase = None) -> bytes:
    """The one key a submitted carrier id is indexed under.

    Args:
        base: the connector's submit id base when configured (``ID_TYPES``); None guesses.
    """
    s = carrier_id.strip()
    if len(s) > MAX_NUMERIC:
        return _verbatim(s)
    if base is not None:
        return _in_base(s, base) or _verbatim(s)
    if s.isascii() and s.isdigit():  # == _DEC.match(s), the common case, without regexes
        return _num(int(s, 10))
    if _HEX_PREFIXED.match(s):
        return _num(int(s, 16))  # int() reads the 0x prefix itself in base 16
    if _HEX.match(s):
        return _num(int(s, 16))
    return _verbatim(s)


def lookup_keys(carrier_id: str, base: IdBase = None) -> list[bytes]:
    """Candidate index keys for a receipt's carrier id, most likely first (no duplicates).

    Args:
        base: the connector's receipt id base when configured; then there is one candidate.
    """
    s = carrier_id.strip()
    if len(s) > MAX_NUMERIC:
        return [_verbatim(s)]
    if base is not None:
        return [_in_base(s, base) or _verbatim(s)]
    if not (s.isascii() and s.isdigit()):  # digits only never match the two hex patterns
        if _HEX_PREFIXED.match(s):
            return [_num(int(s, 16))]
        if _HEX.match(s):
            return [_num(int(s, 16))]
        return [_verbatim(s)]
    value = int(s, 10)
    keys = [_num(value), _num(int(s, 16))]
    as_hex = format(value, "x")
    if _DEC.match(as_hex):
        keys.append(_num(int(as_hex, 10)))
    return list(dict.fromkeys(keys))


def primary_key(carrier_id: str, base: IdBase = None) -> bytes:
    """``lookup_keys(carrier_id, base)[0]`` without working out the other readings (a receipt
    almost always matches its first candidate; the list costs ~3 µs for a decimal id)."""
    s = carrier_id.strip()
    if base is None and len(s) <= MAX_NUMERIC and s.isascii() and s.isdigit():
        return _num(int(s, 10))  # what lookup_keys puts first for a decimal id
    return lookup_keys(carrier_id, base)[0]


# ------------------------------------------------------------------------------ part folding

PART_PENDING: Final = "P"  # not yet handed to a carrier (or re-queued)
PART_SUBMITTING: Final = "S"  # handed to a carrier, no answer yet (in doubt after a crash)
PART_ACCEPTED: Final = "A"  # carrier accepted it (has a carrier id), no final receipt yet
PART_DELIVERED: Final = "D"  # final receipt DELIVRD
PART_FAILED: Final = "F"  # final receipt other than DELIVRD (or receipt timeout)
PART_REJECTED: Final = "R"  # the carrier refused it, or retries ran out: never accepted

_RECEIPT_TO_PART: Final[dict[str, str]] = {
    ReceiptState.DELIVRD: PART_DELIVERED,
    ReceiptState.EXPIRED: PART_FAILED,
    ReceiptState.DELETED: PART_FAILED,
    ReceiptState.UNDELIV: PART_FAILED,
    ReceiptState.REJECTD: PART_FAILED,
    ReceiptState.UNKNOWN: PART_FAILED,
    ReceiptState.ENROUTE: PART_ACCEPTED,
    ReceiptState.ACCEPTD: PART_ACCEPTED,
}
_PART_FINAL: Final = frozenset({PART_DELIVERED, PART_FAILED, PART_REJECTED})


def receipt_part_status(state: str) -> str:
    """Part status a receipt ``stat`` leads to (unknown words count as a final failure)."""
    return _RECEIPT_TO_PART.get(state.strip().upper(), PART_FAILED)


def part_is_final(status: str) -> bool:
    """True for delivered, failed and rejected parts."""
    return status in _PART_FINAL


def fold(statuses: list[str]) -> State | None:
    """The message state the part statuses imply, or None while nothing is decided.

    Once a carrier accepted any part: NOT_DELIVERED as soon as any part finally fails or was
    refused, DELIVERED when every part is delivered, otherwise SENT. While no part was
    accepted: NOT_SENT once every part was refused, otherwise undecided.
    """
    if PART_ACCEPTED in statuses or PART_DELIVERED in statuses or PART_FAILED in statuses:
        if PART_FAILED in statuses or PART_REJECTED in statuses:
            return State.NOT_DELIVERED
        if all(s == PART_DELIVERED for s in statuses):
            return State.DELIVERED
        return State.SENT
    if statuses and all(s == PART_REJECTED for s in statuses):
        return State.NOT_SENT
    return None


# ----------------------------------------------------------------------------- state record


@dataclass(slots=True)
class PartRecord:
    """Stored status of one part."""

    status: str = PART_PENDING
    connector: str = ""
    carrier_id: str = ""
    code: str = ""
    at: float = 0.0

    def to_row(self) -> list[Any]:
        return [self.status, self.connector, self.carrier_id, self.code, self.at]


@dataclass(slots=True)
class StateRecord:
    """The mutable record of one message (db ``state``; the Message itself is immutable).

    ``seq`` is the number of status events emitted so far and ``events`` those events, as
    ``[event, at, code, reason, carrier_id]`` rows (the n-th has seq n); ``due`` the outbox key
    time (ms) while the message is in the outbox; ``attempts`` the submission rounds so far.
    ``account`` ... ``callback_url`` copy the Message fields every status event carries, so
    correlating never reads the Message record.
    """

    state: str
    seq: int = 0
    parts: list[PartRecord] = field(default_factory=list)
    code: str = ""
    reason: str = ""
    at: float = 0.0
    due: int = 0
    attempts: int = 0
    timeout: int = 0
    events: list[list[Any]] = field(default_factory=list)
    account: str = ""
    to: str = ""
    campaign: str = ""
    client_ref: str = ""
    callback_url: str = ""

    def pack(self) -> bytes:
        data: bytes = msgpack.packb(
            [self.state, self.seq, [p.to_row() for p in self.parts], self.code, self.reason,
             self.at, self.due, self.attempts, self.timeout, self.events, self.account, self.to,
             self.campaign, self.client_ref, self.callback_url],
            use_bin_type=True,
        )
        return data

    @classmethod
    def unpack(cls, data: bytes) -> StateRecord:
        row = msgpack.unpackb(data, raw=False)
        return cls(row[0], row[1], [PartRecord(*p) for p in row[2]], *row[3:])

    def statuses(self) -> list[str]:
        return [p.status for p in self.parts]
