"""Delivery receipts an HTTP carrier pushes (API v1).

    POST /v1/receipts/{connector}   200 {"received": n} | 400 | 401 | 404 | 503

The carrier authenticates with its connector's receipt token as a bearer token (not an API
key). The connector's parser turns the body into receipts, and the sink hands them to that
connector's receipt path; the carrier is answered 200 only once they are durable, 503 (retry
in a second) when the connector is not running.

Must not import: gateway.http.server internals, adapters (parsers come in as callables).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.api import bodies
from gateway.api.inbound import require_bearer
from gateway.api.problems import bad_body, not_found, unavailable
from gateway.http import Request, Response

ReceiptParser = Callable[[bytes, str], list[Any]]
ReceiptSink = Callable[[str, list[Any]], Awaitable[None]]  # (connector, receipts)


class ReceiptRoutes:
    """POST /v1/receipts/{connector}.

    Args:
        parsers: connector name → ``parse(body, content_type)``.
        tokens: connector name → shared secret the carrier sends as a bearer token.
        sink: ``(connector, receipts)``: where parsed receipts go; returns once they are
            durable, raises LookupError when that connector is not running.
    """

    def __init__(self, parsers: Mapping[str, ReceiptParser] | None,
                 tokens: Mapping[str, str] | None, sink: ReceiptSink | None) -> None:
        self._parsers = dict(parsers or {})
        self._tokens = dict(tokens or {})
        self._sink = sink

    async def post(self, request: Request, connector: str) -> Response:
        """Parse and store the receipts in ``request``.

        Raises:
            Problem: 404 for a connector without parser, sink or token; 401 for a wrong
                token; 400 for a body that is not a receipt; 503 when the connector is down.
        """
        parser = self._parsers.get(connector)
        secret = self._tokens.get(connector, "")
        if parser is None or self._sink is None or not secret:
            raise not_found(f"no HTTP connector named {connector[:40]!r}")
        require_bearer(request, secret, "the connector's receipt token")
        try:
            receipts = parser(request.body, request.header("content-type"))
        except ValueError as exc:  # adapters.errors.InvalidReceipt
            raise bad_body(f"not a receipt: {str(exc)[:100]}") from None
        try:
            await self._sink(connector, receipts)
        except LookupError:
            raise unavailable(f"connector {connector!r} is not running", 1) from None
        return Response(200, bodies.encode({"received": len(receipts)}, bodies.JSON))
