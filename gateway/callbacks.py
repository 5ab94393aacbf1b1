"""Status callbacks over HTTP: the JSON body, the Standard Webhooks signature, the sender.

Satisfies ``actors.ports.CallbackSender`` structurally. One event goes as a JSON object, a batch
as a JSON array of the same objects (see docs/callbacks.md)::

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
address) is a transient failure, retried; an address the SSRF rules refuse is permanent. Deadlines are the caller's (``trio.move_on_after`` around :meth:`send`).

Requests go through an httpx transport; the default, :class:`KeepAliveTransport`, keeps
HTTP/1.1 connections per origin and frames requests and responses itself (httpx's pooled client
and h11 cost most of the CPU per callback; see bench/RESULTS_callbacks.md).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx
import trio

from actors.messages import MsgId, StatusEvent
from actors.ports import CallbackResult
from gateway.ssrf import (
    DEFAULT_PORTS,
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

EVENTS: Final = frozenset({"SMS_SENT", "SMS_NOT_SENT", "SMS_DELIVERED", "SMS_NOT_DELIVERED"})
RECEIVED: Final = "SMS_RECEIVED"
"""The event of an inbound (MO) message pushed to its account."""
MAX_RESPONSE: Final = 64 * 1024
USER_AGENT: Final = "Septet-Webhooks/1"
SECRET_PREFIX: Final = "whsec_"


# ------------------------------------------------------------------------------- payload


def _rfc3339_slow(t: float) -> str:
    """The reference form (datetime): what :func:`_rfc3339` must equal for every ``t``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SECOND: list[Any] = [None, ""]  # [whole second, "YYYY-MM-DDTHH:MM:SS"] of the last call


def _rfc3339(t: float) -> str:
    """``2026-11-25T22:00:01.250Z``: as :func:`_rfc3339_slow`, with the date and time of the
    last whole second kept (a batch's events share it), so most calls only format the ms."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)  # datetime.fromtimestamp rounds to µs half-even, as round() does
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1, us + 1_000_000
    if whole != _SECOND[0]:
        if not 0 <= whole < 253402300800:  # outside years 1970..9999: let datetime say
            return _rfc3339_slow(t)
        _SECOND[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _SECOND[0] = whole
    return f"{_SECOND[1]}.{us // 1000:03d}Z"


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


def inbound_event(msg_id: str, account: str, received_at: float, connector: str) -> StatusEvent:
    """The outbox entry of an inbound message's push. ``msg_id`` is the outbox's id for it
    (``gateway.callback_outbox.inbound_msg_id``); the body is read from the store at send."""
    return StatusEvent(MsgId(msg_id), account, RECEIVED, 1, received_at, carrier_id=connector)


Received = Callable[[StatusEvent], "dict[str, Any] | None"]
"""``SMS_RECEIVED`` event -> the ``data`` object of its body (the stored message), or None
when that message is no longer stored."""


class InboundGone(LookupError):
    """The inbound message an ``SMS_RECEIVED`` entry names is not stored (any more)."""


def received_payload(event: StatusEvent, data: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of an inbound message's push (``data`` as ``received`` gives it)."""
    return {"type": RECEIVED, "timestamp": _rfc3339(event.at), "data": data}


def _received_json(e: StatusEvent, received: Received | None) -> str:
    data = received(e) if received is not None else None
    if data is None:
        raise InboundGone(e.msg_id)
    return json.dumps(received_payload(e, data), separators=(",", ":"), ensure_ascii=False)


def build_body_slow(events: Sequence[StatusEvent], *, batched: bool | None = None) -> bytes:
    """The reference form (``json.dumps`` of :func:`event_payload`); :func:`build_body` equals it."""
    as_array = len(events) != 1 if batched is None else batched
    payload: Any = [event_payload(e) for e in events] if as_array else event_payload(events[0])
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


_str = encode_basestring  # the C string escaper json.dumps(ensure_ascii=False) uses


