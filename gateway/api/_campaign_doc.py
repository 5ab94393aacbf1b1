"""Campaign and template definitions from request documents (a JSON object, or the query
string of a CSV / JSON-lines create), checked field by field: every problem becomes a
:class:`FieldError` and all of them are reported together (422).

Pure: documents in, a :class:`Campaign` / :class:`Template` out, or ``Problem``.

Must not import: trio, gateway.http.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from gateway.accounts import Account
from gateway.api.problems import FieldError, invalid
from gateway.campaigns import Campaign
from gateway.config import POLICIES
from gateway.templates import Template, TemplateError

CAMPAIGN_FIELDS: Final = frozenset({
    "name", "from", "text", "template", "on_missing", "defaults", "send_at", "not_after",
    "shaping", "recontact_hours", "default_country_prefix", "mobile_prefix", "encoding",
    "max_parts", "description", "recipients", "draft"})
TEMPLATE_FIELDS: Final = ("name", "text", "on_missing", "defaults", "encoding")


def campaign_of(doc: dict[str, Any], account: Account,
                find_template: Callable[[str], Template | None], now: float) -> Campaign:
    """The campaign ``doc`` defines for ``account``, its ``template`` looked up with
    ``find_template`` (the account's saved templates).

    Raises:
        Problem: 422 listing every bad field.
    """
    errors = [FieldError(k, "unknown field") for k in doc if k not in CAMPAIGN_FIELDS]
    text, template = doc.get("text"), doc.get("template")
    tpl: Template | None = None
    if isinstance(template, str) and template:
        tpl = find_template(template)
        if tpl is None:
            errors.append(FieldError("template", f"no template named {template[:64]!r}"))
    elif not isinstance(text, str) or not text.strip():
        errors.append(FieldError("text", "give text or template"))
    shaping = doc.get("shaping") or {}
    if not isinstance(shaping, dict):
        errors.append(FieldError("shaping", "must be an object"))
        shaping = {}
    name = doc.get("name") or time.strftime("C%y%m%d%H%M%S", time.gmtime(now)) + \
        secrets.token_hex(2)
    encoding = doc.get("encoding") or (tpl.encoding if tpl else "") or account.policy
    if encoding not in POLICIES:
        errors.append(FieldError("encoding", f"must be one of {', '.join(POLICIES)}"))
    c = Campaign(
        name=str(name), account=account.name, sender=_s(doc.get("from")),
        text=tpl.text if tpl else _s(text), template=tpl.name if tpl else "",
        on_missing=tpl.on_missing if tpl else _s(doc.get("on_missing")) or "fail",
        defaults=dict(tpl.defaults) if tpl else _defaults(doc.get("defaults"), errors),
        encoding=str(encoding),
        max_parts=_number(doc, "max_parts", errors, account.max_parts, 1, 255, integer=True),
        default_prefix=_s(doc.get("default_country_prefix") or doc.get("mobile_prefix")
                          or account.default_prefix),
        send_at=_time(doc.get("send_at"), "send_at", errors),
        not_after=_time(doc.get("not_after"), "not_after", errors),
        slice_percent=_number(shaping, "slice_percent", errors, 0, 0, 100, where="shaping."),
        slice_every=60 * _number(shaping, "slice_every_minutes", errors, 0, 0, 525600,
                                 where="shaping."),
        per_minute=_number(shaping, "per_minute", errors, 0, 0, 1e7, where="shaping."),
        recontact_hours=_number(doc, "recontact_hours", errors, 0, 0, 8784),
        description=_s(doc.get("description"))[:256], created_at=now)
    if errors:
        raise invalid(errors)
    return c


def template_of(doc: dict[str, Any]) -> Template:
    """The template ``doc`` defines.

    Raises:
        Problem: 422 naming the bad field (an unknown one, the encoding, the defaults, or
            where in the text the template does not parse).
    """
    unknown = [k for k in doc if k not in TEMPLATE_FIELDS]
    if unknown:
        raise invalid([FieldError(k, "unknown field") for k in unknown])
    encoding = _s(doc.get("encoding"))
    if encoding and encoding not in POLICIES:
        raise invalid([FieldError("encoding", f"must be one of {', '.join(POLICIES)}")])
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise invalid([FieldError("defaults", "must be an object")])
    try:
        return Template.build(_s(doc.get("name")), _s(doc.get("text")),
                              _s(doc.get("on_missing")) or "fail", defaults, encoding)
    except TemplateError as exc:
        where = "text" if exc.position >= 0 or "text" in exc.reason else (
            exc.reason.split(":")[0] if ":" in exc.reason else "template")
        reason = exc.reason + (f" (at position {exc.position})" if exc.position >= 0 else "")
        raise invalid([FieldError(where, reason)]) from None


def query_doc(query: str) -> dict[str, Any]:
    """A campaign definition from a query string (a CSV / JSON-lines create, whose body is
    the list): the shaping keys go under ``shaping``, numbers become numbers."""
    doc: dict[str, Any] = {}
    shaping: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in ("slice_percent", "slice_every_minutes", "per_minute"):
            shaping[k] = _num_or_str(v)
        elif k in ("recontact_hours", "max_parts"):
            doc[k] = _num_or_str(v)
        else:
            doc[k] = v
    if shaping:
        doc["shaping"] = shaping
    return doc


def offset_of(query: str) -> int | None:
    """``?offset=N`` (the body's first row is row N of the list), or None.

    Raises:
        Problem: 422 when it is not a row number.
    """
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == "offset":
            if not v.isdigit() or len(v) > 15:
                raise invalid([FieldError("offset", "must be a row number >= 0")])
            return int(v)
    return None


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _num_or_str(v: str) -> Any:
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() else f


def _number(doc: dict[str, Any], key: str, errors: list[FieldError], default: float,
            low: float, high: float, *, integer: bool = False, where: str = "") -> Any:
    v = doc.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
            integer and not float(v).is_integer()) or not low <= v <= high:
        errors.append(FieldError(where + key, f"must be a number between {low:g} and {high:g}"))
        return default
    return int(v) if integer else float(v)


def _time(value: Any, where: str, errors: list[FieldError]) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed.timestamp()
        except ValueError:
            pass
    errors.append(FieldError(where, "must be an RFC 3339 time with an offset, or Unix seconds"))
    return 0.0


def _defaults(value: Any, errors: list[FieldError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("defaults", "must be an object"))
        return {}
    return {str(k): _s(v) for k, v in value.items()}
