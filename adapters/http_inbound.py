"""Inbound (mobile-originated) messages an HTTP provider sends to ``/v1/inbound/{name}``.

Many HTTP SMS providers post the messages handsets send to our numbers to a webhook. The
gateway mounts the route (``gateway.api.inbound``) and this module reads the body with the
provider's ``HttpProviderConfig`` paths, in the style of its receipt paths: dotted paths into
each record (integers index lists), ``inbound_from_path`` (the handset), ``inbound_to_path``
(our number, which routes the message to an account), ``inbound_text_path``, and optionally
``inbound_id_path`` (the provider's message id, which lets the store drop a message the
provider posts again) and ``inbound_time_path`` (when the provider received it). A JSON body
is one message object or a list of them (at ``inbound_list_path`` when set); a form body is
one message. A provider that sends a GET with query parameters (``GET /v1/inbound/{name}``)
has its query string read as a form body (the route passes it with :data:`FORM`).

Each message is one ``InboundPart`` with ``encoding="utf-8"``: the text reached us as Unicode
over HTTP and the over-the-air coding (GSM 7-bit or UCS-2) is not known, so naming one would
be a guess. Numbers are kept as the provider wrote them (with or without "+"; routing compares
digits only). Most providers join concatenated messages before calling the webhook and their
messages have ``concat=None``. One that does not (Vonage posts each part with ``concat-ref``,
``concat-total``, ``concat-part``) is read with ``inbound_concat_ref_path``,
``inbound_concat_total_path`` and ``inbound_concat_part_path`` (all three or none): a record
with them becomes a part, ``codec.Concat(reference, total, sequence, ref_bits=HTTP_REF_BITS)``,
which the inbound store keeps and joins with the other parts of its group exactly as it joins
SMPP parts (``gateway._inbound_store``). The provider's reference may be any string, so
``reference`` is a STABLE 64-bit hash of it (BLAKE2b, 8 bytes, of its UTF-8; never Python's
``hash``, which changes per process) and ``ref_bits`` is 64, a width no UDH or SAR reference
has (8 or 16): the store keys such a group on all 64 bits (beside the connector and the
sender), so two references of one sender collide with odds of 2**-64, and SMPP groups keep
their own keys. ``total`` and ``part`` are integers 1..255 (a UDH's limits) with
``part <= total``; a record without the three fields, or with ``total == 1``, is a whole
message.

Pure, no I/O, no clock (the caller passes ``received_at``). Errors never quote a value: a
value may be a phone number or a message text.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl

from adapters.errors import InvalidInbound
from adapters.http_provider import HttpProviderConfig, json_path
from adapters.smpp.inbound import InboundPart
from codec.udh import Concat

ENCODING: Final = "utf-8"
"""The ``encoding`` of an HTTP provider's message: Unicode text, over-the-air coding unknown."""
FORM: Final = "application/x-www-form-urlencoded"
"""The content type a query string is read as (a GET webhook's message)."""
HTTP_REF_BITS: Final = 64
"""``Concat.ref_bits`` of an HTTP provider's part: its reference is a 64-bit hash."""
MAX_PARTS: Final = 255  # a concatenated message's parts at most (one octet in a UDH)
MAX_NUMBER: Final = 32  # characters of a from/to value (E.164 is 15 digits; short codes fewer)
MAX_PROVIDER_ID: Final = 256  # UTF-8 bytes of a provider id (part of an LMDB key, max 511)
_LATEST: Final = 4102444800.0  # 2100-01-01: a later time is a unit or format mistake
_MILLIS: Final = 1e11  # a number above this is milliseconds (1e11 s is the year 5138)


class HttpInbound(NamedTuple):
    """One message a provider posted.

    Attributes:
        part: the message, as the SMPP connectors hand theirs to the inbound sink.
        provider_id: the provider's id for it; "" when ``inbound_id_path`` is not set or the
            record has none (then a message posted again is stored again).
    """

    part: InboundPart
    provider_id: str


def parse_inbound(config: HttpProviderConfig, body: bytes, content_type: str, *,
                  received_at: float) -> list[HttpInbound]:
    """The messages in a provider's inbound webhook body (pure).

    Args:
        config: the provider's configuration (its ``inbound_*`` paths).
        body: the request body.
        content_type: the request's Content-Type (JSON, ``+json``, or a form).
        received_at: wall-clock time (Unix seconds) the request reached us; a message's time
            when ``inbound_time_path`` is not set.

    Returns:
        The messages in body order (an empty list for an empty JSON list).

    Raises:
        InvalidInbound: the body does not parse, or a record lacks a field or has a bad one;
            ``field`` names it (``from``, ``messages[2].text``).
    """
    records, where = _records(config, body, content_type)
    return [_message(config, record, where(i), received_at) for i, record in enumerate(records)]


