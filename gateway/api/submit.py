"""From a submitted item (decoded JSON/msgpack) to a validated ``actors.messages.Message``.

Pure apart from the number cache: no I/O, time passed in. Each item's every field problem is
collected (a client fixes them in one go), with paths rooted at the request body
(``to``, or ``messages[3].to`` in a batch). Batch-level fields beside ``messages`` are
defaults for every item; an item's own fields win.

Must not import: gateway.http.server internals, trio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import codec
from actors.messages import Message, MsgId
from gateway.accounts import Account
from gateway.api.problems import FieldError
from gateway.config import POLICIES
from gateway.validation import Invalid, NumberNormaliser, check_sender, pick_phone, render

ITEM_FIELDS: Final = frozenset({
    "to", "from", "text", "campaign", "send_at", "not_after", "encoding", "max_parts",
    "callback_url", "client_ref", "fields", "default_country_prefix",
})
PREVIEW_FIELDS: Final = frozenset({"text", "encoding", "max_parts", "fields"})
MAX_TEXT_CHARS: Final = 255 * 153  # a cheap bound before codec.count does the real check
MAX_CAMPAIGN: Final = 64
MAX_CLIENT_REF: Final = 128
MAX_FIELDS: Final = 64
MAX_FIELD_VALUE: Final = 1024
MAX_SCHEDULE_AHEAD: Final = 366 * 86400.0
MAX_TIME: Final = 4102444800.0  # 2100-01-01


class ItemInvalid(Exception):
    """An item with field problems."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(errors[0].reason)
        self.errors = errors


@dataclass(slots=True)
class Built:
    """A valid item: the message to accept and what codec.count found (not frozen: a frozen
    dataclass's __init__ costs ~1 µs more, once per message)."""

    message: Message
    count: codec.Count


@dataclass(slots=True)
class Context:
    """What building a message needs besides the item."""

    account: Account
    numbers: NumberNormaliser
    now: float
    new_id: Callable[[], MsgId]
    callbacks: Mapping[str, str | Invalid]  # callback_url → normalised URL or why refused


_POLICIES: dict[tuple[str, int], codec.Policy] = {}


def policy(mode: str, max_parts: int) -> codec.Policy:
    """A cached codec.Policy (they are immutable)."""
    key = (mode, max_parts)
    p = _POLICIES.get(key)
    if p is None:
        p = _POLICIES[key] = codec.Policy(mode=mode, max_parts=max_parts)
    return p


def build(item: Any, path: str, ctx: Context) -> Built:
    """Validate one item and make its Message.

    The common item (to, from, text and at most campaign/client_ref, all valid) takes a short
    path; anything else, and every item with a problem, takes the thorough one, which names
    every field problem at once.

    Raises:
        ItemInvalid: listing every field problem.
    """
    if type(item) is dict and item.keys() <= _FAST_KEYS:
        built = _fast(item, ctx)
        if built is not None:
            return built
    return _thorough(item, path, ctx)


_FAST_KEYS: Final = frozenset({"to", "from", "text", "campaign", "client_ref"})


def _fast(item: dict[str, Any], ctx: Context) -> Built | None:
    """The common valid item, or None to let :func:`_thorough` judge it."""
    get = item.get
    to, sender, text = get("to"), get("from"), get("text")
    campaign, client_ref = get("campaign", ""), get("client_ref", "")
    if not (type(to) is str and type(sender) is str and type(text) is str
            and type(campaign) is str and type(client_ref) is str
            and sender in _GOOD_SENDERS and len(to) <= 32 and 0 < len(text) <= MAX_TEXT_CHARS
            and len(campaign) <= MAX_CAMPAIGN and len(client_ref) <= MAX_CLIENT_REF
            and (not campaign or campaign.isprintable())
            and (not client_ref or client_ref.isprintable())):
        return None
    acct = ctx.account
    try:
        number = ctx.numbers.normalise(to, acct.default_prefix)
        count = codec.count(text, policy(acct.policy, acct.max_parts))
    except (Invalid, codec.CodecError):
        return None
    if not text.strip():
        return None
    return Built(_new(Message, (ctx.new_id(), acct.name, number, sender, text, acct.policy,
                                ctx.now, campaign or default_campaign(ctx.now), client_ref, "",
                                0.0, 0.0, acct.max_parts, count.parts, count.encoding)), count)


