"""A whole gateway for the reliability tests: ``gateway.cli.serve`` (the code ``septet serve``
runs) on a real LMDB file in tmp_path, bound over real SMPP on 127.0.0.1 to a simulator whose
faults each test chooses, with two accounts (``alpha`` and ``beta``) and their callback
receivers.

Nothing here is a stand-in: HTTP server, API, store, actors, SMPP client and simulator are
the production modules. Polling helpers wait on real I/O with a deadline; they never sleep to
pass time for logic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio

from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from bench import callbacks as callbacks_receiver
from gateway import config as cfg
from gateway.accounts import Account, AccountBook
from gateway.store import open_store

FINAL = frozenset({"DELIVERED", "NOT_DELIVERED", "NOT_SENT"})
OK = {"to": "+351912345678", "from": "Septet", "text": "hello"}
RECEIPT_TOKEN = "receipt-token-0123456789"


@dataclass
class Receiver:
    """A callback receiver on 127.0.0.1 (``bench.callbacks.serve_receiver``, raw HTTP/1.1) that
    records every POST body."""

    port: int = 0
    seen: callbacks_receiver.Receiver = field(default_factory=callbacks_receiver.Receiver)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def bodies(self) -> list[bytes]:
        return [request.body for request in self.seen.requests]

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for body in self.bodies:
            doc = json.loads(body)
            out.extend(doc if isinstance(doc, list) else [doc])
        return out


@dataclass
class Stack:
    """A running gateway and what tests need to talk to it."""

    url: str
    keys: dict[str, str]
    sim: SimulatorStats
    receivers: dict[str, Receiver]
    path: Path

    def client(self, account: str | None = "alpha", **kw: Any) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.keys[account]}"} if account else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=15, **kw)


async def start_stack(nursery: trio.Nursery, tmp_path: Path,
                      sim_config: SimulatorConfig | None = None, *,
                      window: int = 64, http: cfg.HttpConfig | None = None,
                      sim_stats: SimulatorStats | None = None,
                      map_size: int = cfg.StoreConfig().map_size,
                      smsc_port: int | None = None, http_provider: bool = False,
                      allow_loopback: bool = True, writer: str = "auto") -> Stack:
    """Start simulator, receivers and ``gateway.cli.serve``; return once /readyz says 200.

    ``writer``: the ``[store] writer`` (a test injecting faults at the writer thread pins
    "thread"; "auto" is the writer process on a machine with two CPUs or more)."""
    from gateway.cli import serve

    stats = sim_stats if sim_stats is not None else SimulatorStats()
    sim_port = smsc_port or await nursery.start(partial(serve_simulator,
                                                        sim_config or SimulatorConfig(),
                                                        stats=stats))
    receivers = {name: Receiver() for name in ("alpha", "beta")}
    for rx in receivers.values():
        rx.port = await nursery.start(callbacks_receiver.serve_receiver, rx.seen)
    path = tmp_path / "db"
    keys: dict[str, str] = {}
    async with open_store(path, sync=False) as store:
        book = AccountBook(store)
        for name, prefix in (("alpha", "351"), ("beta", "")):
            keys[name] = await book.create(Account(name, default_prefix=prefix,
                                                   callback_url=receivers[name].url))
    config = cfg.Config(
        http=http or replace(cfg.HttpConfig(), port=0),
        api=replace(cfg.ApiConfig(), callbacks_allow_loopback=allow_loopback),
        store=cfg.StoreConfig(path=str(path), sync=False, map_size=map_size, writer=writer),
        simulator=cfg.SimulatorConfig(enabled=False),
        smpp=(cfg.SmppConnectorConfig(name="smsc", port=sim_port, system_id="septet",
                                      password="pw", window=window),),
        dev=cfg.DevConfig(create_account=False),
        http_providers=(cfg.HttpProviderConnectorConfig(
            name="acme", url="http://127.0.0.1:9/send", receipt_token=RECEIPT_TOKEN),)
        if http_provider else (),
    )
    port = await nursery.start(partial(serve, config))
    stack = Stack(f"http://127.0.0.1:{port}", keys, stats, receivers, path)
    async with httpx.AsyncClient(base_url=stack.url) as c:
        deadline = time.monotonic() + 10
        while (await c.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, "gateway never became ready"
            await trio.sleep(0.02)
    return stack


async def until(check: Callable[[], Any], *, timeout: float, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await trio.sleep(every)


async def submit(c: httpx.AsyncClient, n: int, *, tag: str = "m", **extra: Any) -> list[str]:
    """Submit ``n`` distinct messages in batches of up to 500; return their ids."""
    ids: list[str] = []
    for start in range(0, n, 500):
        items = [{"to": f"+35191{(start + i) % 10**7:07d}", "from": "Septet",
                  "text": f"{tag} {start + i}", **extra} for i in range(min(500, n - start))]
        r = await c.post("/v1/messages", json={"messages": items})
        assert r.status_code == 202, r.text[:500]
        ids += [m["id"] for m in r.json()["messages"]]
    return ids


async def states(c: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    """Every message of the client's account, by id (history search, all pages)."""
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        r = await c.get("/v1/messages", params=params)
        assert r.status_code == 200, r.text
        doc = r.json()
        out.update({m["id"]: m for m in doc["messages"]})
        cursor = doc["next_cursor"]
        if not cursor:
            return out


async def all_final(c: httpx.AsyncClient, ids: list[str], *, timeout: float
                    ) -> dict[str, dict[str, Any]]:
    """Wait until every id is in a final state; return the message objects."""
    deadline = time.monotonic() + timeout
    while True:
        got = await states(c)
        pending = [i for i in ids if got.get(i, {}).get("state") not in FINAL]
        if not pending:
            return got
        if time.monotonic() > deadline:
            sample = {i: got.get(i, {}).get("state") for i in pending[:5]}
            raise AssertionError(f"{len(pending)} not final after {timeout} s, e.g. {sample}")
        await trio.sleep(0.05)
