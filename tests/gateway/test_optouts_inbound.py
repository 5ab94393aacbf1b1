"""STOP/START replies through gateway.inbound.InboundBook on a real LMDB store: the write that
stores a routed reply changes its account's opt-out list; the message is stored as any other;
unrouted replies, ordinary texts and other accounts are left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from adapters.smpp.inbound import InboundPart
from codec import Concat
from gateway.accounts import Account, AccountBook
from gateway.inbound import InboundBook, Router
from gateway.optouts import NO_KEYWORDS, Keywords, OptOutList
from gateway.store import Store, open_store

SHOP = "+351912000000"
BAKERY = "+351912000001"
HANDSET = "+351910000001"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(str(tmp_path / "db"), sync=False, map_size=1 << 22) as s:
        yield s


def reply(text: str, *, to: str = SHOP, frm: str = "351910000001", at: float = 100.0,
          concat: Concat | None = None) -> InboundPart:
    return InboundPart("sim", frm, to, text, at, "gsm7", concat)


async def test_a_stop_reply_opts_its_sender_out_and_is_stored(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    lists = OptOutList(store)
    assert not lists.opted_out("shop", HANDSET)
    await book.sink([reply("  Stop! ", at=123.0)])
    record = lists.get("shop", HANDSET)
    assert record is not None and (record.at, record.source) == (123.0, "keyword")
    assert lists.opted_out("shop", HANDSET)  # enforced at once, no refresh needed
    assert [m.text for m in book.page("shop")[0]] == ["  Stop! "]
    assert book.optout_replies == {"stop": 1}


async def test_start_lifts_a_keyword_opt_out_but_never_the_accounts_own(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    lists = OptOutList(store)
    await book.sink([reply("PARAR")])
    await book.sink([reply("start")])
    assert not lists.opted_out("shop", HANDSET)
    await lists.add("shop", HANDSET)  # recorded by the upstream system (source api)
    await book.sink([reply("START")])
    assert lists.opted_out("shop", HANDSET)
    await book.sink([reply("SAIR")])  # already there: the first record stands
    assert lists.get("shop", HANDSET).source == "api"  # type: ignore[union-attr]


async def test_only_the_routed_account_is_changed(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop", BAKERY: "bakery"}))
    lists = OptOutList(store)
    await book.sink([reply("stop", to=BAKERY), reply("STOP", to="+351999999999")])
    assert lists.opted_out("bakery", HANDSET)
    assert not lists.opted_out("shop", HANDSET) and not lists.opted_out("", HANDSET)
    assert store.entries(b"optouts") == 1  # the unrouted reply changed nothing


async def test_ordinary_texts_and_disabled_keywords_change_nothing(store: Store) -> None:
    await InboundBook(store, Router({SHOP: "shop"})).sink(
        [reply("stop sending me this"), reply("Yes"), reply("thanks, STOP")])
    await InboundBook(store, Router({SHOP: "shop"}), keywords=NO_KEYWORDS).sink(
        [reply("STOP")])
    await InboundBook(store, Router({SHOP: "shop"}),
                      keywords=Keywords.of(["BASTA"], [])).sink([reply("stop")])
    assert store.entries(b"optouts") == 0


def _replies(outcome: str) -> float:
    return REGISTRY.get_sample_value("septet_inbound_optout_replies_total",
                                     {"outcome": outcome}) or 0.0


async def test_a_national_sender_takes_the_accounts_default_prefix(store: Store) -> None:
    before = {k: _replies(k) for k in ("stop", "start", "unreadable")}
    await AccountBook(store).create(Account("shop", default_prefix="351"))
    book = InboundBook(store, Router({SHOP: "shop", BAKERY: "bakery"}))
    await book.sink([reply("cancelar", frm="910000001"), reply("STOP", to=BAKERY,
                                                               frm="910000001")])
    assert OptOutList(store).opted_out("shop", HANDSET)
    assert book.optout_replies == {"stop": 1, "unreadable": 1}  # bakery: no default prefix
    assert {k: _replies(k) - v for k, v in before.items()} == {"stop": 1, "start": 0,
                                                               "unreadable": 1}
    assert len(book.page("bakery")[0]) == 1  # but its message is stored


async def test_a_stop_sent_in_parts_counts_once_joined(store: Store) -> None:
    book = InboundBook(store, Router({SHOP: "shop"}))
    await book.sink([reply("ST", concat=Concat(9, 2, 1, 8))])
    assert not OptOutList(store).opted_out("shop", HANDSET)
    await book.sink([reply("OP", concat=Concat(9, 2, 2, 8))])
    assert OptOutList(store).opted_out("shop", HANDSET)