# Message(...) goes through the NamedTuple's Python-level __new__ (~0.2 µs a message more than
# building the tuple directly); the fields are given in order, all of them (checked here once).
_new: Final = tuple.__new__
if Message._fields != ("msg_id", "account", "to", "sender", "text", "policy", "accepted_at",
                       "campaign", "client_ref", "callback_url", "send_at", "not_after",
                       "max_parts", "parts", "encoding"):  # pragma: no cover
    raise ImportError("actors.messages.Message changed: update _fast's Message fields")


def _thorough(item: Any, path: str, ctx: Context) -> Built:
    at = f"{path}." if path else ""
    if type(item) is not dict:
        raise ItemInvalid([FieldError(path or "body", "must be an object")])
    errors: list[FieldError] = []
    if not item.keys() <= ITEM_FIELDS:
        errors += [FieldError(f"{at}{k}", "unknown field") for k in item if k not in ITEM_FIELDS]
    acct = ctx.account
    get = item.get

    fields = _fields(get("fields"), f"{at}fields", errors) if "fields" in item else _NO_FIELDS
    prefix = acct.default_prefix
    if "default_country_prefix" in item:
        given = _str(item, "default_country_prefix", at, errors, required=False, limit=4)
        if given is not None and not (given.lstrip("+").isascii() and given.lstrip("+").isdigit()):
            errors.append(FieldError(f"{at}default_country_prefix",
                                     "must be a calling code like 351"))
        elif given is not None:
            prefix = given
    to = _recipient(item, fields, at, ctx, prefix, errors)
    sender = get("from")
    if type(sender) is str and sender in _GOOD_SENDERS:
        pass
    else:
        sender = _sender(item, at, errors)
    mode = acct.policy
    if "encoding" in item:
        mode = _str(item, "encoding", at, errors, required=False, limit=32) or acct.policy
        if mode not in POLICIES:
            errors.append(FieldError(f"{at}encoding", f"must be one of {', '.join(POLICIES)}"))
    max_parts = _int(item, "max_parts", at, errors, 1, 255, acct.max_parts)
    campaign = client_ref = callback = ""
    send_at = not_after = None
    if not item.keys() <= _BASIC:  # anything beyond the common fields
        campaign = _str(item, "campaign", at, errors, required=False, limit=MAX_CAMPAIGN) or ""
        client_ref = _str(item, "client_ref", at, errors, required=False,
                          limit=MAX_CLIENT_REF) or ""
        send_at = _time(item, "send_at", at, errors)
        not_after = _time(item, "not_after", at, errors)
        _check_window(send_at, not_after, ctx.now, at, errors)
        callback = _callback(item, at, ctx, errors)
    count, text = _text(item, fields, at, mode, max_parts, errors)
    if errors:
        raise ItemInvalid(errors)
    assert to is not None and sender is not None and count is not None and text is not None
    message = Message(
        ctx.new_id(), acct.name, to, sender, text, mode, ctx.now,
        campaign or default_campaign(ctx.now), client_ref,
        callback, send_at or 0.0, not_after or 0.0, max_parts, count.parts, count.encoding,
    )
    return Built(message, count)


_MONTHS: dict[int, str] = {}


