"""Callback URL validation against SSRF: odd host forms are normalised before the check."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ssrf import (
    CallbackUrlRefused,
    address_refusal,
    check_callback_url,
    check_callback_url_async,
    parse_ipv4_loose,
    resolve_callback_url,
)

PUBLIC = "93.184.215.14"


def fake_dns(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> Sequence[str]:
        return table.get(host, [])

    return resolve


DNS = fake_dns({
    "hooks.example.com": [PUBLIC],
    "localhost": ["127.0.0.1", "::1"],
    "internal.example.com": ["10.1.2.3"],
    "mixed.example.com": [PUBLIC, "192.168.1.10"],
    "rebind.example.com": ["169.254.169.254"],
    "v6.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
})

REFUSED = [
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::1]:8080/hook", "loopback"),
    ("http://user@evil@127.0.0.1/", "userinfo"),
    ("http://localhost/hook", "loopback"),
    ("http://１２７.０.０.１/", "loopback"),  # fullwidth digits, NFKC-normalised
    ("http://127.0.0.1./", "loopback"),  # trailing dot
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),  # 169.254.169.254 mapped into IPv6
    ("http://100.100.100.200/", "metadata"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.0.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://100.64.0.1/", "cgnat"),
    ("http://169.254.10.1/", "link_local"),
    ("http://[fe80::1]/", "link_local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.2.1/", "reserved"),  # documentation range
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 of 127.0.0.1
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://internal.example.com/", "private"),
    ("http://mixed.example.com/", "private"),  # one bad answer is enough
    ("http://rebind.example.com/", "metadata"),
    ("http://nowhere.example.com/", "unresolvable"),
    ("ftp://hooks.example.com/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://hooks.example.com/", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("http:///path", "no_host"),
    ("http://hooks.example.com:0/", "port"),
    ("http://hooks.example.com:99999/", "port"),
    ("http://256.1.1.1/", "invalid_host"),
    ("http://4294967296/", "invalid_host"),
    ("http://1.2.3.4.5/", "invalid_host"),
    ("http://hooks.example.123/", "invalid_host"),
    ("http://[::1%25eth0]/", "invalid_host"),
    ("http://hooks example.com/", "syntax"),
    ("http://hooks.example.com\\@127.0.0.1/", "syntax"),
    ("http://a" + "a" * 3000 + ".com/", "too_long"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_unsafe_callback_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(CallbackUrlRefused) as info:
        check_callback_url(url, resolver=DNS)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_the_refusal_table_is_large_enough() -> None:
    assert len(REFUSED) >= 12


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://hooks.example.com/sms?x=1", "https://hooks.example.com/sms?x=1"),
        ("HTTP://HOOKS.EXAMPLE.COM:80", "http://hooks.example.com/"),
        ("https://hooks.example.com:8443/a#frag", "https://hooks.example.com:8443/a"),
        ("https://user:pw@hooks.example.com/", "https://user:pw@hooks.example.com/"),
        ("http://1572394766/", "http://93.184.215.14/"),  # decimal form of a public address
        ("http://v6.example.com/", "http://v6.example.com/"),
        ("http://[2606:2800:220:1:248:1893:25c8:1946]/", "http://[2606:2800:220:1:248:1893:25c8:1946]/"),
    ],
)
def test_public_urls_are_allowed_and_normalised(url: str, normalised: str) -> None:
    assert check_callback_url(url, resolver=DNS) == normalised


def test_dev_profile_allows_loopback_but_still_not_metadata() -> None:
    assert check_callback_url("http://127.1:8080/h", allow_loopback=True) == "http://127.0.0.1:8080/h"
    assert check_callback_url("http://localhost/", allow_loopback=True, resolver=DNS)
    with pytest.raises(CallbackUrlRefused, match="private"):
        check_callback_url("http://10.0.0.1/", allow_loopback=True)
    with pytest.raises(CallbackUrlRefused, match="metadata"):
        check_callback_url("http://169.254.169.254/", allow_loopback=True, allow_private=True)


def test_allow_private_covers_rfc1918_ula_and_cgnat() -> None:
    for url in ("http://10.0.0.1/", "http://[fd12::1]/", "http://100.64.1.1/"):
        check_callback_url(url, allow_private=True)
    with pytest.raises(CallbackUrlRefused, match="loopback"):
        check_callback_url("http://127.0.0.1/", allow_private=True)


async def test_send_time_resolution_catches_dns_rebinding() -> None:
    answers = {"hooks.example.com": [PUBLIC]}

    async def resolver(host: str, port: int) -> Sequence[str]:
        return answers.get(host, [])

    resolved = await resolve_callback_url("https://hooks.example.com/x?y=1", resolver=resolver)
    assert str(resolved.address) == PUBLIC
    assert resolved.connect_url == f"https://{PUBLIC}:443/x?y=1"
    assert resolved.host_header == "hooks.example.com"
    answers["hooks.example.com"] = ["127.0.0.1"]  # the attacker's DNS changes its answer
    with pytest.raises(CallbackUrlRefused, match="loopback"):
        await resolve_callback_url("https://hooks.example.com/x", resolver=resolver)


@pytest.mark.parametrize(
    ("host", "address"),
    [("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("017700000001", "127.0.0.1"),
     ("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
     ("10.0x10.1", "10.16.0.1"), ("1.2.3.4", "1.2.3.4")],
)
def test_inet_aton_forms(host: str, address: str) -> None:
    assert str(parse_ipv4_loose(host)) == address


@settings(max_examples=200)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["dec", "hex", "oct", "dotted-hex"]))
def test_every_numeric_spelling_is_judged_like_its_dotted_form(n: int, form: str) -> None:
    address = ipaddress.IPv4Address(n)
    spelled = {
        "dec": str(n),
        "hex": hex(n),
        "oct": "0" + oct(n)[2:] if n else "0",
        "dotted-hex": ".".join(hex(b) for b in address.packed),
    }[form]
    assert parse_ipv4_loose(spelled) == address
    expected = address_refusal(address)
    try:
        check_callback_url(f"http://{spelled}/", resolver=DNS)
    except CallbackUrlRefused as exc:
        assert exc.reason == expected
    else:
        assert expected is None


async def test_async_submit_check_matches_the_sync_one() -> None:
    async def resolver(host: str, port: int) -> Sequence[str]:
        return DNS(host, port)

    assert await check_callback_url_async("HTTP://hooks.example.com:80", resolver=resolver) == (
        "http://hooks.example.com/"
    )
    with pytest.raises(CallbackUrlRefused, match="private"):
        await check_callback_url_async("http://internal.example.com/", resolver=resolver)
