"""Callback URLs in the request path are checked with gateway.ssrf.check_callback_url_async:
names resolve through trio's resolver (non-blocking, cancellable), never with a blocking
getaddrinfo on the event loop. A custom trio hostname resolver proves which one ran: the
blocking variant would ask the system resolver, which knows none of these names."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import trio

from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.config import ApiConfig
from gateway.http import Request
from gateway.store import open_store
from tests.gateway.http.conftest import StoreGateway

ANSWERS = {b"hooks.septet.test": "93.184.216.34", b"inside.septet.test": "10.1.2.3"}


class FakeDns(trio.abc.HostnameResolver):
    def __init__(self) -> None:
        self.asked: list[bytes] = []

    async def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:
        self.asked.append(host)
        address = ANSWERS.get(host)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


def post(path: str, key: str, doc: dict[str, Any], method: str = "POST") -> Request:
    return Request(method, path, {"authorization": f"Bearer {key}",
                                  "content-type": "application/json"},
                   json.dumps(doc).encode(), True, path=path)


async def test_callback_urls_are_resolved_without_blocking(tmp_path: Path) -> None:
    dns = FakeDns()
    previous = trio.socket.set_custom_hostname_resolver(dns)
    try:
        async with open_store(tmp_path / "db", sync=False) as store:
            api = create_api(StoreGateway(store), ApiConfig())
            key = await AccountBook(store).create(Account("alpha"))
            base = {"to": "+351912345678", "from": "Septet", "text": "hi"}
            ok = await api(post("/v1/messages", key,
                                {**base, "callback_url": "https://hooks.septet.test/cb"}))
            assert ok.status == 202, ok.body
            refused = await api(post("/v1/messages", key,
                                     {**base, "callback_url": "https://inside.septet.test/cb"}))
            assert refused.status == 422 and b"private" in refused.body
            patched = await api(post("/v1/account", key,
                                     {"callback_url": "https://inside.septet.test/x"}, "PATCH"))
            assert patched.status == 422 and b"private" in patched.body
            literal = await api(post("/v1/messages", key,
                                     {**base, "callback_url": "http://127.0.0.1/cb"}))
            assert literal.status == 422 and b"loopback" in literal.body
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
    assert dns.asked.count(b"hooks.septet.test") == 1  # once: the answer is cached per URL
    assert b"inside.septet.test" in dns.asked and b"127.0.0.1" not in dns.asked
