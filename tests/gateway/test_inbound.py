"""gateway.inbound: MO messages and parts in a real LMDB store, routing, the metric, config."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.smpp.inbound import InboundPart
from codec import Concat
from gateway import config as cfg
from gateway.errors import ConfigError
from gateway.inbound import PARTS, InboundBook, Router, purge_parts
from gateway.store import Store, open_store

SHOP = "+351912000000"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(str(tmp_path / "db"), sync=False, map_size=1 << 22) as s:
        yield s


def part(text: str, *, to: str = SHOP, frm: str = "+351910000001", at: float = 100.0,
         concat: Concat | None = None) -> InboundPart:
    return InboundPart("sim", frm, to, text, at, "gsm7", concat)


def counted(routed: str) -> float:
    return REGISTRY.get_sample_value("septet_inbound_messages_total", {"routed": routed}) or 0.0


async def test_a_whole_message_is_stored_under_its_routed_account(store: Store) -> None:
    book = InboundBook(store, Router({"351912000000": "shop"}))  # with or without "+"
    before = counted("yes")
    await book.sink([part("hello")])
    page, cursor = book.page("shop")
    assert [(m.text, m.source, m.destination, m.parts, m.connector) for m in page] == \
        [("hello", "+351910000001", SHOP, 1, "sim")]
    assert cursor == page[0].id and counted("yes") == before + 1
    assert book.page("other") == ([], None)


async def test_unrouted_messages_are_stored_under_no_account_and_counted(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    before = counted("no")
    await book.sink([part("lost", to="+351999999999")])
    assert book.page("shop") == ([], None)
    assert [m.text for m in book.page("")[0]] == ["lost"]
    assert counted("no") == before + 1 and book.unrouted == 1


async def test_parts_are_stored_one_by_one_and_joined_when_the_last_arrives(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    await book.sink([part("world", concat=Concat(7, 3, 3, 8), at=102.0)])
    await book.sink([part("hello ", concat=Concat(7, 3, 1, 8), at=100.0)])
    await book.sink([part("hello ", concat=Concat(7, 3, 1, 8), at=100.5)])  # resent: same key
    assert book.page("shop") == ([], None)
    with store.read() as txn:
        assert txn.stat(store.db(PARTS))["entries"] == 2  # durable before the message is whole
    await book.sink([part("big ", concat=Concat(7, 3, 2, 8), at=101.0)])
    page, _ = book.page("shop")
    assert [(m.text, m.parts, m.received_at) for m in page] == [("hello big world", 3, 102.0)]
    with store.read() as txn:
        assert txn.stat(store.db(PARTS))["entries"] == 0


async def test_groups_are_told_apart_by_sender_and_reference(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    await book.sink([part("a1", concat=Concat(1, 2, 1, 8)),
                     part("b1", concat=Concat(1, 2, 1, 8), frm="+351910000002"),
                     part("c1", concat=Concat(2, 2, 1, 16)),
                     part("a2", concat=Concat(1, 2, 2, 8)),
                     part("b2", concat=Concat(1, 2, 2, 8), frm="+351910000002")])
    assert sorted(m.text for m in book.page("shop")[0]) == ["a1a2", "b1b2"]


async def test_paging_filters_and_cursor(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop", "4000": "shop"}))
    await book.sink([part(f"m{i}", at=100.0 + i, to=SHOP if i % 2 else "4000",
                          frm=f"+35191000000{i % 3}") for i in range(6)])
    first, cursor = book.page("shop", limit=4)
    assert [m.text for m in first] == ["m0", "m1", "m2", "m3"]  # oldest first
    rest, last = book.page("shop", after=cursor, limit=4)
    assert [m.text for m in rest] == ["m4", "m5"]
    assert book.page("shop", after=last) == ([], None)  # caught up: keep the cursor
    assert [m.text for m in book.page("shop", since=103.0)[0]] == ["m3", "m4", "m5"]
    assert [m.text for m in book.page("shop", to="351912000000")[0]] == ["m1", "m3", "m5"]
    assert [m.text for m in book.page("shop", sender="+351910000001")[0]] == ["m1", "m4"]
    scanned, cursor = book.page("shop", max_scan=2, to="4000")
    assert [m.text for m in scanned] == ["m0"] and cursor == first[1].id


async def test_stale_parts_are_purged(store: Store) -> None:
    book = InboundBook(store)
    await book.sink([part("old", concat=Concat(1, 2, 1, 8), at=10.0),
                     part("new", concat=Concat(2, 2, 1, 8), at=1000.0)])
    assert await purge_parts(store, older_than=500.0) == 1
    with store.read() as txn:
        assert txn.stat(store.db(PARTS))["entries"] == 1


def test_inbound_routes_load_and_bad_keys_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[inbound]]\nnumber = "+351912000000"\naccount = "shop"\n')
    assert cfg.load(good, env={}).inbound == (cfg.InboundRouteConfig("+351912000000", "shop"),)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[inbound]]\nnumber = "shop!"\naccount = ""\n'
                   '[[inbound]]\nnumber = "351912000000"\naccount = "a"\n'
                   '[[inbound]]\nnumber = "+351912000000"\naccount = "b"\n'
                   '[simulator]\nmo_numbers = ["x"]\n[dev]\ninbound_number = "y"\n')
    with pytest.raises(ConfigError) as err:
        cfg.load(bad, env={})
    text = str(err.value)
    for name in ("inbound[0].number", "inbound[0].account", "inbound: 351912000000",
                 "simulator.mo_numbers[0]", "dev.inbound_number"):
        assert name in text
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[[inbound]]\nnumber = "+351912000000"\naccount = "a"\nacount = "b"\n')
    with pytest.raises(ConfigError, match=r"inbound\[0\]\.acount: unknown key"):
        cfg.load(unknown, env={})
