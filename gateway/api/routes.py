"""API v1: the route table, the router and authentication.

:class:`Api` is the application the HTTP server calls: ``await api(request) -> Response``.
It finds the route (404 for an unknown path, 405 with ``Allow`` for a wrong method),
authenticates ``/v1`` routes with a bearer API key (401 otherwise), calls the handler, turns a
:class:`~gateway.api.problems.Problem` into its document, and counts the request in metrics by
route template. ``ROUTES`` is the single list that the router and /openapi.json both read, so
the document cannot describe a route the server lacks, or miss one it has.

The handlers live with their resource, in handler objects the ``Api`` holds and dispatches to
(``_<handler>`` methods, one line each): messages, cancel, account (GET/PATCH /v1/account),
receipts (carrier pushes), inbound, optouts, campaigns, dead_letters, and operational
(/healthz, /readyz, /metrics, /openapi.json). Submissions without an Idempotency-Key take a
shorter path, alone (:meth:`Api.__call__`) or pipelined (:meth:`Api.call_many`).

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway import metrics
from gateway.accounts import Account, AccountBook, bearer_token
from gateway.api.account import AccountRoutes
from gateway.api.cancel import CancelRoutes
from gateway.api.inbound import InboundRoutes, InboundWebhooks
from gateway.api.messages import MessageRoutes
from gateway.api.operational import OperationalRoutes
from gateway.api.optouts import OptOutRoutes
from gateway.api.problems import FieldError, Problem, not_found, unauthorized
from gateway.api.receipts import ReceiptParser, ReceiptRoutes, ReceiptSink
from gateway.http import Request, Response

__all__ = ["ROUTES", "Api", "ReceiptParser", "ReceiptSink", "Route", "key_expired"]


@dataclass(frozen=True, slots=True)
class Route:
    """One route: method, path template (``{name}`` is one path segment), handler name,
    whether it needs an API key, and a summary for OpenAPI."""

    method: str
    template: str
    handler: str
    auth: bool
    summary: str


ROUTES: Final = (
    Route("POST", "/v1/messages", "submit", True, "Submit one message or a batch"),
    Route("GET", "/v1/messages", "search", True, "Search message history (JSON or CSV)"),
    Route("GET", "/v1/messages/{id}", "read", True, "Read one message with parts and events"),
    # Cancelling messages not yet handed to a carrier (gateway/api/cancel.py)
    Route("POST", "/v1/messages/{id}/cancel", "cancel", True,
          "Cancel a message that has not reached a carrier (NOT_SENT, code cancelled)"),
    Route("POST", "/v1/messages/cancel", "cancel_many", True,
          "Cancel up to 1000 messages by id; one outcome per id"),
    Route("POST", "/v1/preview", "preview", True, "Encoding, parts and replacements of a text"),
    Route("GET", "/v1/account", "account", True, "The calling account's settings"),
    Route("PATCH", "/v1/account", "account_update", True,
          "Change the calling account's settings (default prefix, encoding, callbacks)"),
    Route("POST", "/v1/receipts/{connector}", "receipts", False,
          "Delivery receipts pushed by an HTTP carrier"),
    Route("GET", "/v1/inbound", "inbound", True,
          "The account's inbound (mobile-originated) messages, oldest first, cursor-paged "
          "(cursor, limit, since, to, from)"),
    Route("POST", "/v1/inbound/{connector}", "inbound_webhook", False,
          "Inbound (mobile-originated) messages pushed by an HTTP carrier"),
    Route("GET", "/v1/inbound/{connector}", "inbound_webhook_get", False,
          "An inbound message an HTTP carrier sends as query parameters (GET webhooks)"),
    # The account's opt-out (suppression) list (gateway/api/optouts.py, docs/optouts.md)
    Route("GET", "/v1/optouts", "optouts", True,
          "The account's opt-out list, in number order, cursor-paged (cursor, limit, source, "
          "since)"),
    Route("POST", "/v1/optouts", "optouts_bulk", True,
          "Opt a list of numbers out in one write (numbers, source)"),
    Route("PUT", "/v1/optouts/{number}", "optout_add", True,
          "Opt a number out of the account's messages (idempotent)"),
    Route("GET", "/v1/optouts/{number}", "optout_get", True, "Whether a number opted out"),
    Route("DELETE", "/v1/optouts/{number}", "optout_remove", True,
          "Take a number off the account's opt-out list"),
    # Campaigns and templates (gateway/api/campaigns.py, issue 8)
    Route("POST", "/v1/templates", "campaigns.template_put", True, "Create or replace a template"),
    Route("GET", "/v1/templates", "campaigns.template_list", True, "List templates"),
    Route("GET", "/v1/templates/{name}", "campaigns.template_get", True, "Read a template"),
    Route("DELETE", "/v1/templates/{name}", "campaigns.template_delete", True, "Delete a template"),
    Route("POST", "/v1/templates/{name}/preview", "campaigns.template_preview", True,
          "Render a template with sample fields: text, encoding, parts"),
    Route("POST", "/v1/campaigns", "campaigns.create", True,
          "Create a campaign (JSON, or CSV / JSON lines with the definition in the query)"),
    Route("GET", "/v1/campaigns", "campaigns.list_all", True, "List campaigns"),
    Route("GET", "/v1/campaigns/{id}", "campaigns.read", True,
          "A campaign with live statistics"),
    Route("POST", "/v1/campaigns/{id}/recipients", "campaigns.append", True,
          "Append recipients: CSV or JSON lines streamed (up to http.max_stream_bytes; "
          "?offset=N resumes a list without duplicates), or a JSON array"),
    Route("POST", "/v1/campaigns/{id}/start", "campaigns.start", True, "Start a draft campaign"),
    Route("POST", "/v1/campaigns/{id}/pause", "campaigns.pause", True, "Pause a campaign"),
    Route("POST", "/v1/campaigns/{id}/resume", "campaigns.resume", True, "Resume a campaign"),
    Route("POST", "/v1/campaigns/{id}/cancel", "campaigns.cancel", True, "Cancel a campaign"),
    Route("GET", "/v1/campaigns/{id}/messages.csv", "campaigns.export", True,
          "Every recipient row, its message and its events (CSV)"),
    # Status callbacks given up on (gateway/api/dead_letters.py): the calling account's only
    Route("GET", "/v1/callbacks/dead-letters", "dead_letters", True,
          "List the account's dead-lettered status callbacks"),
    Route("POST", "/v1/callbacks/dead-letters/replay", "dead_letters_replay", True,
          "Queue dead-lettered callbacks for delivery again (ids, or \"all\")"),
    Route("GET", "/healthz", "healthz", False, "Liveness"),
    Route("GET", "/readyz", "readyz", False, "Readiness: store recovered and a carrier bound"),
    Route("GET", "/metrics", "metrics", False, "Prometheus metrics"),
    Route("GET", "/openapi.json", "openapi", False, "This API's OpenAPI 3.1 document"),
)


class Api:
    """The v1 application.

    Args:
        gateway: ``gateway.app.Gateway`` (``accept``, ``ready``, ``store``).
        accounts: the account book (API keys).
        messages: the message handlers.
        receipt_parsers: connector name → ``parse(body, content_type)`` for POST /v1/receipts.
        receipt_tokens: connector name → shared secret the carrier sends as a bearer token.
        receipt_sink: ``(connector, receipts)``: where parsed receipts go; returns once they
            are durable (the carrier is answered 200 only then), raises LookupError when
            that connector is not running.
    """

    def __init__(self, gateway: Any, accounts: AccountBook, messages: MessageRoutes, *,
                 receipt_parsers: Mapping[str, ReceiptParser] | None = None,
                 receipt_tokens: Mapping[str, str] | None = None,
                 receipt_sink: ReceiptSink | None = None) -> None:
        self._gateway = gateway
        self.accounts = accounts
        self.idempotency: Any = None  # set by create_api (the purge task needs it)
        self._messages = messages
        self.account_settings = AccountRoutes(accounts, messages)  # GET, PATCH /v1/account
        self.receipts = ReceiptRoutes(receipt_parsers, receipt_tokens, receipt_sink)
        self._exact: dict[str, dict[str, Route]] = {}
        self._templated: list[tuple[str, str, dict[str, Route]]] = []
        self.campaigns: Any = None  # gateway.api.campaigns.CampaignRoutes (set by create_api)
        self.dead_letters: Any = None  # gateway.api.dead_letters.DeadLetterRoutes (create_api)
        self.inbound: InboundRoutes | None = None  # made on first use, over the gateway's store
        # POST /v1/inbound/{connector}: set by the serve command (gateway.cli); None: 404
        self.inbound_webhooks: InboundWebhooks | None = None
        self.optouts: OptOutRoutes | None = None  # made on first use, over the gateway's store
        self.cancels = CancelRoutes(gateway)  # POST /v1/messages/{id}/cancel, /v1/messages/cancel
        for r in ROUTES:
            if "{" in r.template:
                prefix, _, rest = r.template.partition("{")
                rest = rest.partition("}")[2]  # what follows the parameter, e.g. "/pause"
                entry = next((t for t in self._templated if t[:2] == (prefix, rest)), None)
                if entry is None:
                    entry = (prefix, rest, {})
                    self._templated.append(entry)
                entry[2][r.method] = r
            else:
                self._exact.setdefault(r.template, {})[r.method] = r
        self.operational = OperationalRoutes(gateway, ROUTES)  # healthz, readyz, metrics, openapi

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        if self.independent(request):
            # The hot route, without the route table, the handler lookup and three call layers
            # (every await on this path is resumed through each of them): what ``_submit``
            # does for a submission without an Idempotency-Key.
            routes = self._messages
            try:
                caller = self._authenticate(request)
                response, built = await routes.prepare(request, caller)
                await routes.accept(built)
            except Problem as problem:
                response = problem.response()
            metrics.observe("/v1/messages", response.status, time.perf_counter() - started)
            return response
        route, arg = self._match(request)
        name = route.template if route is not None else "unmatched"
        try:
            if route is None:
                raise arg
            account = self._authenticate(request) if route.auth else None
            if route.handler.startswith("campaigns."):
                response = await self._campaign_route(route.handler[10:], request, account, arg)
            else:
                response = await getattr(self, "_" + route.handler)(request, account, arg)
        except Problem as problem:
            response = problem.response()
        metrics.observe(name, response.status, time.perf_counter() - started)
        return response

    def streaming(self, method: bytes, target: bytes, headers: Mapping[str, str]) -> bool:
        """Whether the server should hand a request over with its body as a stream
        (``request.body_stream``, bounded by ``http.max_stream_bytes``): a campaign's
        recipient upload, and a campaign created with a CSV / JSON-lines body. Asked (with
        the raw method and target) when the headers are complete; every other request keeps
        a fully read body."""
        if method != b"POST" or not target.startswith(b"/v1/campaigns") or \
                self.campaigns is None:
            return False
        path = target.partition(b"?")[0]
        if path == b"/v1/campaigns":
            return self.campaigns.streams(headers.get("content-type", ""))  # type: ignore[no-any-return]
        return path.endswith(b"/recipients") and path.count(b"/") == 4

    def independent(self, request: Request) -> bool:
        """Whether ``request`` may be handled together with the pipelined requests around it
        (see :meth:`call_many`): a submission without an Idempotency-Key. Such a submission
        reads nothing another one writes, so committing a burst of them in one transaction,
        in order, is indistinguishable from committing them one after another."""
        return (request.method == "POST" and request.path == "/v1/messages"
                and "idempotency-key" not in request.headers)

    async def call_many(self, requests: list[Request]) -> list[Response]:
        """Answer :meth:`independent` requests (pipelined on one connection) in order, their
        messages committed together: each is authenticated and validated in turn, then the
        valid ones go into ONE accept (up to ``max_batch`` messages at a time; a burst is one
        commit and one write instead of one each). Each answer is what :meth:`__call__` gives
        that request alone; 202 only after its messages committed."""
        started = time.perf_counter()
        answers: list[Response | None] = []
        pending: list[tuple[int, Response, list[Any]]] = []
        total = 0
        routes = self._messages
        for request in requests:
            try:
                account = self._authenticate(request)
                resp, built = await routes.prepare(request, account)
            except Problem as problem:
                answers.append(problem.response())
                continue
            if pending and total + len(built) > routes.max_batch:
                await self._commit_prepared(pending, answers)
                pending, total = [], 0
            pending.append((len(answers), resp, built))
            answers.append(None)
            total += len(built)
        if pending:
            await self._commit_prepared(pending, answers)
        seconds = time.perf_counter() - started
        out = [a for a in answers if a is not None]
        for a in out:
            metrics.observe("/v1/messages", a.status, seconds)
        return out

    async def _commit_prepared(self, pending: list[tuple[int, Response, list[Any]]],
                               answers: list[Response | None]) -> None:
        built = [m for _, _, ms in pending for m in ms]
        try:
            await self._messages.accept(built)
        except Problem as problem:
            refused = problem.response()
            for i, _, _ in pending:
                answers[i] = refused
            return
        for i, resp, _ in pending:
            answers[i] = resp

    def _match(self, request: Request) -> tuple[Route | None, Any]:
        path = request.path
        methods = self._exact.get(path)
        arg = None
        if methods is None:
            for prefix, suffix, table in self._templated:
                middle = path[len(prefix):len(path) - len(suffix)]
                if path.startswith(prefix) and path.endswith(suffix) and middle and \
                        len(path) >= len(prefix) + len(suffix) and "/" not in middle:
                    methods, arg = table, middle
                    break
        if methods is None:
            return None, not_found(f"no resource at {path[:100]}")
        method = "GET" if request.method == "HEAD" else request.method
        route = methods.get(method)
        if route is None:
            allow = ", ".join(sorted(methods))
            return None, Problem(405, "method-not-allowed", "Method not allowed",
                                 f"{request.method} is not allowed here; use {allow}",
                                 headers=[("allow", allow)])
        return route, arg

    def _authenticate(self, request: Request) -> Account:
        header = request.header("authorization")
        if not header:
            raise unauthorized("an API key is required: Authorization: Bearer <key>")
        token = bearer_token(header)
        account = self.accounts.authenticate(token) if token else None
        if account is None:
            if token and self.accounts.expired(token):
                raise key_expired(self.accounts.inactivity_days)
            raise unauthorized("the API key is not valid")
        return account

    # -------------------------------------------------------------------------- handlers

    async def _submit(self, request: Request, account: Account, _: None) -> Response:
        return await self._messages.submit(request, account)

    async def _search(self, request: Request, account: Account, _: None) -> Response:
        return await self._messages.search(request, account)

    async def _read(self, request: Request, account: Account, msg_id: str) -> Response:
        return await self._messages.read(request, account, msg_id)

    async def _preview(self, request: Request, account: Account, _: None) -> Response:
        return await self._messages.preview(request, account)

    async def _cancel(self, request: Request, account: Account, msg_id: str) -> Response:
        return await self.cancels.one(request, account, msg_id)

    async def _cancel_many(self, request: Request, account: Account, _: None) -> Response:
        return await self.cancels.many(request, account)

    async def _account(self, request: Request, account: Account, _: None) -> Response:
        return await self.account_settings.read(request, account)

    async def _account_update(self, request: Request, account: Account, _: None) -> Response:
        return await self.account_settings.update(request, account)

    async def _receipts(self, request: Request, _: None, connector: str) -> Response:
        return await self.receipts.post(request, connector)

    async def _campaign_route(self, name: str, request: Request, account: Account | None,
                              arg: Any) -> Response:
        if self.campaigns is None:
            raise not_found("campaigns are not enabled on this server")
        if name in ("start", "pause", "resume", "cancel"):
            return await self.campaigns.act(request, account, arg, name)  # type: ignore[no-any-return]
        return await getattr(self.campaigns, name)(request, account, arg)  # type: ignore[no-any-return]

    async def _dead_letters(self, request: Request, account: Account, _: None) -> Response:
        if self.dead_letters is None:
            raise not_found("callback dead letters are not enabled on this server")
        return await self.dead_letters.list(request, account)  # type: ignore[no-any-return]

    async def _dead_letters_replay(self, request: Request, account: Account, _: None
                                   ) -> Response:
        if self.dead_letters is None:
            raise not_found("callback dead letters are not enabled on this server")
        return await self.dead_letters.replay(request, account)  # type: ignore[no-any-return]

    async def _inbound(self, request: Request, account: Account, _: None) -> Response:
        if self.inbound is None:
            self.inbound = InboundRoutes(self._gateway.store)
        return await self.inbound.list(request, account)

    async def _inbound_webhook(self, request: Request, _: None, connector: str) -> Response:
        if self.inbound_webhooks is None:
            raise not_found(f"no HTTP connector named {connector[:40]!r}")
        return await self.inbound_webhooks.post(request, connector)

    async def _inbound_webhook_get(self, request: Request, _: None, connector: str) -> Response:
        if self.inbound_webhooks is None:
            raise not_found(f"no HTTP connector named {connector[:40]!r}")
        return await self.inbound_webhooks.get(request, connector)

    def _optout_routes(self) -> OptOutRoutes:
        if self.optouts is None:
            from gateway.optouts import OptOutList

            self.optouts = OptOutRoutes(OptOutList(self._gateway.store))
        return self.optouts

    async def _optouts(self, request: Request, account: Account, _: None) -> Response:
        return await self._optout_routes().list(request, account)

    async def _optouts_bulk(self, request: Request, account: Account, _: None) -> Response:
        return await self._optout_routes().bulk(request, account)

    async def _optout_add(self, request: Request, account: Account, number: str) -> Response:
        return await self._optout_routes().put(request, account, number)

    async def _optout_get(self, request: Request, account: Account, number: str) -> Response:
        return await self._optout_routes().get(request, account, number)

    async def _optout_remove(self, request: Request, account: Account, number: str
                             ) -> Response:
        return await self._optout_routes().delete(request, account, number)

    async def _healthz(self, request: Request, _: None, __: None) -> Response:
        return await self.operational.healthz(request)

    async def _readyz(self, request: Request, _: None, __: None) -> Response:
        return await self.operational.readyz(request)

    async def _metrics(self, request: Request, _: None, __: None) -> Response:
        return await self.operational.metrics(request)

    async def _openapi(self, request: Request, _: None, __: None) -> Response:
        return await self.operational.openapi(request)


def key_expired(days: int) -> Problem:
    """401 for a key refused by ``[api] key_inactivity_days``: its own type, so that a client
    can tell "ask for a new key" from "wrong key". It names no account (a key that no longer
    authenticates learns nothing about whose it was)."""
    detail = (f"API key expired: not used for {days} days; create a new one with "
              "`septet accounts key <account>`")
    challenge = 'Bearer realm="septet", error="invalid_token", error_description="API key expired"'
    return Problem(401, "key-expired", "API key expired", detail,
                   [FieldError("header:Authorization", detail)], [("www-authenticate", challenge)])