def default_campaign(now: float) -> str:
    """The campaign of a message submitted without one: ``API_SMS_YYYY_MM`` (UTC month of
    acceptance), so that CRMs find API traffic grouped per account (history is per account)
    and month (issue 8)."""
    month = int(now // 86400)  # cache per day: one strftime a day
    name = _MONTHS.get(month)
    if name is None:
        _MONTHS.clear()
        name = _MONTHS[month] = datetime.fromtimestamp(now, UTC).strftime("API_SMS_%Y_%m")
    return name


_NO_FIELDS: Final[dict[str, Any]] = {}
_BASIC: Final = frozenset({"to", "from", "text", "encoding", "max_parts", "default_country_prefix"})
_GOOD_SENDERS: set[str] = set()  # senders already found valid (bounded below)


def _sender(item: dict[str, Any], at: str, errors: list[FieldError]) -> str | None:
    sender = _str(item, "from", at, errors, required=True, limit=64)
    if sender is None:
        return None
    try:
        check_sender(sender)
    except Invalid as exc:
        errors.append(FieldError(f"{at}from", exc.reason))
        return None
    if len(_GOOD_SENDERS) < 10_000:
        _GOOD_SENDERS.add(sender)
    return sender


def preview(item: Any, account: Account) -> codec.Count:
    """What ``POST /v1/preview`` reports for ``item`` (text, encoding, max_parts, fields)."""
    if not isinstance(item, dict):
        raise ItemInvalid([FieldError("body", "must be an object")])
    errors = [FieldError(k, "unknown field") for k in item if k not in PREVIEW_FIELDS]
    fields = _fields(item.get("fields"), "fields", errors)
    mode = _str(item, "encoding", "", errors, required=False, limit=32) or account.policy
    if mode not in POLICIES:
        errors.append(FieldError("encoding", f"must be one of {', '.join(POLICIES)}"))
    max_parts = _int(item, "max_parts", "", errors, 1, 255, account.max_parts)
    count, _ = _text(item, fields, "", mode, max_parts, errors)
    if errors:
        raise ItemInvalid(errors)
    assert count is not None
    return count


# ---------------------------------------------------------------------------------------------
# Field helpers: each appends to ``errors`` and returns None when the field is wrong.


def _str(item: dict[str, Any], name: str, at: str, errors: list[FieldError], *, required: bool,
         limit: int) -> str | None:
    value = item.get(name)
    if value is None:
        if required:
            errors.append(FieldError(f"{at}{name}", "is required"))
        return None
    if not isinstance(value, str):
        errors.append(FieldError(f"{at}{name}", f"must be a string, not {_kind(value)}"))
        return None
    if len(value) > limit:
        errors.append(FieldError(f"{at}{name}", f"must be at most {limit} characters"))
        return None
    if not value.isprintable() and name != "text":
        errors.append(FieldError(f"{at}{name}", "must not contain control characters"))
        return None
    return value


def _int(item: dict[str, Any], name: str, at: str, errors: list[FieldError], low: int, high: int,
         default: int) -> int:
    value = item.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(f"{at}{name}", f"must be an integer, not {_kind(value)}"))
        return default
    if not low <= value <= high:
        errors.append(FieldError(f"{at}{name}", f"must be between {low} and {high}"))
        return default
    return value


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array", dict: "an object", bytes: "binary"}.get(type(value), "null")


def _fields(value: Any, where: str, errors: list[FieldError]) -> dict[str, Any]:
    if value is None:
        return _NO_FIELDS
    if not isinstance(value, dict):
        errors.append(FieldError(where, f"must be an object, not {_kind(value)}"))
        return {}
    if len(value) > MAX_FIELDS:
        errors.append(FieldError(where, f"must have at most {MAX_FIELDS} entries"))
        return {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (str, int, float)) or (
                isinstance(v, float) and not math.isfinite(v)):
            errors.append(FieldError(f"{where}.{k}", "must be a string or a finite number"))
        elif isinstance(v, str) and len(v) > MAX_FIELD_VALUE:
            errors.append(FieldError(f"{where}.{k}", f"must be at most {MAX_FIELD_VALUE} characters"))
    return value


def _recipient(item: dict[str, Any], fields: dict[str, Any], at: str, ctx: Context,
               prefix: str, errors: list[FieldError]) -> str | None:
    where = f"{at}to"
    raw: str | None
    if item.get("to") is None:
        picked = pick_phone(fields)
        if picked is None:
            errors.append(FieldError(where, "is required (or give fields.mobile_phone, "
                                            "fields.mobilephone or fields.phone)"))
            return None
        where, raw = f"{at}fields.{picked[0]}", picked[1]
    else:
        raw = _str(item, "to", at, errors, required=True, limit=32)
        if raw is None:
            return None
    try:
        return ctx.numbers.normalise(raw, prefix)
    except Invalid as exc:
        errors.append(FieldError(where, exc.reason))
        return None