def _event_json(e: StatusEvent) -> str:
    """One event's object, byte for byte what ``json.dumps(event_payload(e), separators=(",",
    ":"), ensure_ascii=False)`` writes, without building the dicts (a third of the cost)."""
    if type(e.seq) is not int or type(e.parts) is not int or not (
            type(e.at) is int or (type(e.at) is float and math.isfinite(e.at))):
        return _event_json_slow(e)  # bools, NaN and the like: json's own spelling
    try:
        return _fast_event_json(e)
    except TypeError:  # a field that is not a str
        return _event_json_slow(e)


def _event_json_slow(e: StatusEvent) -> str:
    return json.dumps(event_payload(e), separators=(",", ":"), ensure_ascii=False)


def _fast_event_json(e: StatusEvent) -> str:
    return (f'{{"type":{_str(e.event)},"timestamp":"{_rfc3339(e.at)}","data":{{"message_id":'
            f'{_str(e.msg_id)},"sequence":{e.seq!r},"account":{_str(e.account)},"carrier_id":'
            f'{_str(e.carrier_id)},"campaign":{_str(e.campaign)},"parts":{e.parts!r},'
            f'"error_code":{_str(e.error_code)},"reason":{_str(e.reason)},"client_ref":'
            f'{_str(e.client_ref)},"occurred_at":{e.at!r}}}}}')


def build_body(events: Sequence[StatusEvent], *, batched: bool | None = None,
               received: Received | None = None) -> bytes:
    """One event as an object, several (or ``batched=True``) as an array. Compact UTF-8 JSON.

    Status events are written field by field (equal to :func:`build_body_slow`, which a
    property test checks); ``SMS_RECEIVED`` ones carry what ``received`` reads.

    Raises:
        InboundGone: an ``SMS_RECEIVED`` event whose message ``received`` does not find.
    """
    as_array = len(events) != 1 if batched is None else batched

    def one(e: StatusEvent) -> str:
        return _received_json(e, received) if e.event == RECEIVED else _event_json(e)

    if not as_array:
        return one(events[0]).encode()
    return ("[" + ",".join(map(one, events)) + "]").encode()


def webhook_id(events: Sequence[StatusEvent]) -> str:
    """Stable across retries: ``msg_<msg_id>_<seq>`` for one event, a digest for a batch."""
    if len(events) == 1:
        return f"msg_{events[0].msg_id}_{events[0].seq}"
    digest = hashlib.sha256("\n".join([f"{e.msg_id}:{e.seq}" for e in events]).encode())
    return "batch_" + digest.hexdigest()[:32]


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    inner, outer = _hmac_pads(secret)
    inner = inner.copy()
    inner.update(f"{msg_id}.{timestamp}.".encode())
    inner.update(body)
    outer = outer.copy()
    outer.update(inner.digest())
    return "v1," + base64.b64encode(outer.digest()).decode()


