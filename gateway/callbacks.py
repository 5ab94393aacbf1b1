"""Status callbacks over HTTP: the JSON body, the Standard Webhooks signature, the sender.

Satisfies ``actors.ports.CallbackSender`` structurally. One event goes as a JSON object, a batch
as a JSON array of the same objects (see docs/callbacks.md)::

    {"type": "SMS_DELIVERED", "timestamp": "2026-11-25T22:00:01.250Z",
     "data": {"message_id": ..., "sequence": 2, "account": ..., "carrier_id": ...,
              "campaign": ..., "parts": 2, "error_code": "", "reason": "",
              "client_ref": ..., "occurred_at": 1795644001.25}}

Headers (https://www.standardwebhooks.com/): ``webhook-id`` (stable per (message, sequence), so
a receiver can drop repeats), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature`` = ``"v1," + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))``.

Every request re-checks the URL against SSRF rules with a fresh resolution
(``gateway.ssrf.resolve_callback_url``) and connects to the checked address itself (Host header
and TLS SNI keep the name), so a DNS answer changed after submit cannot redirect it. Redirects
are not followed, proxies from the environment are not used, and the response body is read to
64 KiB at most. Deadlines are the caller's (``trio.move_on_after`` around :meth:`send`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx

from actors.messages import StatusEvent
from actors.ports import CallbackResult
from gateway.ssrf import AsyncResolver, CallbackUrlRefused, resolve_callback_url, trio_resolver

EVENTS: Final = frozenset({"SMS_SENT", "SMS_NOT_SENT", "SMS_DELIVERED", "SMS_NOT_DELIVERED"})
MAX_RESPONSE: Final = 64 * 1024
USER_AGENT: Final = "Septet-Webhooks/1"
SECRET_PREFIX: Final = "whsec_"


# ------------------------------------------------------------------------------- payload


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(event: StatusEvent) -> dict[str, Any]:
    """The JSON object of one status event (Standard Webhooks ``type``/``timestamp``/``data``)."""
    return {
        "type": event.event,
        "timestamp": _rfc3339(event.at),
        "data": {
            "message_id": event.msg_id,
            "sequence": event.seq,
            "account": event.account,
            "carrier_id": event.carrier_id,
            "campaign": event.campaign,
            "parts": event.parts,
            "error_code": event.error_code,
            "reason": event.reason,
            "client_ref": event.client_ref,
            "occurred_at": event.at,
        },
    }


def build_body(events: Sequence[StatusEvent], *, batched: bool | None = None) -> bytes:
    """One event as an object, several (or ``batched=True``) as an array. Compact UTF-8 JSON."""
    as_array = len(events) != 1 if batched is None else batched
    payload: Any = [event_payload(e) for e in events] if as_array else event_payload(events[0])
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_id(events: Sequence[StatusEvent]) -> str:
    """Stable across retries: ``msg_<msg_id>_<seq>`` for one event, a digest for a batch."""
    if len(events) == 1:
        return f"msg_{events[0].msg_id}_{events[0].seq}"
    digest = hashlib.sha256("\n".join(f"{e.msg_id}:{e.seq}" for e in events).encode())
    return "batch_" + digest.hexdigest()[:32]


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(secret, signed, "sha256")).decode()


def verify(secret: bytes, headers: dict[str, str], body: bytes, *, now: float, tolerance: float = 300) -> bool:
    """Receiver-side check (used by tests and shown in the docs): signature and timestamp."""
    try:
        timestamp = int(headers["webhook-timestamp"])
        expected = sign(secret, headers["webhook-id"], timestamp, body).split(",", 1)[1]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    given = [s.split(",", 1)[1] for s in headers.get("webhook-signature", "").split() if "," in s]
    return any(hmac.compare_digest(expected, g) for g in given)


def secret_bytes(secret: str) -> bytes:
    """An account's callback secret as HMAC key: ``whsec_<base64>`` decoded, else its UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except ValueError:
            pass
    return secret.encode()


