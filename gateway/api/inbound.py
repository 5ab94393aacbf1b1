"""Inbound (mobile-originated) messages of API v1: ``GET /v1/inbound``, and the webhook HTTP
providers send theirs to, ``POST`` / ``GET /v1/inbound/{connector}`` (:class:`InboundWebhooks`).

    GET /v1/inbound?cursor=<id>&limit=<n>&since=<time>&to=<our number>&from=<handset>

The authenticated account's inbound messages (``gateway.inbound``), OLDEST FIRST, so that a
client reads them as a feed: it passes the ``next_cursor`` of one answer as the ``cursor`` of
the next, and an answer with ``next_cursor: null`` means nothing newer is stored yet (keep the
cursor you have and ask again later). A request reads at most ``max_scan`` stored messages, so
a sparse filter can answer fewer than ``limit`` messages with a non-null cursor: follow it.
``since`` takes RFC 3339 or Unix seconds (inclusive); ``to``/``from`` match numbers with or
without their "+". Unrouted messages (no ``[[inbound]]`` route) belong to no account and are
never listed.

``POST /v1/inbound/{connector}``: no API key; the connector's inbound token as a bearer token
(compared in constant time), or, for a connector whose ``inbound_token_param`` names one, as
that query parameter (for providers that cannot send a header; less safe, since URLs are
logged by proxies and providers' consoles; never logged here). The body is read by the
connector's parser (``adapters.http_inbound.parse_inbound``); 200 ``{"received": n,
"duplicates": d}`` only once the messages, and their pushes, are stored (a provider that gets
no 200 posts again, and the store drops what it already has when the provider names its
messages). 401 wrong token, 404 unknown connector, 400 an unreadable body (naming the field),
503 (Retry-After) when the store cannot take them now. Never logs a text or a number.

``GET /v1/inbound/{connector}?<the provider's fields>``: the same webhook for providers that
send one message as a GET with query parameters (Vonage's default): the query string is read
as a form body would be, with the same field mapping, token, duplicate check and answers,
except that an unreadable query is 422 naming ``query:<field>``. HEAD checks the token and
stores nothing.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

from actors.errors import StoreError
from actors.messages import StatusEvent
from adapters.errors import InvalidInbound
from adapters.http_inbound import FORM, HttpInbound
from gateway.accounts import Account, bearer_token
from gateway.api import bodies
from gateway.api.problems import (
    FieldError,
    bad_body,
    invalid,
    not_found,
    unauthorized,
    unavailable,
)
from gateway.api.query import _time, page_limit, plus_restored, query_values
from gateway.api.views import rfc3339
from gateway.callback_outbox import INBOUND_PREFIX
from gateway.http import Request, Response
from gateway.inbound import InboundBook, InboundMessage

logger = logging.getLogger(__name__)

PARAMS: Final = frozenset({"cursor", "limit", "since", "to", "from"})
MAX_LIMIT: Final = 1000
InboundParser = Callable[[bytes, str], list[HttpInbound]]
"""``(body, content_type) -> messages`` for one connector (raises ``InvalidInbound``)."""
InboundStore = Callable[[Sequence[Any], Sequence[str]], Awaitable[int]]
"""``(parts, provider_ids) -> duplicates``: ``gateway.inbound.InboundBook.store``."""


class InboundRoutes:
    """The handler of ``GET /v1/inbound`` for an authenticated account."""

    def __init__(self, store: Any, *, page_size: int = 100, max_page_size: int = MAX_LIMIT,
                 max_scan: int = 10_000) -> None:
        self._book = InboundBook(store)
        self._max_limit = max_page_size
        self._page_size = min(page_size, self._max_limit)
        self._max_scan = max_scan

    async def list(self, request: Request, account: Account) -> Response:
        """A page of the account's inbound messages, oldest first (see the module docstring)."""
        q = self._query(request.query)
        found, cursor = self._book.page(
            account.name, after=q.get("cursor"), limit=q.get("limit", self._page_size),
            max_scan=self._max_scan, since=q.get("since"), to=q.get("to"), sender=q.get("from"))
        doc = {"messages": [message_json(m) for m in found], "next_cursor": cursor}
        return Response(200, bodies.encode(doc, bodies.JSON))

    def _query(self, query: str) -> dict[str, Any]:
        errors: list[FieldError] = []
        out: dict[str, Any] = {}
        for name, value in query_values(query, PARAMS, errors).items():
            if name == "cursor":
                if not (len(value) <= 32 and value.isascii() and value.isdigit()):
                    errors.append(FieldError("query:cursor", "is not a cursor this server gave"))
                out[name] = value
            elif name == "limit":
                out[name] = page_limit(value, self._max_limit, errors)
            elif name == "since":
                out[name] = _time(value, "since", errors)
            else:  # to, from
                number = plus_restored(value)
                bare = number.removeprefix("+")
                if not (bare.isascii() and bare.isdigit() and len(bare) <= 20):
                    errors.append(FieldError(f"query:{name}", "must be a number: + and digits"))
                out[name] = number
        if errors:
            raise invalid(errors)
        return out


