"""Status callbacks over HTTP: the sender, and where each event's callback goes.

:class:`HttpCallbackSender` satisfies ``actors.ports.CallbackSender`` structurally: it checks
the URL, builds the body, signs it and POSTs it, and turns every outcome into a
``CallbackResult``. :func:`endpoint_resolver` builds the notifier's ``endpoint_for`` from the
accounts' settings. The work itself lives in small modules whose names this one re-exports
(imports from ``gateway.callbacks`` keep working):

* ``gateway._callback_body``: the JSON body (one event as an object, a batch as an array),
  RFC 3339 times, ``webhook-id``; ``SMS_RECEIVED`` pushes of inbound messages;
* ``gateway._callback_signing``: Standard Webhooks ``sign`` / ``verify``, ``secret_bytes``;
* ``gateway._callback_transport``: :class:`KeepAliveTransport`, the keep-alive HTTP/1.1
  transport with hand-made framing (httpx's pooled client and h11 cost most of the CPU per
  callback; see bench/RESULTS_callbacks.md).

One event goes as a JSON object, a batch as a JSON array of the same objects (see
docs/callbacks.md)::

    {"type": "SMS_DELIVERED", "timestamp": "2026-11-25T22:00:01.250Z",
     "data": {"message_id": ..., "sequence": 2, "account": ..., "carrier_id": ...,
              "campaign": ..., "parts": 2, "error_code": "", "reason": "",
              "client_ref": ..., "occurred_at": 1795644001.25}}

An inbound (MO) message goes the same way as ``SMS_RECEIVED``; its outbox entry is a
``StatusEvent`` naming it (:func:`inbound_event`), and the sender reads the message itself from
the store when it builds the body (``received``, see :class:`HttpCallbackSender`)::

    {"type": "SMS_RECEIVED", "timestamp": "2026-11-25T22:00:01.250Z",
     "data": {"id": "0000000000000042", "account": ..., "from": "+351910000000",
              "to": "+351912000000", "text": ..., "received_at": "2026-11-25T22:00:01.250Z",
              "connector": ..., "encoding": "gsm7", "parts": 1}}

Headers (https://www.standardwebhooks.com/): ``webhook-id`` (stable per (message, sequence), so
a receiver can drop repeats), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature`` = ``"v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))``.

Every request re-checks the URL against SSRF rules with a fresh resolution
(``gateway.ssrf.resolve_callback_url``) and connects to the checked address itself (Host header
and TLS SNI keep the name), so a DNS answer changed after submit cannot redirect it. Redirects
are not followed, proxies from the environment are not used, and the response body is read to
64 KiB at most. A name that does not resolve at send time (resolver down or slow, NXDOMAIN, no
address) is a transient failure, retried; an address the SSRF rules refuse is permanent.
Deadlines are the caller's (``trio.move_on_after`` around :meth:`HttpCallbackSender.send`).
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx
import trio

from actors.messages import StatusEvent
from actors.ports import CallbackResult

# Re-exported: the names in __all__, and the private ones tests and bench/callbacks.py import.
from gateway._callback_body import (
    EVENTS,
    RECEIVED,
    InboundGone,
    Received,
    _rfc3339,  # noqa: F401
    _rfc3339_slow,  # noqa: F401
    build_body,
    build_body_slow,
    event_payload,
    inbound_event,
    received_payload,
    webhook_id,
)
from gateway._callback_signing import SECRET_PREFIX, secret_bytes, sign, verify
from gateway._callback_transport import (
    MAX_RESPONSE,
    KeepAliveTransport,
    Origin,
    _Connection,  # noqa: F401
    _request_head,
)
from gateway.ssrf import (
    AsyncResolver,
    CallbackHostUnresolved,
    CallbackUrlRefused,
    DnsFailure,
    IPAddress,
    ParsedUrl,
    Resolved,
    resolve_callback_url,
    trio_resolver,
)

__all__ = [
    "EVENTS",
    "MAX_RESPONSE",
    "RECEIVED",
    "SECRET_PREFIX",
    "USER_AGENT",
    "HttpCallbackSender",
    "InboundGone",
    "KeepAliveTransport",
    "Origin",
    "Received",
    "build_body",
    "build_body_slow",
    "endpoint_resolver",
    "event_payload",
    "inbound_event",
    "open_callback_sender",
    "received_payload",
    "secret_bytes",
    "sign",
    "verify",
    "webhook_id",
]

USER_AGENT: Final = "Septet-Webhooks/1"


def endpoint_resolver(
    account_settings: Callable[[str], tuple[str, str] | tuple[str, str, str] | None],
    *,
    version: Callable[[], int] = lambda: 0,
    ttl: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[StatusEvent], tuple[str, bytes] | None]:
    """Build the notifier's ``endpoint_for`` from ``account -> (default_url, secret) | None``.

    The event's own ``callback_url`` wins over the account default; no URL means no callback.
    ``account_settings`` may give a third item, the account's ``inbound_url``: where its
    ``SMS_RECEIVED`` pushes go (the default URL when empty).

    The notifier asks once per event at enqueue and once more when it reads the event back to
    send it, so each account's ``(default_url, secret as bytes)`` is cached: all of it is
    dropped as soon as ``version()`` changes (``AccountBook.version``, bumped by every update in
    this process) and each account's entry is read again after ``ttl`` seconds (an update made
    by another process, e.g. ``septet accounts update``, shows within that time).
    """
    # account -> (expires, secret, default target, inbound target); targets (url, secret) or None
    cache: dict[str, tuple[float, bytes, tuple[str, bytes] | None, tuple[str, bytes] | None]] = {}
    seen = [version()]

    def load(account: str, now: float) -> tuple[float, bytes, tuple[str, bytes] | None,
                                                   tuple[str, bytes] | None]:
        found = account_settings(account)  # an unknown account is cached as "no default URL"
        if len(cache) >= 10_000:
            cache.clear()
        url, secret, *mo_url = found if found is not None else ("", "")
        key = secret_bytes(secret)
        inbound = "".join(mo_url) or url
        entry = cache[account] = (now + ttl, key, (url, key) if url else None,
                                  (inbound, key) if inbound else None)
        return entry

    def endpoint_for(event: StatusEvent) -> tuple[str, bytes] | None:
        now, current = clock(), version()
        if current != seen[0]:
            cache.clear()
            seen[0] = current
        hit = cache.get(event.account)
        if hit is None or hit[0] <= now:
            hit = load(event.account, now)
        if event.event == RECEIVED:
            return hit[3]
        if event.callback_url:
            return (event.callback_url, hit[1])
        return hit[2]

    return endpoint_for


# -------------------------------------------------------------------------------- sender


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0  # an HTTP date: ignore, our own back-off applies


class HttpCallbackSender:
    """Signs and POSTs callbacks through an httpx transport.

    Args:
        transport: the httpx transport requests go through; by default a
            :class:`KeepAliveTransport` (plain keep-alive HTTP/1.1, an order of magnitude
            cheaper per request than httpx's pooled client). Transports never follow redirects
            nor read proxy settings from the environment.
        allow_loopback, allow_private: SSRF exceptions (the dev profile allows loopback).
        resolver: async ``(host, port) -> [address, ...]``; its answers are checked at every
            send and kept for ``dns_ttl`` seconds (a lookup per callback would cost a worker
            thread hop each; the address dialled is always one checked by this send).
        dns_ttl: how long a host name's (non-empty) answer is reused; 0 resolves every time.
            Failures are never kept.
        dns_timeout: seconds a lookup may take before the send fails with a DNS timeout.
            A name that does not resolve now (resolver failure or timeout, NXDOMAIN, no
            address) is a transient failure (``dns: ...``), retried by the notifier like an
            HTTP 503; a URL the SSRF rules refuse is permanent.
        clock: Unix time for ``webhook-timestamp``.
        batched: send a JSON array even for a single event (receivers of batched mode).
        received: reads the stored inbound message an ``SMS_RECEIVED`` event names (the
            ``data`` of its body); without it such events are refused as permanent failures.
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_loopback: bool = False,
        allow_private: bool = False,
        resolver: AsyncResolver = trio_resolver,
        clock: Callable[[], float] = time.time,
        batched: bool = False,
        received: Received | None = None,
        dns_ttl: float = 10.0,
        dns_timeout: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._received = received
        self._transport = transport or KeepAliveTransport()
        self._allow_loopback, self._allow_private = allow_loopback, allow_private
        self._clock, self._batched = clock, batched
        timed = _timed_resolver(resolver, dns_timeout)
        self._resolver = _CachedResolver(timed, dns_ttl, monotonic) if dns_ttl > 0 else timed

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def send(self, url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        """POST ``events`` to ``url``. Never raises for a per-request outcome."""
        try:
            target = await resolve_callback_url(
                url,
                allow_loopback=self._allow_loopback,
                allow_private=self._allow_private,
                resolver=self._resolver,
            )
        except CallbackHostUnresolved as exc:  # DNS down or wrong for now: retried
            return _DNS_RESULTS[exc.failure]
        except CallbackUrlRefused as exc:
            return CallbackResult(ok=False, error=f"url refused: {exc.reason}", permanent=True)
        try:
            body = build_body(events, batched=True if self._batched else None,
                              received=self._received)
        except InboundGone:
            return CallbackResult(ok=False, error="inbound message no longer stored",
                                  permanent=True)
        wid, timestamp = webhook_id(events), int(self._clock())
        signature = sign(secret, wid, timestamp, body)
        try:
            if isinstance(self._transport, KeepAliveTransport):  # fast path, same bytes
                origin, head = _request_start(target.parsed, target.address)
                status, answer, _body = await self._transport.round_trip(origin, b"".join((
                    head, b"content-length: %d\r\nwebhook-id: %s\r\nwebhook-timestamp: %d\r\n"
                    b"webhook-signature: %s\r\n\r\n" % (len(body), wid.encode(), timestamp,
                                                           signature.encode()), body)))
                if 200 <= status < 300:
                    return _OK if status == 200 else CallbackResult(ok=True, status=status)
                return _result(status, next((v.decode("latin-1") for k, v in answer
                                             if k.lower() == b"retry-after"), None))
            headers = {
                "host": target.host_header,
                "content-type": "application/json",
                "content-length": str(len(body)),
                "user-agent": USER_AGENT,
                "webhook-id": wid,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature,
            }
            authorization = _authorization(target.parsed.url)
            if authorization:
                headers["authorization"] = authorization
            extensions = {"sni_hostname": target.parsed.host} if target.parsed.address is None else {}
            request = httpx.Request("POST", _url(target.connect_url), headers=headers,
                                    content=body, extensions=extensions)
            response = await self._transport.handle_async_request(request)
            await response.aclose()
        except httpx.HTTPError as exc:
            return CallbackResult(ok=False, error=type(exc).__name__)
        return _result(response.status_code, response.headers.get("retry-after"))


def _authorization(url: str) -> str:
    """``Basic`` credentials of a URL's userinfo, or ""."""
    split = urlsplit(url)
    if not split.username:
        return ""
    user = f"{unquote(split.username)}:{unquote(split.password or '')}"
    return "Basic " + base64.b64encode(user.encode()).decode()


@functools.lru_cache(maxsize=4096)
def _request_start(parsed: ParsedUrl, address: IPAddress) -> tuple[Origin, bytes]:
    """Where to dial and the part of the request head that is the same for every callback to
    a checked URL: request line, host, content-type, user-agent and authorization."""
    target = Resolved(parsed, address)
    fields = [(b"host", target.host_header.encode()), (b"content-type", b"application/json"),
              (b"user-agent", USER_AGENT.encode())]
    authorization = _authorization(parsed.url)
    if authorization:
        fields.append((b"authorization", authorization.encode()))
    head = _request_head(b"POST", _url(target.connect_url).raw_path, fields)[:-2]  # open-ended
    return (parsed.scheme, str(address), parsed.port, parsed.host), head


class _CachedResolver:
    """An :data:`AsyncResolver` keeping each non-empty answer for ``ttl`` seconds (at most
    ``limit`` names; all forgotten when full). Failures are not kept: the next send asks again."""

    def __init__(self, resolver: AsyncResolver, ttl: float, clock: Callable[[], float],
                 limit: int = 4096) -> None:
        self._resolver, self._ttl, self._clock, self._limit = resolver, ttl, clock, limit
        self._answers: dict[tuple[str, int], tuple[float, Sequence[str]]] = {}

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        key = (host, port)
        hit = self._answers.get(key)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        answers = await self._resolver(host, port)
        if answers:
            if len(self._answers) >= self._limit:
                self._answers.clear()
            self._answers[key] = (now + self._ttl, answers)
        return answers


def _timed_resolver(resolver: AsyncResolver, timeout: float) -> AsyncResolver:
    """``resolver`` with a deadline: no answer within ``timeout`` seconds raises TimeoutError
    (which ``resolve_callback_url`` reads as a transient DNS failure)."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        with trio.move_on_after(timeout):
            return await resolver(host, port)
        raise TimeoutError(f"no DNS answer within {timeout} s")

    return resolve


_DNS_ERRORS: Final[dict[DnsFailure, str]] = {
    "temporary": "dns: temporary failure resolving host",
    "timeout": "dns: timeout resolving host",
    "not_found": "dns: host not found (NXDOMAIN)",
    "no_answer": "dns: no address for host",
}
_DNS_RESULTS: Final = {kind: CallbackResult(ok=False, error=e) for kind, e in _DNS_ERRORS.items()}
"""The transient result of each kind of DNS failure (``permanent`` False: retried)."""


@functools.lru_cache(maxsize=4096)
def _url(text: str) -> httpx.URL:
    """Parsed once per target: httpx's URL parsing is a large share of a request's cost."""
    return httpx.URL(text)


_OK: Final = CallbackResult(ok=True, status=200)  # frozen: one for every 200


def _result(status: int, retry_after: str | None) -> CallbackResult:
    if 200 <= status < 300:
        return CallbackResult(ok=True, status=status)
    return CallbackResult(
        ok=False,
        status=status,
        error=f"http {status}",
        permanent=status == 410,  # Gone: the receiver says stop
        retry_after=_retry_after(retry_after),
    )


@asynccontextmanager
async def open_callback_sender(**kwargs: Any) -> AsyncIterator[HttpCallbackSender]:
    """An :class:`HttpCallbackSender` closed on exit (arguments as its constructor)."""
    sender = HttpCallbackSender(**kwargs)
    try:
        yield sender
    finally:
        await sender.aclose()
