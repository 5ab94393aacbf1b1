"""Delivery receipts carried by deliver_sm, parsed into ``CarrierReceipt`` (pure, no I/O).

A receipt is a deliver_sm with esm_class bits 5-2 = 0001 (SMPP 3.4 §5.2.12). Its facts come
from two places that SMSCs fill unevenly: the TLVs receipted_message_id (§5.3.2.12),
message_state (§5.3.2.35) and network_error_code (§5.3.2.31), and the conventional text of
appendix B, ``id:… sub:… dlvrd:… submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:… err:…
text:…``. TLVs win when present. The carrier id is kept VERBATIM (hex, decimal, leading
zeros and case as the SMSC wrote them): the receipt correlator normalises ids, not us.
"""

from __future__ import annotations

import calendar
import re
from typing import Final

from actors.messages import CarrierReceipt, ReceiptState
from adapters.smpp import pdu as p

STATE_BY_NUMBER: Final[dict[int, str]] = {  # message_state, §5.2.28
    1: ReceiptState.ENROUTE,
    2: ReceiptState.DELIVRD,
    3: ReceiptState.EXPIRED,
    4: ReceiptState.DELETED,
    5: ReceiptState.UNDELIV,
    6: ReceiptState.ACCEPTD,
    7: ReceiptState.UNKNOWN,
    8: ReceiptState.REJECTD,
}
_STATE_ALIASES: Final[dict[str, str]] = {
    **{s.value: s.value for s in ReceiptState},
    "DELIVERED": ReceiptState.DELIVRD,
    "UNDELIVERABLE": ReceiptState.UNDELIV,
    "UNDELIVERED": ReceiptState.UNDELIV,
    "ACCEPTED": ReceiptState.ACCEPTD,
    "REJECTED": ReceiptState.REJECTD,
    "DELETE": ReceiptState.DELETED,
    "ENROUTE": ReceiptState.ENROUTE,
    "FAILED": ReceiptState.UNDELIV,
}
_FIELD: Final = re.compile(rb"(?i)\b(id|sub|dlvrd|submit date|done date|stat|err)\s*:\s*(\S*)")
_TEXT: Final = re.compile(rb"(?i)\btext\s*:")
_DATES: dict[str, float] = {}


def receipt_state(value: str) -> str:
    """A ``ReceiptState`` value for a ``stat:`` word, tolerating the long spellings."""
    return _STATE_ALIASES.get(value.strip().upper(), ReceiptState.UNKNOWN)


def parse_text(text: bytes) -> dict[str, str]:
    """The ``key:value`` fields of a receipt text, keys lower-cased; ``text:`` is ignored."""
    cut = text.find(b"text:")
    if cut < 0:
        found = _TEXT.search(text)
        cut = found.start() if found is not None else len(text)
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in _FIELD.findall(text, 0, cut)}


def smpp_date(value: str) -> float:
    """Unix time of ``YYMMDDhhmm[ss]`` read as UTC; 0.0 when it is not such a date."""
    known = _DATES.get(value)
    if known is not None:
        return known
    result = _smpp_date(value)
    if len(_DATES) > 4096:  # receipts of one period share few dates: a small cache pays
        _DATES.clear()
    _DATES[value] = result
    return result


def _smpp_date(value: str) -> float:
    if not value.isdigit() or len(value) not in (10, 12):
        return 0.0
    try:
        parts = [int(value[i : i + 2]) for i in range(0, len(value), 2)]
        year, month, day, hour, minute = parts[:5]
        second = parts[5] if len(parts) == 6 else 0
        return float(calendar.timegm((2000 + year, month, day, hour, minute, second)))
    except (ValueError, OverflowError):
        return 0.0


_STATE_NAME: Final[dict[int, str]] = {n: str(s) for n, s in STATE_BY_NUMBER.items()}
_UNKNOWN: Final = str(ReceiptState.UNKNOWN)


def state_name(number: int) -> str:
    """The ``ReceiptState`` value of a message_state TLV (§5.2.28); UNKNOWN when out of range."""
    return _STATE_NAME.get(number, _UNKNOWN)


def done_and_error(text: bytes | bytearray, start: int, network_error: int | None
                   ) -> tuple[str, str]:
    """(done date word, error) of a receipt whose TLVs carry id and state (the fast path).

    ``start``: where ``done date:`` is in ``text``; ``network_error``: the last two octets
    of the network_error_code TLV as a number, None without it (then ``err:`` of the text).
    An error of zeros (or none) is "".
    """
    start += 10
    stop = text.find(b" ", start)
    done = text[start : stop if stop >= 0 else len(text)].decode("latin-1")
    if network_error is not None:
        error = f"{network_error:03d}"
    else:
        start = text.find(b" err:")
        if start < 0:
            error = ""
        else:
            start += 5
            stop = text.find(b" ", start)
            error = text[start : stop if stop >= 0 else len(text)].decode("latin-1")
    if error.strip("0") == "":
        error = ""
    return done, error


def parse_receipt(pdu: p.DeliverSm, *, connector: str, received_at: float) -> CarrierReceipt | None:
    """The receipt carried by ``pdu``, or None when it is not a receipt or names no id."""
    if (pdu.esm_class & 0x3C) != p.ESM_DELIVERY_RECEIPT:  # DeliverSm.is_receipt, inlined
        return None
    text = pdu.short_message or pdu.message_payload or b""
    carrier_id = pdu.receipted_message_id
    state_number = pdu.message_state
    start = text.find(b"done date:")
    if carrier_id and state_number is not None and start >= 0:
        # Fast path (most SMSCs): the TLVs carry id and state, the text only the done date
        # and the error (each word up to the next space).
        nec = pdu.network_error_code
        done, error = done_and_error(text, start,
                                     None if nec is None else int.from_bytes(nec[1:], "big"))
        return CarrierReceipt(connector, carrier_id, _STATE_NAME.get(state_number, _UNKNOWN),
                              error, received_at, smpp_date(done))
    fields = parse_text(text)
    carrier_id = carrier_id or fields.get("id", "")
    if not carrier_id:
        return None
    if state_number is not None:
        state = _STATE_NAME.get(state_number, _UNKNOWN)
    else:
        state = receipt_state(fields.get("stat", ""))
    if pdu.network_error_code is not None:
        error = f"{int.from_bytes(pdu.network_error_code[1:], 'big'):03d}"
    else:
        error = fields.get("err", "")
    if error.strip("0") == "":
        error = ""
    return CarrierReceipt(connector, carrier_id, str(state), error, received_at,
                          smpp_date(fields.get("done date", "")))
