"""A real HTTP server on 127.0.0.1 with the v1 API and the campaign service, over a real LMDB
store in tmp_path, for the campaign tests. The Gateway is real but its actors are not started
(unless a test runs them), so accepted messages stay where the tests read them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

import gateway.campaigns  # noqa: F401  (registers the campaign databases before open_store)
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import Gateway
from gateway.campaigns import Campaigns
from gateway.config import ApiConfig
from gateway.http import HttpServer, ServerLimits
from gateway.store import open_store


@dataclass
class Served:
    url: str
    store: Any
    gateway: Any
    campaigns: Campaigns
    keys: dict[str, str]

    def client(self, account: str = "alpha", **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=60,
                                 headers={"authorization": f"Bearer {self.keys[account]}"}, **kw)


@asynccontextmanager
async def serve_campaigns(path: Path, *, gateway: Any = None, now: Any = None, sync: bool = False,
                          limits: ServerLimits | None = None, chunk: int = 2000
                          ) -> AsyncIterator[Served]:
    async with open_store(path, sync=sync) as store, trio.open_nursery() as nursery:
        gw = gateway(store) if gateway is not None else Gateway(store, [])
        kw = {"now": now} if now is not None else {}
        svc = Campaigns(store, gw, chunk=chunk, **kw)
        api = create_api(gw, ApiConfig(), campaigns=svc, check_callback=lambda u: u, **kw)
        book = AccountBook(store)
        keys = {"alpha": await book.create(Account("alpha", default_prefix="351")),
                "beta": await book.create(Account("beta"))}
        server = HttpServer(api, limits or ServerLimits())
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        yield Served(f"http://127.0.0.1:{port}", store, gw, svc, keys)
        nursery.cancel_scope.cancel()
