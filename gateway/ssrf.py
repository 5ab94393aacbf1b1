"""Callback URL validation against server-side request forgery (SSRF).

A callback URL is supplied by a client, and Septet will POST to it from inside the operator's
network. So the address it finally connects to must not be loopback, private (RFC 1918, ULA),
shared/CGNAT (RFC 6598), link-local, multicast, reserved, unspecified or a cloud metadata
endpoint, unless configuration allows it (the dev profile allows loopback).

The checks run twice:

* at submit time, :func:`check_callback_url` (the HTTP API calls it) refuses a bad URL with a
  :class:`CallbackUrlRefused` naming the reason;
* at send time, :func:`resolve_callback_url` resolves the host again and returns the address to
  connect to, so a DNS answer that changed since submit (DNS rebinding) is caught, and the
  sender connects to exactly the address that was checked. A name without an address at that
  moment raises :class:`CallbackHostUnresolved`, the one refusal the sender retries.

Odd host forms are normalised *before* the check, the way ``inet_aton`` and browsers read them:
``2130706433``, ``0x7f000001``, ``017700000001``, ``127.1``, ``0x7f.1`` are all 127.0.0.1;
IPv4-mapped, NAT64 and 6to4 IPv6 addresses are judged by the IPv4 address they embed. A URL
with more than one ``@`` (``user@evil@127.0.0.1``) is refused outright: parsers disagree about
where its host starts. Only ``http`` and ``https`` are accepted.

Pure apart from the default resolvers (``socket.getaddrinfo`` / ``trio.socket.getaddrinfo``),
which callers replace in tests. Imports nothing of ours.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

import trio

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
AsyncResolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# Cloud metadata services (AWS/GCP/Azure/OpenStack 169.254.169.254, AWS IPv6 fd00:ec2::254,
# Alibaba 100.100.100.200, Oracle 192.0.0.192). Never allowed, whatever the configuration.
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")
NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
MAX_URL_LENGTH: Final = 2048


class CallbackUrlRefused(ValueError):
    """A callback URL that Septet will not call. ``reason`` is a short stable code.

    Reasons: ``too_long``, ``syntax``, ``scheme``, ``userinfo``, ``no_host``, ``invalid_host``,
    ``port``, ``unresolvable``, ``metadata``, ``loopback``, ``private``, ``cgnat``,
    ``link_local``, ``multicast``, ``unspecified``, ``reserved``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"callback URL refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.detail = detail


DnsFailure = Literal["temporary", "timeout", "not_found", "no_answer"]


class CallbackHostUnresolved(CallbackUrlRefused):
    """The URL's host name has no address *right now* (``reason`` ``unresolvable``).

    Unlike its parent this says nothing about the URL itself: the resolver failed or timed out
    (``temporary``, ``timeout``), the name does not exist (``not_found``: NXDOMAIN, often a typo
    but DNS can be briefly wrong) or it has no address (``no_answer``). At submit time it is a
    refusal like any other; at send time the callback sender treats it as transient and the
    notifier retries with back-off until its retry window ends (docs/callbacks.md).
    """

    def __init__(self, host: str, failure: DnsFailure) -> None:
        super().__init__("unresolvable", f"{host}: {failure}")
        self.host = host
        self.failure: DnsFailure = failure


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A syntactically valid callback URL with its host normalised."""

    scheme: str
    host: str  # lower-case name, dotted IPv4 or bare IPv6 (no brackets)
    port: int
    url: str  # the normalised URL
    address: IPAddress | None  # set when the host is an IP literal (in any odd form)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where to connect for a checked URL: ``address`` was resolved and checked just now."""

    parsed: ParsedUrl
    address: IPAddress

    @property
    def connect_url(self) -> str:
        """The URL with the host replaced by the checked address (what the client dials)."""
        return _connect_url(self.parsed.url, self.address, self.parsed.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.parsed.host}]" if ":" in self.parsed.host else self.parsed.host
        if self.parsed.port == DEFAULT_PORTS[self.parsed.scheme]:
            return host
        return f"{host}:{self.parsed.port}"


@functools.lru_cache(maxsize=4096)
def _connect_url(url: str, address: IPAddress, port: int) -> str:
    split = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    return urlunsplit((split.scheme, f"{literal}:{port}", split.path or "/", split.query, ""))


# ------------------------------------------------------------------------------------------
# Parsing


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """Read ``host`` as ``inet_aton`` does (1-4 parts; decimal, 0x hex or 0-prefixed octal).

    Returns None when ``host`` is not numeric at all. Raises CallbackUrlRefused for a numeric
    host that is out of range (``256.1.1.1``, ``4294967296``), since some resolvers would
    still make something of it.
    """
    labels = host.split(".")
    if not all(_is_numeric_label(x) for x in labels):
        if _is_numeric_label(labels[-1]):
            # WHATWG URL: a numeric last label makes the host an IPv4 address or invalid.
            raise CallbackUrlRefused("invalid_host", "numeric last label")
        return None
    if len(labels) > 4:
        raise CallbackUrlRefused("invalid_host", "too many numeric parts")
    values = [_label_value(x) for x in labels]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise CallbackUrlRefused("invalid_host", "numeric host out of range")
    number = 0
    for v in head:
        number = number * 256 + v
    number = (number << (8 * (5 - len(values)))) | last
    return ipaddress.IPv4Address(number)


