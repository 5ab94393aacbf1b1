"""GET /v1/inbound over a real server and a real LMDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from adapters.smpp.inbound import InboundPart
from gateway.inbound import InboundBook, Router
from gateway.store import open_store
from tests.gateway.http.conftest import Served, start

OURS = "+351912000000"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with open_store(tmp_path / "db", sync=False) as store, trio.open_nursery() as nursery:
        yield await start(nursery, store)
        nursery.cancel_scope.cancel()


async def fill(served: Served) -> None:
    book = InboundBook(served.store, Router({OURS: "alpha", "4000": "beta"}))
    await book.sink([InboundPart("sim", f"+35191000000{i % 2}", OURS, f"m{i}", 1000.0 + i,
                                 "gsm7") for i in range(5)])
    await book.sink([InboundPart("sim", "+351910000009", "4000", "for beta", 2000.0, "ucs2")])


async def test_lists_the_accounts_messages_oldest_first_with_a_cursor(served: Served) -> None:
    await fill(served)
    async with served.client() as c:
        first = (await c.get("/v1/inbound", params={"limit": 3})).json()
        rest = (await c.get("/v1/inbound", params={"cursor": first["next_cursor"]})).json()
        done = (await c.get("/v1/inbound", params={"cursor": rest["next_cursor"]})).json()
    assert [m["text"] for m in first["messages"]] == ["m0", "m1", "m2"]
    assert [m["text"] for m in rest["messages"]] == ["m3", "m4"]
    assert done == {"messages": [], "next_cursor": None}
    assert first["messages"][0] == {
        "id": first["messages"][0]["id"], "from": "+351910000000", "to": OURS, "text": "m0",
        "received_at": "1970-01-01T00:16:40.000Z", "connector": "sim", "encoding": "gsm7",
        "parts": 1}


async def test_filters_since_to_and_from(served: Served) -> None:
    await fill(served)
    async with served.client() as c:
        since = (await c.get("/v1/inbound", params={"since": "1970-01-01T00:16:43Z"})).json()
        frm = (await c.get("/v1/inbound?from=+351910000001")).json()  # "+" read as a space
        to = (await c.get("/v1/inbound", params={"to": "351912000000", "from": "+351910000000"}))
    assert [m["text"] for m in since["messages"]] == ["m3", "m4"]
    assert [m["text"] for m in frm["messages"]] == ["m1", "m3"]
    assert [m["text"] for m in to.json()["messages"]] == ["m0", "m2", "m4"]


async def test_an_account_sees_only_its_own(served: Served) -> None:
    await fill(served)
    async with served.client("beta") as c:
        doc = (await c.get("/v1/inbound")).json()
    assert [m["text"] for m in doc["messages"]] == ["for beta"]
    async with served.client(None) as c:
        assert (await c.get("/v1/inbound")).status_code == 401


async def test_bad_parameters_are_named(served: Served) -> None:
    async with served.client() as c:
        r = await c.get("/v1/inbound", params={"limit": "0", "since": "yesterday", "to": "abc",
                                               "cursor": "x/y", "colour": "red"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"query:limit", "query:since", "query:to", "query:cursor", "query:colour"}


async def test_the_openapi_document_lists_the_route(served: Served) -> None:
    async with served.client(None) as c:
        doc = (await c.get("/openapi.json")).json()
    assert doc["paths"]["/v1/inbound"]["get"]["security"] == [{"apiKey": []}]
