"""The message resources of API v1: submit, preview, read one, search history (JSON or CSV).

``POST /v1/messages`` answers 202 only after ``Gateway.accept`` returned, i.e. after the
messages committed. With an ``Idempotency-Key`` the answer is recorded in that same
transaction (see gateway.idempotency). A batch (``{"messages": [...]}``) accepts its valid
items and reports the others per item; only when no item is valid is it refused as a whole.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import trio

from actors.errors import StoreError
from actors.messages import MsgId
from gateway import export, metrics
from gateway import idempotency as idem
from gateway.accounts import Account
from gateway.api import bodies
from gateway.api._batcher import AcceptBatcher
from gateway.api.problems import FieldError, Problem, invalid, not_found, unavailable
from gateway.api.query import SearchQuery, parse_search
from gateway.api.submit import Context, ItemInvalid, build, collect_callback_urls, preview
from gateway.api.views import csv_header, csv_rows, message_json
from gateway.http import Request, Response
from gateway.validation import Invalid, NumberNormaliser

# url → normalised url, async (names resolve without blocking the event loop:
# gateway.ssrf.check_callback_url_async); raises ValueError with .reason
CallbackCheck = Callable[[str], Awaitable[str]]


class MessageRoutes:
    """Handlers of /v1/messages and /v1/preview for an authenticated account."""

    def __init__(self, gateway: Any, book: idem.IdempotencyBook, numbers: NumberNormaliser, *,
                 new_id: Callable[[], MsgId], check_callback: CallbackCheck, max_batch: int,
                 page_size: int, max_page_size: int, max_scan: int,
                 now: Callable[[], float] = time.time) -> None:
        self._gateway = gateway
        self._batcher = AcceptBatcher(gateway, max_messages=max_batch)  # a group ≈ one big request
        self._book = book
        self._numbers = numbers
        self._new_id = new_id
        self._check_callback = check_callback
        self.check_callback = check_callback  # PATCH /v1/account checks the account's URL too
        self._callback_cache: dict[str, tuple[float, str | Invalid]] = {}
        self._max_batch = max_batch
        self.max_batch = max_batch
        self._page_size = page_size
        self._max_page_size = max_page_size
        self._max_scan = max_scan
        self._now = now

    # ---------------------------------------------------------------- POST /v1/messages

    async def submit(self, request: Request, account: Account) -> Response:
        if "idempotency-key" not in request.headers:
            return await self._submit(request, account, None)
        key = request.headers["idempotency-key"]
        # Present but empty is refused, not read as "no key": a client that meant to send a key
        # and sent none would otherwise lose the retry safety it asked for.
        if not key or len(key) > idem.MAX_KEY_LENGTH or not key.isprintable():
            raise invalid([FieldError("header:Idempotency-Key",
                                      f"must be 1-{idem.MAX_KEY_LENGTH} printable characters")])
        digest = idem.request_hash(request.method, request.path, request.body)
        try:
            stored = self._book.begin(account.name, key, digest)
        except idem.InFlight:
            raise Problem(409, "idempotency-in-flight", "Request in progress",
                          "a request with this Idempotency-Key is still being handled; retry "
                          "later", [FieldError("header:Idempotency-Key", "in flight")],
                          [("retry-after", "1")]) from None
        except idem.Mismatch:
            raise Problem(422, "idempotency-mismatch", "Idempotency-Key reused",
                          "this Idempotency-Key was used with a different request",
                          [FieldError("header:Idempotency-Key", "was used with another body")]
                          ) from None
        if stored is not None:
            metrics.IDEMPOTENT_REPLAYS.inc()
            return Response(stored.status, stored.body, stored.content_type,
                            [("idempotent-replayed", "true")])
        try:
            try:
                return await self._submit(request, account, (key, digest))
            except Problem as problem:
                if 400 <= problem.status < 500:
                    resp = problem.response()
                    with trio.CancelScope(shield=True):
                        await self._book.finish(account.name, key, digest,
                                                idem.Stored(resp.status, resp.content_type, resp.body))
                raise
        finally:
            self._book.release(account.name, key)

    async def _submit(self, request: Request, account: Account,
                      idem_key: tuple[str, bytes] | None) -> Response:
        resp, built = await self.prepare(request, account)
        also = None
        if idem_key is not None:
            also = self._book.record_op(account.name, idem_key[0], idem_key[1],
                                        idem.Stored(202, resp.content_type, resp.body))
        await self.accept(built, also)
        return resp

    async def prepare(self, request: Request, account: Account) -> tuple[Response, list[Any]]:
        """Validate a submission (no Idempotency-Key handling) and build its messages: the
        202 answer to give once ``built`` is committed, and ``built``.

        Raises:
            Problem: the submission is refused as a whole (nothing to commit).
        """
        value, fmt = bodies.decode(request.body, request.header("content-type"))
        if type(value) is dict and "messages" not in value and "callback_url" not in value:
            # one message, no callback URL to check: what the general path below does with it
            items, defaults, batch, urls = [value], _NO_CALLBACKS, False, _NO_URLS
        else:
            items, defaults, batch = self._items(value)
            urls = collect_callback_urls(items, defaults)
        ctx = Context(account, self._numbers, self._now(), self._new_id,
                      await self._callbacks(urls) if urls else _NO_CALLBACKS)
        if not batch and not urls:
            try:
                b = build(items[0], "", ctx)
            except ItemInvalid as exc:
                for e in exc.errors:
                    metrics.rejected(e.field)
                raise invalid(exc.errors) from None
            m = b.message
            if fmt == bodies.JSON:
                body = bodies.accepted_json(m.msg_id, m.to, b.count, m.client_ref)
            else:
                body = bodies.encode(_accepted(b, None), fmt)
            return Response(202, body, bodies.MSGPACK if fmt == bodies.MSGPACK else bodies.JSON,
                            [("location", "/v1/messages/" + m.msg_id)]), [m]
        built: list[Any] = []
        results: list[Any] = []  # JSON texts, or documents for msgpack
        errors: list[FieldError] = []
        as_text = fmt == bodies.JSON  # JSON answers are formatted item by item (bodies)
        for i, item in enumerate(items):
            path = f"messages[{i}]" if batch else ""
            if defaults and isinstance(item, dict):
                item = {**defaults, **item}
            try:
                b = build(item, path, ctx)
            except ItemInvalid as exc:
                for e in exc.errors:
                    metrics.rejected(e.field)
                errors += exc.errors
                refused = {"index": i, "status": 422, "errors": [e.as_dict() for e in exc.errors]}
                results.append(bodies.text(refused) if as_text else refused)
                continue
            built.append(b.message)
            index = i if batch else None
            m = b.message
            results.append(bodies.accepted_text(index, m.msg_id, m.to, b.count, m.client_ref)
                           if as_text else _accepted(b, index))
        if not built:
            raise invalid(errors)
        headers: list[tuple[str, str]] = []
        if not batch:
            headers = [("location", f"/v1/messages/{built[0].msg_id}")]
        if as_text:
            body = (bodies.batch_json(len(built), len(items) - len(built), results) if batch
                    else results[0].encode())
        elif batch:
            body = bodies.encode({"accepted": len(built), "rejected": len(items) - len(built),
                                  "messages": results}, fmt)
        else:
            body = bodies.encode(results[0], fmt)
        return Response(202, body, bodies.MSGPACK if fmt == bodies.MSGPACK else bodies.JSON,
                        headers), built

    async def accept(self, built: list[Any], also: Any = None) -> None:
        """Commit ``built`` (with ``also`` in the same transaction); returns after the commit.

        Raises:
            Problem: 503 when the store failed or the gateway is saturated (nothing committed).
        """
        try:
            await self._batcher.accept(built, also)
        except StoreError:
            raise unavailable("the store could not commit; nothing was accepted", 1) from None
        except Exception as exc:
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is None:
                raise
            metrics.SATURATED.inc()
            raise unavailable("the gateway is saturated; nothing was accepted", retry_after) from None
        metrics.ACCEPTED.inc(len(built))

    def _items(self, value: Any) -> tuple[list[Any], dict[str, Any], bool]:
        if isinstance(value, dict) and "messages" in value:
            items = value["messages"]
            if not isinstance(items, list):
                raise invalid([FieldError("messages", "must be an array of message objects")])
            if not items:
                raise invalid([FieldError("messages", "must hold at least one message")])
            if len(items) > self._max_batch:
                raise invalid([FieldError("messages", f"must hold at most {self._max_batch} "
                                                      "messages")])
            defaults = {k: v for k, v in value.items() if k != "messages"}
            bad = [FieldError(k, "unknown field") for k in defaults if k not in _DEFAULTABLE]
            if bad:
                raise invalid(bad)
            return items, defaults, True
        if not isinstance(value, dict):
            raise invalid([FieldError("body", "must be a message object or {\"messages\": [...]}")])
        return [value], {}, False

    async def _callbacks(self, urls: set[str]) -> dict[str, str | Invalid]:
        out: dict[str, str | Invalid] = {}
        now = time.monotonic()
        for url in urls:
            hit = self._callback_cache.get(url)
            if hit is None or hit[0] < now:
                try:
                    result: str | Invalid = await self._check_callback(url)
                except ValueError as exc:
                    result = Invalid(f"refused: {getattr(exc, 'reason', '') or exc}")
                if len(self._callback_cache) > 10_000:
                    self._callback_cache.clear()
                hit = self._callback_cache[url] = (now + 60.0, result)
            out[url] = hit[1]
        return out

    # ---------------------------------------------------------------- POST /v1/preview

    async def preview(self, request: Request, account: Account) -> Response:
        value, fmt = bodies.decode(request.body, request.header("content-type"))
        try:
            count = preview(value, account)
        except ItemInvalid as exc:
            raise invalid(exc.errors) from None
        doc = {"encoding": count.encoding, "parts": count.parts, "units": count.units,
               "replacements": [list(r) for r in count.replacements], "text": count.text}
        return Response(200, bodies.encode(doc, fmt),
                        bodies.MSGPACK if fmt == bodies.MSGPACK else bodies.JSON)

    # ---------------------------------------------------------------- GET /v1/messages/{id}

    async def read(self, request: Request, account: Account, msg_id: str) -> Response:
        view = None
        if 0 < len(msg_id) <= 64 and msg_id.isascii() and msg_id.isalnum():
            view = self._gateway.store.get_message(msg_id)
        if view is None or view.message.account != account.name:
            raise not_found(f"no message {msg_id[:64]!r} in this account")
        return Response(200, bodies.encode(message_json(view), bodies.JSON))

    # ---------------------------------------------------------------- GET /v1/messages

    async def search(self, request: Request, account: Account) -> Response:
        q = parse_search(request.query, account, self._numbers, self._page_size, self._max_page_size)
        if "text/csv" in request.header("accept"):
            return Response(200, b"", "text/csv; charset=utf-8",
                            [("content-disposition", 'attachment; filename="messages.csv"')],
                            stream=self._csv(account, q))
        views, cursor = export.matching(self._gateway.store, account.name, q, q.cursor,
                                        q.limit, self._max_scan)
        doc = {"messages": [message_json(v, events=False) for v in views], "next_cursor": cursor}
        return Response(200, bodies.encode(doc, bodies.JSON))

    async def _csv(self, account: Account, q: SearchQuery) -> AsyncIterator[bytes]:
        yield csv_header()
        for views in export.pages(self._gateway.store, account.name, q, self._max_scan):
            if views:
                yield csv_rows(views)
            await trio.lowlevel.checkpoint()


_NO_CALLBACKS: Final[dict[str, Any]] = {}
_NO_URLS: Final[set[str]] = set()
_DEFAULTABLE: Final = frozenset({"from", "text", "campaign", "send_at", "not_after", "encoding",
                                 "max_parts", "callback_url", "fields", "default_country_prefix"})


def _accepted(b: Any, index: int | None) -> dict[str, Any]:
    m, c = b.message, b.count
    # Tuples encode as arrays in JSON and msgpack alike: no per-message list copies.
    if index is None:
        doc = {"id": m.msg_id, "status": "ACCEPTED", "to": m.to, "encoding": c.encoding,
               "parts": c.parts, "replacements": c.replacements}
    else:
        doc = {"index": index, "id": m.msg_id, "status": "ACCEPTED", "to": m.to,
               "encoding": c.encoding, "parts": c.parts, "replacements": c.replacements}
    if m.client_ref:
        doc["client_ref"] = m.client_ref
    return doc