def _time(item: dict[str, Any], name: str, at: str, errors: list[FieldError]) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    where = f"{at}{name}"
    if isinstance(value, bool):
        errors.append(FieldError(where, "must be an RFC 3339 time or Unix seconds, not a boolean"))
        return None
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or not 0 <= value <= MAX_TIME:
            errors.append(FieldError(where, "must be Unix seconds between 0 and 4102444800"))
            return None
        return float(value)
    if not isinstance(value, str):
        errors.append(FieldError(where, f"must be an RFC 3339 time, not {_kind(value)}"))
        return None
    try:
        if len(value) > 40 or "T" not in value.upper():
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(where, "must be an RFC 3339 time like 2026-01-31T09:00:00Z"))
        return None
    if parsed.tzinfo is None:
        errors.append(FieldError(where, "needs a UTC offset (Z or +hh:mm)"))
        return None
    stamp = parsed.timestamp()
    if not 0 <= stamp <= MAX_TIME:
        errors.append(FieldError(where, "must be between 1970 and 2100"))
        return None
    return stamp


def _check_window(send_at: float | None, not_after: float | None, now: float, at: str,
                  errors: list[FieldError]) -> None:
    if send_at is not None and send_at > now + MAX_SCHEDULE_AHEAD:
        errors.append(FieldError(f"{at}send_at", "must be within 366 days from now"))
    if not_after is not None:
        if not_after <= now:
            errors.append(FieldError(f"{at}not_after", "is already in the past"))
        elif send_at is not None and not_after <= send_at:
            errors.append(FieldError(f"{at}not_after", "must be later than send_at"))


def _callback(item: dict[str, Any], at: str, ctx: Context, errors: list[FieldError]) -> str:
    url = _str(item, "callback_url", at, errors, required=False, limit=2048)
    if not url:
        return ""
    checked = ctx.callbacks.get(url)
    if checked is None:  # pragma: no cover - the route checks every URL before building
        errors.append(FieldError(f"{at}callback_url", "was not checked"))
        return ""
    if isinstance(checked, Invalid):
        errors.append(FieldError(f"{at}callback_url", checked.reason))
        return ""
    return checked


def _text(item: dict[str, Any], fields: dict[str, Any], at: str, mode: str, max_parts: int,
          errors: list[FieldError]) -> tuple[codec.Count | None, str | None]:
    text = _str(item, "text", at, errors, required=True, limit=MAX_TEXT_CHARS)
    if text is None:
        return None, None
    if not text.strip():
        errors.append(FieldError(f"{at}text", "must not be empty"))
        return None, None
    if fields:
        try:
            text = render(text, fields)
        except Invalid as exc:
            errors.append(FieldError(f"{at}text", exc.reason))
            return None, None
    if mode not in POLICIES:
        return None, None
    try:
        return codec.count(text, policy(mode, max_parts)), text
    except codec.UnencodableText as exc:
        errors.append(FieldError(f"{at}text", f"character {exc.char!r} at position {exc.position} "
                                              f"cannot be sent with encoding {mode}"))
    except codec.SegmentLimitExceeded as exc:
        errors.append(FieldError(f"{at}text", f"needs {exc.parts_needed} parts, more than "
                                              f"max_parts {exc.max_parts}"))
    except codec.CodecError as exc:
        errors.append(FieldError(f"{at}text", str(exc)[:120]))
    return None, None


def collect_callback_urls(items: list[Any], defaults: Mapping[str, Any]) -> set[str]:
    """Every distinct callback_url string in a submission (checked once each, off-thread)."""
    urls = set()
    for it in (defaults, *items) if defaults else items:
        if type(it) is dict and "callback_url" in it:
            url = it["callback_url"]
            if isinstance(url, str) and url and len(url) <= 2048:
                urls.add(url)
    return urls