def _is_numeric_label(label: str) -> bool:
    if label[:2] in ("0x", "0X"):
        return all(c in "0123456789abcdefABCDEF" for c in label[2:])
    return label.isascii() and label.isdigit()


def _label_value(label: str) -> int:
    if label[:2] in ("0x", "0X"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label[0] == "0":
        if any(c in "89" for c in label):
            raise CallbackUrlRefused("invalid_host", "bad octal part")
        return int(label, 8)
    return int(label)


def _normalise_host(raw: str) -> tuple[str, IPAddress | None]:
    if raw.startswith("["):
        inner = raw[1:-1] if raw.endswith("]") else ""
        if not inner or "%" in inner:
            raise CallbackUrlRefused("invalid_host", "bad IPv6 literal")
        try:
            v6 = ipaddress.IPv6Address(inner)
        except ValueError as exc:
            raise CallbackUrlRefused("invalid_host", "bad IPv6 literal") from exc
        return str(v6), v6
    host = unicodedata.normalize("NFKC", raw).lower().rstrip(".")
    if not host:
        raise CallbackUrlRefused("no_host")
    v4 = parse_ipv4_loose(host)
    if v4 is not None:
        return str(v4), v4
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise CallbackUrlRefused("invalid_host", "not a valid host name") from exc
    if not all(c.isalnum() or c in "-." for c in ascii_host) or ".." in ascii_host:
        raise CallbackUrlRefused("invalid_host", "not a valid host name")
    return ascii_host, None


def parse_callback_url(url: str) -> ParsedUrl:
    """Check the syntax of ``url`` and normalise its host. No name resolution.

    Raises:
        CallbackUrlRefused: too long, not http(s), userinfo ambiguity, bad host or port.
    """
    if len(url) > MAX_URL_LENGTH:
        raise CallbackUrlRefused("too_long")
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in url):
        raise CallbackUrlRefused("syntax", "whitespace, control character or backslash")
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError as exc:
        raise CallbackUrlRefused("port" if "port" in str(exc).lower() else "syntax") from exc
    scheme = split.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise CallbackUrlRefused("scheme", scheme or "none")
    if split.netloc.count("@") > 1:
        raise CallbackUrlRefused("userinfo", "more than one @")
    raw_host = split.netloc.rpartition("@")[2]
    raw_host = raw_host.rsplit(":", 1)[0] if not raw_host.endswith("]") and ":" in raw_host else raw_host
    if not raw_host:
        raise CallbackUrlRefused("no_host")
    host, address = _normalise_host(raw_host)
    if port == 0:
        raise CallbackUrlRefused("port", "0")
    port = port or DEFAULT_PORTS[scheme]
    return ParsedUrl(scheme, host, port, _rebuild(split, scheme, host, port), address)


@functools.lru_cache(maxsize=4096)
def _parse_cached(url: str) -> ParsedUrl:
    """:func:`parse_callback_url` memoised for the send path (pure, so safe to cache;
    refusals are not cached since exceptions are not)."""
    return parse_callback_url(url)


def _rebuild(split: SplitResult, scheme: str, host: str, port: int) -> str:
    userinfo = split.netloc.rpartition("@")[0]
    literal = f"[{host}]" if ":" in host else host
    netloc = literal if port == DEFAULT_PORTS[scheme] else f"{literal}:{port}"
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, split.path or "/", split.query, ""))