def endpoint_resolver(
    account_settings: Callable[[str], tuple[str, str] | None],
) -> Callable[[StatusEvent], tuple[str, bytes] | None]:
    """Build the notifier's ``endpoint_for`` from ``account -> (default_url, secret) | None``.

    The event's own ``callback_url`` wins over the account default; no URL means no callback.
    """

    def endpoint_for(event: StatusEvent) -> tuple[str, bytes] | None:
        settings = account_settings(event.account)
        default_url, secret = settings if settings is not None else ("", "")
        url = event.callback_url or default_url
        return (url, secret_bytes(secret)) if url else None

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
    """Signs and POSTs callbacks with one shared ``httpx.AsyncClient``.

    Args:
        client: an AsyncClient (tests may pass one); by default one is made that follows no
            redirects, ignores proxy environment variables and has no timeouts of its own.
        allow_loopback, allow_private: SSRF exceptions (the dev profile allows loopback).
        resolver: async ``(host, port) -> [address, ...]`` used at every send.
        clock: Unix time for ``webhook-timestamp``.
        batched: send a JSON array even for a single event (receivers of batched mode).
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        allow_loopback: bool = False,
        allow_private: bool = False,
        resolver: AsyncResolver = trio_resolver,
        clock: Callable[[], float] = time.time,
        batched: bool = False,
        max_connections: int = 256,
    ) -> None:
        self._client = client or new_client(max_connections=max_connections)
        self._allow_loopback, self._allow_private = allow_loopback, allow_private
        self._resolver, self._clock, self._batched = resolver, clock, batched

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        """POST ``events`` to ``url``. Never raises for a per-request outcome."""
        try:
            target = await resolve_callback_url(
                url,
                allow_loopback=self._allow_loopback,
                allow_private=self._allow_private,
                resolver=self._resolver,
            )
        except CallbackUrlRefused as exc:
            return CallbackResult(ok=False, error=f"url refused: {exc.reason}", permanent=True)
        body = build_body(events, batched=True if self._batched else None)
        wid, timestamp = webhook_id(events), int(self._clock())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host_header,
            "webhook-id": wid,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, wid, timestamp, body),
        }
        split = urlsplit(target.parsed.url)
        auth = (unquote(split.username or ""), unquote(split.password or "")) if split.username else None
        extensions = {"sni_hostname": target.parsed.host} if target.parsed.address is None else {}
        try:
            return await self._post(target.connect_url, body, headers, auth, extensions)
        except httpx.HTTPError as exc:
            return CallbackResult(ok=False, error=f"{type(exc).__name__}")

    async def _post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
        extensions: dict[str, Any],
    ) -> CallbackResult:
        request = self._client.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions
        )
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.headers["authorization"] = f"Basic {token}"
        response = await self._client.send(request, stream=True)
        try:
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_RESPONSE:
                    break  # closing an unread response drops the connection: fine
        finally:
            await response.aclose()
        status = response.status_code
        if 200 <= status < 300:
            return CallbackResult(ok=True, status=status)
        return CallbackResult(
            ok=False,
            status=status,
            error=f"http {status}",
            permanent=status == 410,  # Gone: the receiver says stop
            retry_after=_retry_after(response.headers.get("retry-after")),
        )


def new_client(*, max_connections: int = 256, verify: Any = True) -> httpx.AsyncClient:
    """The AsyncClient the sender uses: no redirects, no env proxies, no built-in timeouts."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=None,
        verify=verify,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


@asynccontextmanager
async def open_callback_sender(**kwargs: Any) -> AsyncIterator[HttpCallbackSender]:
    """An :class:`HttpCallbackSender` closed on exit (arguments as its constructor)."""
    sender = HttpCallbackSender(**kwargs)
    try:
        yield sender
    finally:
        await sender.aclose()
