"""A real server on 127.0.0.1 with the v1 API over a real LMDB store in tmp_path.

Until gateway.app.Gateway is used here, ``StoreGateway`` stands in for it with the real
store's accept op (the same transaction the Gateway runs), so what the tests read back is what
the production path writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from adapters.http_provider import HttpProviderConfig, parse_receipts
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import Gateway
from gateway.config import ApiConfig
from gateway.errors import Saturated
from gateway.http import HttpServer, ServerLimits
from gateway.store import open_store

RECEIPT_TOKEN = "receipt-token-0123456789"


class StoreGateway:
    """The real ``gateway.app.Gateway`` (its actors not started, so accepted messages stay
    ACCEPTED where the tests read them), with knobs: saturate it, or hold accepts."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._real = Gateway(store, [])
        self.ready = True
        self.saturated = False
        self.accepted: list[Any] = []
        self.hold: trio.Event | None = None

    async def accept(self, messages: list[Any], *, also: Any = None) -> None:
        if self.saturated:
            raise Saturated(2.0)
        if self.hold is not None:
            await self.hold.wait()
        await self._real.accept(messages, also=also)
        self.accepted += messages


@dataclass
class Served:
    """A running server and what the tests need to talk to it."""

    url: str
    port: int
    gateway: StoreGateway
    keys: dict[str, str]
    server: HttpServer
    store: Any
    api: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, account: str | None = "alpha", **kw: Any) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.keys[account]}"} if account else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **kw)

    def message_count(self) -> int:
        return int(self.store.entries(b"messages"))


def _allow_all(url: str) -> str:
    if "forbidden" in url:
        raise ValueError("private")
    return url


async def start(nursery: trio.Nursery, store: Any, limits: ServerLimits | None = None,
                api_config: ApiConfig | None = None) -> Served:
    gw = StoreGateway(store)
    receipts: list[tuple[str, Any]] = []
    provider = HttpProviderConfig(name="acme", url="http://acme.example/send")

    async def sink(connector: str, items: list[Any]) -> None:
        if connector != "acme":
            raise LookupError(connector)
        receipts.append((connector, items))

    api = create_api(gw, api_config or ApiConfig(), check_callback=_allow_all,
                     receipt_parsers={"acme": partial(parse_receipts, provider),
                                      "down": partial(parse_receipts, provider)},
                     receipt_tokens={"acme": RECEIPT_TOKEN, "down": RECEIPT_TOKEN},
                     receipt_sink=sink)
    book = AccountBook(store)
    keys = {
        "alpha": await book.create(Account("alpha", default_prefix="351")),
        "beta": await book.create(Account("beta")),
    }
    server = HttpServer(api, limits or ServerLimits())
    port = await nursery.start(server.serve, "127.0.0.1", 0)
    return Served(f"http://127.0.0.1:{port}", port, gw, keys, server, store, api,
                  {"receipts": receipts})


@pytest.fixture
async def served(tmp_path: Any) -> AsyncIterator[Served]:
    async with open_store(tmp_path / "db", sync=False) as store, trio.open_nursery() as nursery:
        yield await start(nursery, store)
        nursery.cancel_scope.cancel()
