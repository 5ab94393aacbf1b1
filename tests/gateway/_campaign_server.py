"""A real HTTP server on 127.0.0.1 with the v1 API and the campaign service, over a real LMDB
store in tmp_path, for the campaign tests. Without ``carriers`` the Gateway is real but its
actors are not started, so accepted messages stay where the tests read them; with
``carriers`` the whole pipeline runs, the campaign rules wired into the rate limiter as
``septet serve`` wires them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

import gateway.campaigns  # noqa: F401  (registers the campaign databases before open_store)
from actors.shaping import ShapingRules
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import CoreSettings, Gateway, open_gateway
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
async def serve_campaigns(path: Path, *, carriers: list[Any] | None = None, now: Any = None,
                          sync: bool = False, limits: ServerLimits | None = None,
                          chunk: int = 2000, pause_recheck: float = 30.0
                          ) -> AsyncIterator[Served]:
    async with open_store(path, sync=sync) as store, trio.open_nursery() as nursery:
        kw = {"now": now} if now is not None else {}
        svc = Campaigns(store, None, chunk=chunk, **kw)
        if carriers is None:
            gw: Any = Gateway(store, [])
        else:
            settings = CoreSettings(shaping=ShapingRules(campaigns=svc.rules,
                                                         pause_recheck=pause_recheck),
                                    receipt_timeout=None)
            gw = await nursery.start(_run_gateway, store, carriers, settings)
        svc.bind(gw)
        api = create_api(gw, ApiConfig(), campaigns=svc, check_callback=lambda u: u, **kw)
        book = AccountBook(store)
        keys = {}
        for account in (Account("alpha", default_prefix="351"), Account("beta")):
            if book.get(account.name) is None:
                keys[account.name] = await book.create(account)
            else:  # the same store served again (a restart)
                keys[account.name] = await book.add_key(account.name)
        server = HttpServer(api, limits or ServerLimits())
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        yield Served(f"http://127.0.0.1:{port}", store, gw, svc, keys)
        nursery.cancel_scope.cancel()


async def _run_gateway(store: Any, carriers: list[Any], settings: Any, *,
                       task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    async with open_gateway(store, carriers, settings) as gw:
        task_status.started(gw)
        await trio.sleep_forever()