# ------------------------------------------------------------------------------------------
# Address policy


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def address_refusal(
    address: IPAddress, *, allow_loopback: bool = False, allow_private: bool = False
) -> str | None:
    """The reason ``address`` may not be called, or None when it may. Pure."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "invalid_host"
        embedded = _embedded_v4(address)
        if embedded is not None:
            return address_refusal(
                embedded, allow_loopback=allow_loopback, allow_private=allow_private
            )
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link_local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in CGNAT:
        return None if allow_private else "cgnat"
    if address.is_private and not address.is_reserved:
        # RFC 1918, ULA, but also documentation/benchmark ranges that is_private covers.
        if _is_rfc1918_or_ula(address):
            return None if allow_private else "private"
        return "reserved"
    if address.is_reserved or not address.is_global:
        return "reserved"
    return None


_PRIVATE_NETS: Final = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)


def _is_rfc1918_or_ula(address: IPAddress) -> bool:
    return any(address.version == n.version and address in n for n in _PRIVATE_NETS)


def _check_all(
    parsed: ParsedUrl, addresses: Sequence[str], allow_loopback: bool, allow_private: bool
) -> IPAddress:
    if not addresses:
        raise CallbackHostUnresolved(parsed.host, "no_answer")
    checked: list[IPAddress] = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        # Every answer must pass: an attacker's DNS can mix a public and a private record.
        reason = address_refusal(address, allow_loopback=allow_loopback, allow_private=allow_private)
        if reason is not None:
            raise CallbackUrlRefused(reason, str(address))
        checked.append(address)
    return checked[0]


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the system resolver (blocking). Failures raise (``socket.gaierror``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def trio_resolver(host: str, port: int) -> list[str]:
    """Resolve with trio's resolver (in a worker thread). Failures raise (``socket.gaierror``)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# getaddrinfo's "this name does not exist / has no address" codes (EAI_NODATA is glibc's).
_NOT_FOUND: Final = frozenset(
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
)


def dns_failure(host: str, exc: Exception) -> CallbackUrlRefused:
    """The refusal a resolver's exception stands for: :class:`CallbackHostUnresolved` (the
    name has no address now, worth retrying) for socket errors and timeouts, ``invalid_host``
    for a name the resolver cannot even encode (``UnicodeError``)."""
    if isinstance(exc, UnicodeError):
        return CallbackUrlRefused("invalid_host", "not a valid host name")
    if isinstance(exc, TimeoutError):
        return CallbackHostUnresolved(host, "timeout")
    if isinstance(exc, socket.gaierror) and exc.errno in _NOT_FOUND:
        return CallbackHostUnresolved(host, "not_found")
    return CallbackHostUnresolved(host, "temporary")  # EAI_AGAIN, EAI_FAIL, any OSError


_RESOLVER_ERRORS: Final = (OSError, UnicodeError)  # TimeoutError and gaierror are OSErrors


def check_callback_url(
    url: str,
    *,
    allow_loopback: bool = False,
    allow_private: bool = False,
    resolver: Resolver = system_resolver,
) -> str:
    """Validate a callback URL at submit time; return it normalised.

    Args:
        url: as the client gave it.
        allow_loopback: permit 127.0.0.0/8 and ::1 (the dev profile).
        allow_private: permit RFC 1918, RFC 6598 (CGNAT) and fc00::/7 (ULA) addresses.
        resolver: ``(host, port) -> [address, ...]``; an empty answer or an ``OSError``
            (``socket.gaierror``, ``TimeoutError``) means "does not resolve now".

    Raises:
        CallbackHostUnresolved: the name has no address now (``reason`` ``unresolvable``).
        CallbackUrlRefused: with ``reason`` naming why.
    """
    parsed = parse_callback_url(url)
    if parsed.address is not None:
        answers = [str(parsed.address)]
    else:
        try:
            answers = list(resolver(parsed.host, parsed.port))
        except _RESOLVER_ERRORS as exc:
            raise dns_failure(parsed.host, exc) from exc
    _check_all(parsed, answers, allow_loopback, allow_private)
    return parsed.url


async def resolve_callback_url(
    url: str,
    *,
    allow_loopback: bool = False,
    allow_private: bool = False,
    resolver: AsyncResolver = trio_resolver,
) -> Resolved:
    """Validate ``url`` again at send time and return the checked address to connect to.

    Raises:
        CallbackHostUnresolved: the name has no address now (resolver failure, timeout,
            NXDOMAIN, empty answer): transient for the sender, unlike the other refusals.
        CallbackUrlRefused: as :func:`check_callback_url`.
    """
    parsed = _parse_cached(url)
    if parsed.address is not None:  # an IP literal: no resolution, judge it as it is
        reason = _refusal_cached(parsed.address, allow_loopback, allow_private)
        if reason is not None:
            raise CallbackUrlRefused(reason, str(parsed.address))
        return Resolved(parsed, parsed.address)
    try:
        answers = await resolver(parsed.host, parsed.port)
    except _RESOLVER_ERRORS as exc:
        raise dns_failure(parsed.host, exc) from exc
    return Resolved(parsed, _check_all(parsed, answers, allow_loopback, allow_private))


@functools.lru_cache(maxsize=4096)
def _refusal_cached(address: IPAddress, allow_loopback: bool, allow_private: bool) -> str | None:
    return address_refusal(address, allow_loopback=allow_loopback, allow_private=allow_private)


async def check_callback_url_async(
    url: str,
    *,
    allow_loopback: bool = False,
    allow_private: bool = False,
    resolver: AsyncResolver = trio_resolver,
) -> str:
    """:func:`check_callback_url` for async callers: resolves in a worker thread instead of
    blocking the event loop (use it in request handlers when URLs carry host names)."""
    resolved = await resolve_callback_url(
        url, allow_loopback=allow_loopback, allow_private=allow_private, resolver=resolver
    )
    return resolved.parsed.url
