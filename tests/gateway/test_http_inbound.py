"""HTTP providers' inbound (MO) webhook, ``POST /v1/inbound/{connector}``: a real API server on
127.0.0.1 over a real LMDB store, the inbound book, the notifier and a loopback receiver. A
posted message is stored, listed for its account and pushed as ``SMS_RECEIVED``; a provider
id posted again is stored and pushed once; tokens, unknown connectors and bad bodies are
refused as problem documents. Also the store's duplicate records and their purge, the
configuration, and the ``septet serve`` wiring."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client import REGISTRY

from actors.errors import StoreError
from adapters.http_inbound import parse_inbound
from adapters.http_provider import HttpProviderConfig
from adapters.smpp.inbound import InboundPart
from bench.callbacks import Receiver, serve_receiver
from gateway import cli
from gateway import config as cfg
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.api.inbound import InboundWebhooks
from gateway.callbacks import RECEIVED, verify
from gateway.config import ApiConfig
from gateway.errors import ConfigError
from gateway.http import HttpServer, ServerLimits
from gateway.inbound import SEEN, SEEN_AGE, SEEN_TTL, InboundBook, Router, purge_seen
from gateway.store import Store, open_store
from tests.gateway.http.conftest import StoreGateway, _allow_all
from tests.gateway.test_inbound_push import (
    HANDSET,
    OURS,
    SECRET,
    inbound_book,
    running_notifier,
    until,
)

TOKEN = "inbound-token-0123456789"
ACME = HttpProviderConfig(name="acme", url="https://acme.example/send", inbound_id_path="msg_id")
MO = {"msg_id": "p-1", "from": HANDSET, "to": OURS, "text": "Olá 😀"}


@dataclass
class Stack:
    url: str
    key: str
    store: Store
    book: InboundBook
    outbox: Any
    stats: Any
    receiver: Receiver
    api: Any

    def provider(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        hook = await nursery.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False) as store:
            key = await AccountBook(store).create(Account(
                "alpha", callback_url=f"http://127.0.0.1:{hook}/status",
                callback_secret=SECRET, inbound_url=f"http://127.0.0.1:{hook}/mo"))
            book, outbox, endpoint_for = inbound_book(store)
            api = create_api(StoreGateway(store), ApiConfig(), check_callback=_allow_all)
            api.inbound_webhooks = InboundWebhooks(
                parsers={"acme": lambda body, kind: parse_inbound(ACME, body, kind,
                                                                  received_at=time.time())},
                tokens={"acme": TOKEN}, store=book.store)
            server = HttpServer(api, ServerLimits())
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            async with running_notifier(store, book, outbox, endpoint_for) as stats:
                yield Stack(f"http://127.0.0.1:{port}", key, store, book, outbox, stats,
                            receiver, api)
        nursery.cancel_scope.cancel()


async def listed(s: Stack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=s.url, timeout=10,
                                 headers={"authorization": f"Bearer {s.key}"}) as c:
        r = await c.get("/v1/inbound")
    assert r.status_code == 200
    return r.json()["messages"]  # type: ignore[no-any-return]


async def test_a_posted_message_is_stored_listed_and_pushed_once_even_posted_twice(
        tmp_path: Path) -> None:
    counted = REGISTRY.get_sample_value("septet_inbound_duplicates_total", {"carrier": "acme"})
    async with stack(tmp_path) as s:
        async with s.provider() as c:
            first = await c.post("/v1/inbound/acme", json=MO)
            assert first.status_code == 200, first.text
            assert first.json() == {"received": 1, "duplicates": 0}
            [message] = await listed(s)
            await until(lambda: s.stats.delivered == 1)
            again = await c.post("/v1/inbound/acme", json=[MO, {**MO, "text": "changed"}])
        assert again.status_code == 200 and again.json() == {"received": 2, "duplicates": 2}
        assert s.outbox.pending_count() == 0  # the duplicates queued no push
        assert await listed(s) == [message]
        assert (s.book.stored, s.book.pushed, s.book.duplicates) == (1, 1, 2)
        assert REGISTRY.get_sample_value("septet_inbound_duplicates_total",
                                         {"carrier": "acme"}) == (counted or 0) + 2
    assert message == {"id": "0000000000000001", "from": HANDSET, "to": OURS, "text": "Olá 😀",
                       "received_at": message["received_at"], "connector": "acme",
                       "encoding": "utf-8", "parts": 1}
    [push] = s.receiver.requests
    assert push.path == "/mo" and verify(SECRET.encode(), push.headers, push.body,
                                         now=time.time())
    body = json.loads(push.body)
    assert body["type"] == RECEIVED and body["data"] == {"account": "alpha", **message}


async def test_messages_without_a_provider_id_are_each_stored(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        bare = {k: v for k, v in MO.items() if k != "msg_id"}
        async with s.provider() as c:
            for _ in range(2):
                r = await c.post("/v1/inbound/acme", json=bare)
                assert r.json() == {"received": 1, "duplicates": 0}
            form = await c.post("/v1/inbound/acme", data={**MO, "msg_id": "p-2"})
        assert form.status_code == 200 and form.json()["duplicates"] == 0
        assert [m["text"] for m in await listed(s)] == ["Olá 😀"] * 3


async def test_refusals_are_problem_documents(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        async with s.provider() as c:
            none = await c.post("/v1/inbound/acme", json=MO,
                                headers={"authorization": ""})
            api_key = await c.post("/v1/inbound/acme", json=MO,
                                   headers={"authorization": f"Bearer {s.key}"})
            wrong = await c.post("/v1/inbound/acme", json=MO,
                                 headers={"authorization": f"Bearer {TOKEN}x"})
            unknown = await c.post("/v1/inbound/nobody", json=MO)
            no_to = await c.post("/v1/inbound/acme", json=[MO, {"from": "1", "text": "t"}])
            garbage = await c.post("/v1/inbound/acme", content=b"{",
                                   headers={"content-type": "application/json"})
            put = await c.put("/v1/inbound/acme")
        assert await listed(s) == []  # a body with one bad message stores none of it
    for r in (none, api_key, wrong):
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert unknown.status_code == 404
    assert no_to.status_code == 400 and no_to.json()["errors"] == [
        {"field": "body[1].to", "reason": "missing"}]
    assert garbage.status_code == 400 and garbage.json()["errors"][0]["field"] == "body"
    for r in (none, unknown, no_to, garbage):
        assert r.headers["content-type"] == "application/problem+json"
    assert put.status_code == 405 and put.headers["allow"] == "GET, POST"  # GET: test_inbound_get


async def test_no_inbound_store_is_503_and_no_webhooks_is_404(tmp_path: Path) -> None:
    async with stack(tmp_path) as s:
        s.api.inbound_webhooks = replace(s.api.inbound_webhooks, store=None)
        async with s.provider() as c:
            down = await c.post("/v1/inbound/acme", json=MO)
            s.api.inbound_webhooks = None
            off = await c.post("/v1/inbound/acme", json=MO)
    assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
    assert off.status_code == 404


async def test_a_store_that_cannot_commit_is_503(tmp_path: Path) -> None:
    async def failing(parts: Any, ids: Any) -> int:
        raise StoreError("disk full")

    async with stack(tmp_path) as s:
        s.api.inbound_webhooks = replace(s.api.inbound_webhooks, store=failing)
        async with s.provider() as c:
            r = await c.post("/v1/inbound/acme", json=MO)
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "could not commit" in r.json()["detail"]


async def test_the_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    async with stack(tmp_path) as s, s.provider(None) as c:
        doc = (await c.get("/openapi.json")).json()
    op = doc["paths"]["/v1/inbound/{connector}"]["post"]
    assert op["security"] == [] and {"400", "401", "404", "503"} <= set(op["responses"])
    assert "utf-8" in doc["components"]["schemas"]["InboundMessage"]["properties"][
        "encoding"]["enum"]


# --------------------------------------------------------------------- the store's records


def mo(text: str, connector: str = "acme") -> InboundPart:
    return InboundPart(connector, HANDSET, OURS, text, 1.0, "utf-8")


async def test_one_id_per_connector_is_stored_once_even_within_one_write(tmp_path: Path) -> None:
    clock = [1000.0]
    async with open_store(tmp_path / "db", sync=False) as store:
        book = InboundBook(store, Router({OURS: "alpha"}), now=lambda: clock[0])
        assert await book.store([mo("a"), mo("b"), mo("c", "other")], ["x", "x", "x"]) == 1
        assert await book.store([mo("d"), mo("e")], ["x", ""]) == 1
        assert [m.text for m in book.page("alpha")[0]] == ["a", "c", "e"]
        assert book.duplicates == 2 and book.stored == 3
        assert store.entries(SEEN) == store.entries(SEEN_AGE) == 2
        clock[0] += 60.0
        await book.store([mo("f")], ["y"])
        # the purge forgets the ids older than its bound, oldest first, a batch at a time
        assert await purge_seen(store, older_than=1000.5, limit=1) == 1
        assert await purge_seen(store, older_than=1000.5) == 1
        assert await purge_seen(store, older_than=1000.5) == 0
        assert store.entries(SEEN) == store.entries(SEEN_AGE) == 1
        assert await book.store([mo("g")], ["x"]) == 0  # forgotten: stored again
        assert await book.store([mo("h")], ["y"]) == 1  # still remembered
        assert await purge_seen(store, older_than=clock[0] + SEEN_TTL) == 2


class RecordingStore:
    """The real store, recording how each write was asked for."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.writes: list[dict[str, Any]] = []

    def db(self, name: bytes) -> Any:
        return self._store.db(name)

    async def write(self, op: Any, **kwargs: Any) -> Any:
        self.writes.append(kwargs)
        return await self._store.write(op, **kwargs)


