"""Opt-outs of API v1: the calling account's suppression list (``gateway.optouts``).

    PUT    /v1/optouts/{number}   add (idempotent): 201 added, 200 already there (unchanged)
    DELETE /v1/optouts/{number}   remove: 204, 404 when the number is not on the list
    GET    /v1/optouts/{number}   the record, 404 when the number is not on the list
    GET    /v1/optouts?cursor=<number>&limit=<n>&source=<source>&since=<time>
    POST   /v1/optouts            add a list: {"numbers": [...], "source": "import"}

``{number}`` is normalised as a submission's ``to`` is (``gateway.validation``): E.164 with
"+" (``%2B`` in a URL) or "00", or national with the account's default country prefix; 422
names ``path:number`` otherwise. PUT takes an optional body ``{"source": "import"}`` (a label
for where the opt-out came from; default ``"api"``). The list reads in number order; a page
answers ``next_cursor`` (pass it as ``cursor``), null once the list is read to its end. A
request reads at most ``max_scan`` records, so a sparse filter (``source``, ``since``) can
answer fewer than ``limit`` with a non-null cursor: follow it.

``POST /v1/optouts`` loads a list (an existing suppression list, a CRM's unsubscribes) in ONE
write: up to ``MAX_BULK`` numbers, normalised one by one; 200 ``{"added", "already",
"rejected": [{"field": "numbers[i]", "reason"}]}`` (the numbers that could not be read are
named and skipped, the others added), 422 when none is readable or the body is wrong. Never
logs a number.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import unquote

from actors.errors import StoreError
from gateway.accounts import Account
from gateway.api import bodies
from gateway.api.problems import FieldError, invalid, not_found, unavailable
from gateway.api.query import _time, page_limit, plus_restored, query_values
from gateway.api.views import rfc3339
from gateway.http import Request, Response
from gateway.optouts import API, OptOut, OptOutList
from gateway.validation import Invalid, NumberNormaliser

PARAMS: Final = frozenset({"cursor", "limit", "source", "since"})
MAX_BULK: Final = 10_000
BULK_SOURCE: Final = "import"
MAX_LIMIT: Final = 1000
SOURCE: Final = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
NUMBER_FIELD: Final = "path:number"


class OptOutRoutes:
    """The handlers of ``/v1/optouts`` for an authenticated account."""

    def __init__(self, optouts: OptOutList, *, page_size: int = 100,
                 max_page_size: int = MAX_LIMIT, max_scan: int = 10_000) -> None:
        self.optouts = optouts
        self._numbers = NumberNormaliser(10_000)
        self._max_limit = max_page_size
        self._page_size = min(page_size, self._max_limit)
        self._max_scan = max_scan

    async def put(self, request: Request, account: Account, raw: str) -> Response:
        number = self._number(raw, account)
        source = _source(request)
        try:
            record, added = await self.optouts.add(account.name, number, source=source,
                                                   fail_fast=True)
        except StoreError:
            raise unavailable("the store could not commit; nothing was changed", 1) from None
        return Response(201 if added else 200, bodies.encode(optout_json(record), bodies.JSON))

    async def bulk(self, request: Request, account: Account) -> Response:
        raw, source = _bulk_body(request)
        numbers: list[str] = []
        rejected: list[FieldError] = []
        for i, item in enumerate(raw):
            field = f"numbers[{i}]"
            if not isinstance(item, str) or not item or len(item) > 32:
                rejected.append(FieldError(field, "must be a phone number (a string)"))
                continue
            try:
                numbers.append(self._numbers.normalise(item, account.default_prefix))
            except Invalid as exc:
                rejected.append(FieldError(field, exc.reason))
        if not numbers:
            raise invalid(rejected[:100], f"none of the {len(raw)} numbers could be read")
        try:
            done = await self.optouts.add_many(account.name, numbers, source=source,
                                               fail_fast=True)
        except StoreError:
            raise unavailable("the store could not commit; nothing was changed", 1) from None
        added = sum(new for _, new in done)
        doc = {"added": added, "already": len(done) - added,
               "rejected": [e.as_dict() for e in rejected]}
        return Response(200, bodies.encode(doc, bodies.JSON))

    async def delete(self, request: Request, account: Account, raw: str) -> Response:
        number = self._number(raw, account)
        try:
            removed = await self.optouts.remove(account.name, number, fail_fast=True)
        except StoreError:
            raise unavailable("the store could not commit; nothing was changed", 1) from None
        if removed is None:
            raise not_found("the number is not on the account's opt-out list")
        return Response(204)

    async def get(self, request: Request, account: Account, raw: str) -> Response:
        found = self.optouts.get(account.name, self._number(raw, account))
        if found is None:
            raise not_found("the number is not on the account's opt-out list")
        return Response(200, bodies.encode(optout_json(found), bodies.JSON))

    async def list(self, request: Request, account: Account) -> Response:
        q = self._query(request.query)
        found, cursor = self.optouts.page(
            account.name, after=q.get("cursor"), limit=q.get("limit", self._page_size),
            max_scan=self._max_scan, source=q.get("source"), since=q.get("since"))
        doc = {"optouts": [optout_json(o) for o in found], "next_cursor": cursor}
        return Response(200, bodies.encode(doc, bodies.JSON))

    def _number(self, raw: str, account: Account) -> str:
        """The path's number as E.164 (422 naming ``path:number`` when it is not one)."""
        try:
            text = unquote(raw, errors="strict") if "%" in raw else raw
            if len(text) > 32:
                raise Invalid("is longer than 32 characters")
            return self._numbers.normalise(text, account.default_prefix)
        except (Invalid, UnicodeDecodeError) as exc:
            reason = getattr(exc, "reason", "must be written with ASCII digits")
            raise invalid([FieldError(NUMBER_FIELD, reason)]) from None

    def _query(self, query: str) -> dict[str, Any]:
        errors: list[FieldError] = []
        out: dict[str, Any] = {}
        for name, value in query_values(query, PARAMS, errors).items():
            if name == "cursor":  # a number (the last one of the previous page)
                number = plus_restored(value)
                bare = number.removeprefix("+")
                if not (bare.isascii() and bare.isdigit() and len(bare) <= 20):
                    errors.append(FieldError("query:cursor", "is not a cursor this server gave"))
                out[name] = number
            elif name == "limit":
                out[name] = page_limit(value, self._max_limit, errors)
            elif name == "source":
                if SOURCE.fullmatch(value) is None:
                    errors.append(FieldError("query:source",
                                             "must be a source label: a-z, 0-9, _.-"))
                out[name] = value
            else:
                out[name] = _time(value, "since", errors)
        if errors:
            raise invalid(errors)
        return out


