"""The callback body: the JSON of status events and inbound pushes, RFC 3339 times, webhook ids.

Pure (no I/O, no clock): ``build_body`` writes one event as a JSON object and several (or the
batched mode) as an array, field by field, byte for byte what ``json.dumps`` of
:func:`event_payload` writes (:func:`build_body_slow`, the reference a property test compares
it with). ``SMS_RECEIVED`` entries carry the stored inbound message, which the caller's
``received`` reads. :func:`webhook_id` is the Standard Webhooks ``webhook-id``, stable across
retries. Part of ``gateway.callbacks`` (which re-exports these names); imports nothing of the
gateway.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Final

from actors.messages import MsgId, StatusEvent

EVENTS: Final = frozenset({"SMS_SENT", "SMS_NOT_SENT", "SMS_DELIVERED", "SMS_NOT_DELIVERED"})
RECEIVED: Final = "SMS_RECEIVED"
"""The event of an inbound (MO) message pushed to its account."""


def _rfc3339_slow(t: float) -> str:
    """The reference form (datetime): what :func:`_rfc3339` must equal for every ``t``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SECOND: list[Any] = [None, ""]  # [whole second, "YYYY-MM-DDTHH:MM:SS"] of the last call


def _rfc3339(t: float) -> str:
    """``2026-11-25T22:00:01.250Z``: as :func:`_rfc3339_slow`, with the date and time of the
    last whole second kept (a batch's events share it), so most calls only format the ms."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)  # datetime.fromtimestamp rounds to µs half-even, as round() does
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    if whole != _SECOND[0]:
        if not 0 <= whole < 253402300800:  # outside years 1970..9999: let datetime say
            return _rfc3339_slow(t)
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{us // 1000:03d}Z"


def event_payload(event: StatusEvent) -> dict[str, Any]:
    """The JSON object of one status event (Standard Webhooks ``type``/``timestamp``/``data``)."""
    return {
        "type": event.event,
        "timestamp": _rfc3339(event.at),
        "data": {
            "message_id": event.msg_id,
            "sequence": event.seq,
            "account": event.account,
            "carrier_id": event.carrier_id,
            "campaign": event.campaign,
            "parts": event.parts,
            "error_code": event.error_code,
            "reason": event.reason,
            "client_ref": event.client_ref,
            "occurred_at": event.at,
        },
    }


def inbound_event(msg_id: str, account: str, received_at: float, connector: str) -> StatusEvent:
    """The outbox entry of an inbound message's push. ``msg_id`` is the outbox's id for it
    (``gateway.callback_outbox.inbound_msg_id``); the body is read from the store at send."""
    return StatusEvent(MsgId(msg_id), account, RECEIVED, 1, received_at, carrier_id=connector)


Received = Callable[[StatusEvent], "dict[str, Any] | None"]
"""``SMS_RECEIVED`` event -> the ``data`` object of its body (the stored message), or None
when that message is no longer stored."""


class InboundGone(LookupError):
    """The inbound message an ``SMS_RECEIVED`` entry names is not stored (any more)."""


def received_payload(event: StatusEvent, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of an inbound message's push (``data`` as ``received`` gives it)."""
    return {"type": RECEIVED, "timestamp": _rfc3339(event.at), "data": data}


def _received_json(e: StatusEvent, received: Received | None) -> str:
    data = received(e) if received is not None else None
    if data is None:
        raise InboundGone(e.msg_id)
    return json.dumps(received_payload(e, data), separators=(",", ":"), ensure_ascii=False)


def build_body_slow(events: Sequence[StatusEvent], *, batched: bool | None = None) -> bytes:
    """The reference form (``json.dumps`` of :func:`event_payload`); :func:`build_body` equals it."""
    as_array = len(events) != 1 if batched is None else batched
    payload: Any = [event_payload(e) for e in events] if as_array else event_payload(events[0])
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


_str = encode_basestring  # the C string escaper json.dumps(ensure_ascii=False) uses


def _event_json(e: StatusEvent) -> str:
    """One event's object, byte for byte what ``json.dumps(event_payload(e), separators=(",",
    ":"), ensure_ascii=False)`` writes, without building the dicts (a third of the cost)."""
    if type(e.seq) is not int or type(e.parts) is not int or not (
            type(e.at) is int or (type(e.at) is float and math.isfinite(e.at))):
        return _event_json_slow(e)  # bools, NaN and the like: json's own spelling
    try:
        return _fast_event_json(e)
    except TypeError:  # a field that is not a str
        return _event_json_slow(e)


def _event_json_slow(e: StatusEvent) -> str:
    return json.dumps(event_payload(e), separators=(",", ":"), ensure_ascii=False)


def _fast_event_json(e: StatusEvent) -> str:
    return (f'{{"type":{_str(e.event)},"timestamp":"{_rfc3339(e.at)}","data":{{"message_id":'
            f'{_str(e.msg_id)},"sequence":{e.seq!r},"account":{_str(e.account)},"carrier_id":'
            f'{_str(e.carrier_id)},"campaign":{_str(e.campaign)},"parts":{e.parts!r},'
            f'"error_code":{_str(e.error_code)},"reason":{_str(e.reason)},"client_ref":'
            f'{_str(e.client_ref)},"occurred_at":{e.at!r}}}}}')


def build_body(events: Sequence[StatusEvent], *, batched: bool | None = None,
               received: Received | None = None) -> bytes:
    """One event as an object, several (or ``batched=True``) as an array. Compact UTF-8 JSON.

    Status events are written field by field (equal to :func:`build_body_slow`, which a
    property test checks); ``SMS_RECEIVED`` ones carry what ``received`` reads.

    Raises:
        InboundGone: an ``SMS_RECEIVED`` event whose message ``received`` does not find.
    """
    as_array = len(events) != 1 if batched is None else batched

    def one(e: StatusEvent) -> str:
        return _received_json(e, received) if e.event == RECEIVED else _event_json(e)

    if not as_array:
        return one(events[0]).encode()
    return ("[" + ",".join(map(one, events)) + "]").encode()


def webhook_id(events: Sequence[StatusEvent]) -> str:
    """Stable across retries: ``msg_<msg_id>_<seq>`` for one event, a digest for a batch."""
    if len(events) == 1:
        return f"msg_{events[0].msg_id}_{events[0].seq}"
    digest = hashlib.sha256("\n".join([f"{e.msg_id}:{e.seq}" for e in events]).encode())
    return "batch_" + digest.hexdigest()[:32]