async def test_the_smpp_sink_is_unchanged_and_the_webhook_fails_fast(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        recording = RecordingStore(store)
        book = InboundBook(recording, Router({OURS: "alpha"}))
        await book.sink([mo("a"), mo("a")])
        assert book.stored == 2 and book.duplicates == 0 and store.entries(SEEN) == 0
        await book.store([mo("b")], ["x"], fail_fast=True)
    assert recording.writes == [{"fail_fast": False}, {"fail_fast": True}]


# ----------------------------------------------------------------- configuration and serve


def provider_toml(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "septet.toml"
    path.write_text(f'''
[[http_providers]]
name = "acme"
url = "http://127.0.0.1:9/send"
receipt_token = "receipt-token-0123456789"
inbound_list_path = "messages"
inbound_from_path = "msisdn"
inbound_id_path = "id"
{extra}
''')
    return path


def test_the_inbound_settings_load_and_are_checked(tmp_path: Path) -> None:
    config = cfg.load(provider_toml(tmp_path), env={})
    [h] = config.http_providers
    assert (h.inbound_list_path, h.inbound_from_path, h.inbound_to_path, h.inbound_id_path,
            h.inbound_token) == ("messages", "msisdn", "to", "id", "")
    tap = cli.ReceiptTap(cli._http_carrier(h), h.receipt_token,
                         inbound_token=h.inbound_token)
    assert tap.inbound_token == h.receipt_token  # "" falls back to the receipt token
    body = b'{"messages": [{"id": 5, "msisdn": "1234", "to": "4000", "text": "t"}]}'
    [got] = tap.parse_inbound(body, "application/json")
    assert (got.part.connector, got.part.source, got.provider_id) == ("acme", "1234", "5")
    with pytest.raises(ConfigError) as caught:
        cfg.load(provider_toml(tmp_path, 'inbound_token = "short"\ninbound_text_path = ""'),
                 env={})
    assert any("inbound_token" in p for p in caught.value.problems)
    assert any("inbound_text_path" in p for p in caught.value.problems)


async def test_serve_mounts_the_webhook_for_each_http_provider(tmp_path: Path) -> None:
    config = cfg.load(provider_toml(tmp_path, 'inbound_token = "a-separate-inbound-token"'),
                      env={"SEPTET_STORE__PATH": str(tmp_path / "db"),
                           "SEPTET_HTTP__PORT": "0", "SEPTET_STORE__SYNC": "false",
                           "SEPTET_SIMULATOR__ENABLED": "false"})
    body = {"messages": [{"id": "m-1", "msisdn": HANDSET, "to": "+351912000000",
                          "text": "hello"}]}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(cli.serve, config, key_file=str(tmp_path / "key")))
        key = (tmp_path / "key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            receipt_token = await c.post("/v1/inbound/acme", json=body, headers={
                "authorization": "Bearer receipt-token-0123456789"})
            answers = [await c.post("/v1/inbound/acme", json=body, headers={
                "authorization": "Bearer a-separate-inbound-token"}) for _ in range(2)]
            doc = (await c.get("/v1/inbound",
                               headers={"authorization": f"Bearer {key}"})).json()
        nursery.cancel_scope.cancel()
    assert receipt_token.status_code == 401  # a separate inbound token replaces it
    assert [a.json() for a in answers] == [{"received": 1, "duplicates": 0},
                                           {"received": 1, "duplicates": 1}]
    assert [(m["from"], m["text"], m["connector"]) for m in doc["messages"]] == [
        (HANDSET, "hello", "acme")]