def _source(request: Request) -> str:
    """The ``source`` of a PUT's optional body (default ``"api"``)."""
    if not request.body.strip():
        return API
    value, _fmt = bodies.decode(request.body, request.header("content-type"))
    if not isinstance(value, dict):
        raise invalid([FieldError("body", "must be an object")])
    errors = [FieldError(k[:40] if isinstance(k, str) else "body", "unknown field")
              for k in value if k != "source"]
    source = value.get("source", API)
    if not isinstance(source, str) or SOURCE.fullmatch(source) is None:
        errors.append(FieldError("source", "must be a label of 1 to 32 characters: a-z first, "
                                           "then a-z, 0-9, _ . -"))
    if errors:
        raise invalid(errors)
    return str(source)


def _bulk_body(request: Request) -> tuple[list[Any], str]:
    """The ``numbers`` and ``source`` of a ``POST /v1/optouts`` body."""
    value, _fmt = bodies.decode(request.body, request.header("content-type"))
    if not isinstance(value, dict):
        raise invalid([FieldError("body", "must be an object")])
    errors = [FieldError(k[:40] if isinstance(k, str) else "body", "unknown field")
              for k in value if k not in ("numbers", "source")]
    numbers = value.get("numbers")
    if not isinstance(numbers, list) or not 1 <= len(numbers) <= MAX_BULK:
        errors.append(FieldError("numbers", f"must be a list of 1 to {MAX_BULK} numbers"))
    source = value.get("source", BULK_SOURCE)
    if not isinstance(source, str) or SOURCE.fullmatch(source) is None:
        errors.append(FieldError("source", "must be a label of 1 to 32 characters: a-z first, "
                                           "then a-z, 0-9, _ . -"))
    if errors or not isinstance(numbers, list):
        raise invalid(errors)
    return numbers, str(source)


def optout_json(o: OptOut) -> dict[str, Any]:
    """The API form of one opt-out."""
    return {"number": o.number, "opted_out_at": rfc3339(o.at), "source": o.source}