def received_reader(book: InboundBook) -> Callable[[StatusEvent], dict[str, Any] | None]:
    """The callback sender's ``received``: the ``data`` of an ``SMS_RECEIVED`` push is the
    message as this route lists it, plus its account; None when it is no longer stored."""

    def received(event: StatusEvent) -> dict[str, Any] | None:
        found = book.get(event.account, event.msg_id.removeprefix(INBOUND_PREFIX))
        return None if found is None else {"account": found.account, **message_json(found)}

    return received


def message_json(m: InboundMessage) -> dict[str, Any]:
    """The API form of one inbound message."""
    return {"id": m.id, "from": m.source, "to": m.destination, "text": m.text,
            "received_at": rfc3339(m.received_at), "connector": m.connector,
            "encoding": m.encoding, "parts": m.parts}


def require_bearer(request: Request, secret: str, what: str, *, query_param: str = "") -> None:
    """401 unless ``request`` carries ``secret`` as its bearer token (constant-time compare):
    the HTTP carriers' webhooks (receipts, inbound), whose secret is the connector's. With
    ``query_param``, a request without an Authorization header may carry it as that query
    parameter instead (exactly once)."""
    header = request.header("authorization")
    given = bearer_token(header)
    if not header and query_param:
        values = [v for k, v in parse_qsl(request.query, keep_blank_values=True)
                  if k == query_param]
        given = values[0] if len(values) == 1 else ""
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise unauthorized(f"{what} is missing or wrong")


@dataclass(frozen=True, slots=True)
class InboundWebhooks:
    """``POST`` and ``GET /v1/inbound/{connector}`` for HTTP providers (see the module
    docstring).

    Args:
        parsers: connector name -> its body parser.
        tokens: connector name -> the secret it sends as a bearer token.
        store: where the messages go (durable when it returns); None answers 503.
        token_params: connector name -> the query parameter that may carry its secret
            instead (``inbound_token_param``); absent or "": the header only.
    """

    parsers: Mapping[str, InboundParser]
    tokens: Mapping[str, str]
    store: InboundStore | None
    token_params: Mapping[str, str] = field(default_factory=dict)

    async def post(self, request: Request, connector: str) -> Response:
        """The messages in the body."""
        parser = self._authenticated(request, connector)
        try:
            found = parser(request.body, request.header("content-type"))
        except InvalidInbound as exc:
            raise bad_body(exc.reason, exc.field[:120]) from None
        return await self._stored(found, connector)

    async def get(self, request: Request, connector: str) -> Response:
        """The message in the query string, read as a form body (HEAD: none)."""
        parser = self._authenticated(request, connector)
        if request.method == "HEAD":  # a provider checking the URL: nothing to store
            return _answer(0, 0)
        try:
            # the exact inverse of the server's Latin-1 decoding of the target: its bytes
            found = parser(request.query.encode("latin-1"), FORM)
        except InvalidInbound as exc:
            if exc.field == "body":
                raise invalid([FieldError("query", "a query string that does not parse")]
                              ) from None
            raise invalid([FieldError(f"query:{exc.field[:120]}", exc.reason)]) from None
        return await self._stored(found, connector)

    def _authenticated(self, request: Request, connector: str) -> InboundParser:
        """The connector's parser, once the request has its token (404 / 401 otherwise)."""
        parser = self.parsers.get(connector)
        secret = self.tokens.get(connector, "")
        if parser is None or not secret:
            raise not_found(f"no HTTP connector named {connector[:40]!r}")
        require_bearer(request, secret, "the connector's inbound token",
                       query_param=self.token_params.get(connector, ""))
        return parser

    async def _stored(self, found: list[HttpInbound], connector: str) -> Response:
        if self.store is None:
            raise unavailable("inbound messages cannot be stored now", 5)
        try:
            duplicates = await self.store([m.part for m in found],
                                          [m.provider_id for m in found])
        except StoreError:
            raise unavailable("the store could not commit; nothing was stored", 1) from None
        logger.debug("inbound webhook: %d messages, %d duplicates", len(found), duplicates,
                     extra={"carrier": connector})
        return _answer(len(found), duplicates)


def _answer(received: int, duplicates: int) -> Response:
    return Response(200, bodies.encode({"received": received, "duplicates": duplicates},
                                       bodies.JSON))