@functools.lru_cache(maxsize=1024)
def _hmac_pads(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the HMAC key's inner and outer pads (RFC 2104), kept per secret:
    copying them is half the cost of ``hmac.digest``, which sets the key up on every call
    (OpenSSL 3). ``sign`` equals ``hmac.digest(secret, ..., "sha256")`` (a test checks)."""
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in key)),
            hashlib.sha256(bytes(b ^ 0x5C for b in key)))


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


# --------------------------------------------------------------------------- transport


Origin = tuple[str, str, int, str]
"""(scheme, host or address to dial, port, TLS server name)."""


def _request_head(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Request line and header section. The target and values were checked (no whitespace or
    control characters) by gateway.ssrf or built here, so they are written as they are."""
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    lines += [b"%s: %s\r\n" % (k, v) for k, v in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


class _Stale(Exception):
    """A connection failed before a response arrived (internal to the transport)."""


class _ProtocolError(Exception):
    """The receiver's answer is not HTTP/1.x as RFC 9112 frames it."""


MAX_HEAD: Final = 64 * 1024


class _Connection:
    """One HTTP/1.1 connection: a trio stream, a read buffer and RFC 9112 response framing.

    Hand-written rather than h11: requests are built by us from checked parts, and parsing a
    response (status line, headers, Content-Length or chunked body) is small; h11's event
    machinery was a quarter of the sender's CPU time per callback.
    """

    def __init__(self, stream: trio.abc.Stream, raw: socket.socket | None = None) -> None:
        self.stream = stream
        self.raw = raw  # the plain TCP socket under ``stream``, when there is no TLS
        self.buffer = bytearray()
        self.reusable = False

    async def exchange(self, data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Send one request and read its final answer.

        On a plain TCP connection the request goes out with one ``send`` and an answer that
        arrives in one piece (a callback's answer does) is read with one readiness wait and one
        ``recv``, without trio's stream layers and their extra scheduler round trips; anything
        else (a partial write, 1xx, chunked, a body still coming) takes the general path.
        """
        sock = self.raw
        if sock is None:
            await self.stream.send_all(data)
            return await self.read_response()
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await self.stream.send_all(memoryview(data)[sent:])
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise _ProtocolError("connection closed")
            self.buffer += chunk
            answer = self._whole_answer()
            if answer is not None:
                return answer
            if self.buffer.find(b"\r\n\r\n") >= 0:
                return await self.read_response()

    def _whole_answer(self) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The buffered answer when it is complete and framed by Content-Length (or has no
        body), consumed from the buffer; None (buffer untouched) otherwise."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        version, status, headers = _parse_head(bytes(buffer[:end]))
        if status < 200:
            return None
        length, keep = None, version == b"HTTP/1.1"
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length = _content_length(value)
            elif name == b"transfer-encoding":
                return None
            elif name == b"connection":
                keep = keep and value.lower() != b"close"
        if status in (204, 304):
            length = 0
        elif length is None or length > MAX_RESPONSE:
            return None
        start = end + 4
        if len(buffer) < start + length:
            return None
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self.reusable = keep and not buffer
        return status, headers, body

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise _ProtocolError("connection closed")
        self.buffer += data

    async def _until(self, marker: bytes, limit: int) -> bytes:
        while (i := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise _ProtocolError("header section too large")
            await self._fill()
        out = bytes(self.buffer[:i])
        del self.buffer[: i + len(marker)]
        return out

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    async def read_response(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body (at most MAX_RESPONSE) of the next final response."""
        self.reusable = False
        while True:
            version, status, headers = _parse_head(await self._until(b"\r\n\r\n", MAX_HEAD))
            if not 100 <= status < 200:
                break  # 1xx (100 Continue, 103 Early Hints) precede the real answer
        fields = {k.lower(): v for k, v in headers}
        keep = version == b"HTTP/1.1" and fields.get(b"connection", b"").lower() != b"close"
        if status in (204, 304):
            body, complete = b"", True
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            body, complete = await self._chunked()
        elif b"content-length" in fields:
            length = _content_length(fields[b"content-length"])
            complete = length <= MAX_RESPONSE
            body = await self._exactly(min(length, MAX_RESPONSE))
        else:
            body, complete, keep = b"", True, False  # delimited by close: do not wait for it
        self.reusable = keep and complete and not self.buffer
        return status, headers, body

    async def _chunked(self) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            line = await self._until(b"\r\n", MAX_HEAD)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _ProtocolError("bad chunk size") from exc
            if size == 0:
                while await self._until(b"\r\n", MAX_HEAD):
                    pass  # trailer fields, ignored
                return bytes(body), True
            if len(body) + size > MAX_RESPONSE:
                return bytes(body), False
            body += await self._exactly(size)
            await self._exactly(2)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(self.stream)


def _parse_head(head: bytes) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _ProtocolError("bad status line")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _ProtocolError("bad header line")
        headers.append((name, value.strip()))
    return parts[0], int(parts[1]), headers


def _content_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise _ProtocolError("bad content-length")
    return int(value)


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """A lean HTTP/1.1 transport: keep-alive connections per origin, TLS with SNI.

    Made for many small POSTs to few receivers. It never follows redirects, never uses a proxy,
    reads at most 64 KiB of a response body (a bigger one closes the connection) and has no
    timeouts of its own (the caller cancels; a cancelled request's connection is closed).
    Socket and protocol errors become ``httpx.ConnectError`` / ``httpx.ReadError``.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_idle: int = 256) -> None:
        self._ssl = ssl_context or ssl.create_default_context()
        self._idle: dict[Origin, list[_Connection]] = {}
        self._max_idle = max_idle

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        sni = str(request.extensions.get("sni_hostname") or url.host)
        origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme], sni)
        head = _request_head(request.method.encode(), url.raw_path, request.headers.raw)
        try:
            status, headers, body = await self.round_trip(origin, head + request.content)
        except httpx.ReadError as exc:
            raise httpx.ReadError(str(exc), request=request) from exc
        return httpx.Response(status, headers=headers, content=body, request=request)

    async def round_trip(
        self, origin: Origin, data: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Write one raw request on a kept-alive (or new) connection to ``origin``; read the answer.

        The sender's fast path (it skips building httpx Request/Response objects).

        Raises:
            httpx.ConnectError: could not connect (or TLS failed).
            httpx.ReadError: the connection broke before a complete answer.
        """
        idle = self._idle.setdefault(origin, [])
        if idle:
            try:
                return await self._attempt(idle.pop(), origin, data)
            except _Stale:
                pass  # the receiver had closed this kept-alive connection: one fresh try
        try:
            return await self._attempt(await self._connect(origin), origin, data)
        except _Stale as exc:
            raise httpx.ReadError(str(exc.__cause__) or "connection lost") from exc

    async def _attempt(
        self, conn: _Connection, origin: Origin, data: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            result = await conn.exchange(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, _ProtocolError) as exc:
            await conn.aclose()
            raise _Stale from exc
        except BaseException:
            await conn.aclose()  # cancelled mid-request: the connection's state is unknown
            raise
        self._park(origin, conn)
        return result

    async def _connect(self, origin: Origin) -> _Connection:
        scheme, host, port, sni = origin
        if scheme == "http" and _ip_family(host):
            return await self._connect_plain(host, port)
        try:
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if scheme == "https":
                tls = trio.SSLStream(stream, self._ssl, server_hostname=sni, https_compatible=True)
                await tls.do_handshake()
                stream = tls
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(stream)

    async def _connect_plain(self, host: str, port: int) -> _Connection:
        """A plain TCP connection to an IP address, keeping the socket for the fast path."""
        sock = socket.socket(_ip_family(host), socket.SOCK_STREAM)
        tsock = trio.socket.from_stdlib_socket(sock)
        try:
            await tsock.connect((host, port))
        except OSError as exc:
            tsock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            tsock.close()
            raise
        return _Connection(trio.SocketStream(tsock), raw=sock)  # SocketStream sets TCP_NODELAY

    def _park(self, origin: Origin, conn: _Connection) -> None:
        idle = self._idle[origin]
        if conn.reusable and len(idle) < self._max_idle:
            idle.append(conn)
        else:
            _close_nowait(conn)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                await conn.aclose()
        self._idle.clear()


@functools.lru_cache(maxsize=4096)
def _ip_family(host: str) -> int:
    """``AF_INET`` / ``AF_INET6`` for an IP literal, 0 for a name."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return 0


def _close_nowait(conn: _Connection) -> None:
    stream = conn.stream
    # A plain socket closes at once; a TLS stream without close_notify is fine for a dropped
    # keep-alive connection (the peer sees EOF).
    inner = getattr(stream, "transport_stream", stream)
    sock = getattr(inner, "socket", None)
    if sock is not None:
        sock.close()


@asynccontextmanager
async def open_callback_sender(**kwargs: Any) -> AsyncIterator[HttpCallbackSender]:
    """An :class:`HttpCallbackSender` closed on exit (arguments as its constructor)."""
    sender = HttpCallbackSender(**kwargs)
    try:
        yield sender
    finally:
        await sender.aclose()