def _records(config: HttpProviderConfig, body: bytes, content_type: str
             ) -> tuple[list[Any], Any]:
    """The records of the body, and ``index -> field prefix`` for naming faults."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == FORM:
        try:
            text = body.decode("utf-8")
            form = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
        except (UnicodeDecodeError, ValueError):
            raise InvalidInbound("body", "a form body that does not parse") from None
        return [form], lambda _: ""
    if kind != "application/json" and not kind.endswith("+json"):
        raise InvalidInbound("header:Content-Type", "must be application/json or "
                                                    "application/x-www-form-urlencoded")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInbound("body", "JSON that does not parse") from None
    list_path = config.inbound_list_path
    if list_path:
        document = json_path(document, list_path)
        if document is None:
            raise InvalidInbound(list_path, "missing (inbound_list_path)")
    if isinstance(document, list):
        name = list_path or "body"
        return document, lambda i: f"{name}[{i}]."
    return [document], lambda _: f"{list_path}." if list_path else ""


def _message(config: HttpProviderConfig, record: Any, prefix: str,
             received_at: float) -> HttpInbound:
    if not isinstance(record, Mapping):
        raise InvalidInbound(prefix.rstrip(".") or "body", "must be an object")
    source = _number(record, config.inbound_from_path, prefix)
    destination = _number(record, config.inbound_to_path, prefix)
    text = _field(record, config.inbound_text_path, prefix)
    if not isinstance(text, str):
        raise InvalidInbound(prefix + config.inbound_text_path, "must be a string")
    at = received_at
    if config.inbound_time_path:
        at = _time(_field(record, config.inbound_time_path, prefix),
                   prefix + config.inbound_time_path)
    provider_id = ""
    if config.inbound_id_path:
        provider_id = _provider_id(json_path(record, config.inbound_id_path),
                                   prefix + config.inbound_id_path)
    concat = _concat(config, record, prefix)
    part = InboundPart(config.name, source, destination, text, at, ENCODING, concat)
    return HttpInbound(part, provider_id)


def _concat(config: HttpProviderConfig, record: Mapping[str, Any], prefix: str
            ) -> Concat | None:
    """The part's concatenation; None for a whole message (no fields, or one part of one)."""
    paths = (config.inbound_concat_ref_path, config.inbound_concat_total_path,
             config.inbound_concat_part_path)
    if not all(paths):  # gateway.config requires all three or none
        return None
    values = [json_path(record, path) for path in paths]
    present = [v is not None and v != "" for v in values]
    if not any(present):
        return None
    if not all(present):
        raise InvalidInbound(prefix + paths[present.index(False)], "missing (the other "
                                                                    "concatenation fields are set)")
    ref = _scalar(values[0])
    if not ref or len(ref.encode("utf-8", "surrogatepass")) > MAX_PROVIDER_ID:
        raise InvalidInbound(prefix + paths[0], "must be a string or an integer "
                                                f"(1 to {MAX_PROVIDER_ID} bytes)")
    total = _count(values[1], prefix + paths[1])
    sequence = _count(values[2], prefix + paths[2])
    if sequence > total:
        raise InvalidInbound(prefix + paths[2], f"must not exceed {paths[1]}")
    if total == 1:
        return None
    digest = hashlib.blake2b(ref.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return Concat(int.from_bytes(digest, "big"), total, sequence, HTTP_REF_BITS)


def _count(value: Any, where: str) -> int:
    """A part count or number: an integer 1..MAX_PARTS, as a number or its digits."""
    text = _scalar(value)
    if (text is None or not (text.isascii() and text.isdigit() and len(text) <= 3)
            or not 1 <= int(text) <= MAX_PARTS):
        raise InvalidInbound(where, f"must be an integer from 1 to {MAX_PARTS}")
    return int(text)


def _field(record: Mapping[str, Any], path: str, prefix: str) -> Any:
    value = json_path(record, path)
    if value is None:
        raise InvalidInbound(prefix + path, "missing")
    return value


def _scalar(value: Any) -> str | None:
    """A string, or an integer as its digits (providers send numbers both ways); else None."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(record: Mapping[str, Any], path: str, prefix: str) -> str:
    value = _scalar(_field(record, path, prefix))
    if value is None:
        raise InvalidInbound(prefix + path, "must be a string or an integer")
    if not 1 <= len(value) <= MAX_NUMBER or not value.isprintable():
        raise InvalidInbound(prefix + path, f"must be 1 to {MAX_NUMBER} printable characters")
    return value


def _provider_id(value: Any, where: str) -> str:
    """The provider's id; "" when absent (no duplicate detection for that message)."""
    if value is None or value == "":
        return ""
    text = _scalar(value)
    if text is None:
        raise InvalidInbound(where, "must be a string or an integer")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PROVIDER_ID:
        raise InvalidInbound(where, f"longer than {MAX_PROVIDER_ID} bytes")
    return text


def _time(value: Any, where: str) -> float:
    """Unix seconds (milliseconds above 1e11), as a number or a string, or ISO 8601 (UTC when
    it names no offset)."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip())
            except ValueError:
                raise InvalidInbound(where, "not Unix seconds or an ISO 8601 time") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
    if seconds is None or not math.isfinite(seconds):
        raise InvalidInbound(where, "not Unix seconds or an ISO 8601 time")
    if seconds > _MILLIS:
        seconds /= 1000.0
    if not 0 < seconds < _LATEST:
        raise InvalidInbound(where, "outside 1970-2100")
    return seconds


__all__ = ["ENCODING", "FORM", "HTTP_REF_BITS", "MAX_PARTS", "HttpInbound", "parse_inbound"]
