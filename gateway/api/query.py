"""Query parameters of ``GET /v1/messages``: parsed strictly, each refusal naming ``query:<name>``.

``to`` is normalised like a submitted number (so ``912345678`` finds ``+351912345678`` for an
account whose default prefix is 351); ``status`` takes one or more states separated by commas;
``since``/``until`` take RFC 3339 or Unix seconds (``until`` is exclusive); ``q`` is a
case-insensitive substring of the text; ``cursor`` is the ``next_cursor`` of the previous page.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from gateway.accounts import Account
from gateway.api.problems import FieldError, invalid
from gateway.validation import Invalid, NumberNormaliser

STATES: Final = frozenset({"ACCEPTED", "QUEUED", "SUBMITTING", "SENT", "DELIVERED",
                           "NOT_DELIVERED", "NOT_SENT"})
PARAMS: Final = frozenset({"to", "campaign", "status", "since", "until", "q", "cursor", "limit"})


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed history search."""

    to: str | None = None
    campaign: str | None = None
    states: frozenset[str] | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    cursor: str | None = None
    limit: int = 100

    def matches(self, view: Any) -> bool:
        m = view.message
        return ((self.to is None or m.to == self.to)
                and (self.campaign is None or m.campaign == self.campaign)
                and (self.states is None or str(view.state) in self.states)
                and (self.text is None or self.text in m.text.casefold()))


def parse_search(query: str, account: Account, numbers: NumberNormaliser, page_size: int,
                 max_page_size: int) -> SearchQuery:
    """Parse the query string of a history search.

    Raises:
        Problem: 422 naming every bad parameter.
    """
    errors: list[FieldError] = []
    values = query_values(query, PARAMS, errors)
    to = None
    if values.get("to"):
        try:
            to = numbers.normalise(plus_restored(values["to"]), account.default_prefix)
        except Invalid as exc:
            errors.append(FieldError("query:to", exc.reason))
    states = None
    if values.get("status"):
        states = frozenset(s.strip().upper() for s in values["status"].split(","))
        if not states <= STATES:
            errors.append(FieldError("query:status", f"must be among {', '.join(sorted(STATES))}"))
    since = _time(values.get("since"), "since", errors)
    until = _time(values.get("until"), "until", errors)
    if since is not None and until is not None and until <= since:
        errors.append(FieldError("query:until", "must be later than since"))
    cursor = values.get("cursor") or None
    if cursor is not None and not (len(cursor) <= 64 and cursor.isascii() and cursor.isalnum()):
        errors.append(FieldError("query:cursor", "is not a cursor this server gave"))
    limit = page_limit(values["limit"], max_page_size, errors) if "limit" in values else None
    campaign = values.get("campaign") or None
    text = values.get("q")
    if errors:
        raise invalid(errors)
    return SearchQuery(to, campaign, states, since, until, text.casefold() if text else None,
                       cursor, page_size if limit is None else limit)


def query_values(query: str, params: Collection[str], errors: list[FieldError]) -> dict[str, str]:
    """The non-empty values of ``query``'s parameters (an empty one is as if absent); a name
    not in ``params``, or given more than once, goes to ``errors`` as ``query:<name>``.

    Raises:
        Problem: 422 when the query string does not parse at all.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=len(params) * 2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid([FieldError("query", f"cannot be parsed: {str(exc)[:80]}")]) from None
    values: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in pairs:
        where = f"query:{name[:40]}"
        if name not in params:
            errors.append(FieldError(where, "unknown parameter"))
        elif name in seen:
            errors.append(FieldError(where, "given more than once"))
        else:
            seen.add(name)
            if value:
                values[name] = value
    return values


def page_limit(raw: str, most: int, errors: list[FieldError]) -> int | None:
    """``limit``'s value, 1 to ``most``; else None and an error in ``errors``."""
    if raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= most:
        return int(raw)
    errors.append(FieldError("query:limit", f"must be an integer from 1 to {most}"))
    return None


def plus_restored(raw: str) -> str:
    """A number as written in a query: an unencoded "+" reads as a space (HTML forms)."""
    return "+" + raw[1:] if raw.startswith(" ") else raw


def _time(raw: str | None, name: str, errors: list[FieldError]) -> float | None:
    if not raw:
        return None
    try:
        value = float(raw)
        if not math.isfinite(value) or value < 0:
            raise ValueError(raw)
        return value
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            errors.append(FieldError(f"query:{name}", "needs a UTC offset (Z or +hh:mm)"))
            return None
        return parsed.timestamp()
    except ValueError:
        errors.append(FieldError(f"query:{name}", "must be RFC 3339 or Unix seconds"))
        return None
