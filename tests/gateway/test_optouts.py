"""gateway.optouts: the keyword matcher (pure, hypothesis), the list's ops on a real LMDB file,
the presence set that keeps the rate limiter's check free of reads for accounts without
opt-outs, its refresh, and the [optouts] configuration."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import config as cfg
from gateway.errors import ConfigError
from gateway.optouts import (
    DB,
    DEFAULT_START,
    DEFAULT_STOP,
    NO_KEYWORDS,
    Keywords,
    OptOutList,
    Replies,
    apply_reply,
    normalise_keyword,
    op_add,
    presence_of,
    sender_e164,
)
from gateway.store import open_store
from gateway.validation import NumberNormaliser

A = "+351912345678"
B = "+351912345679"

# ------------------------------------------------------------------------------ keywords

PADDING = st.text(st.sampled_from(" \t\n\u00a0\u200b.,;:!?¡¿\"'()[]-…«»*#🛑🙏"), max_size=8)


@given(st.sampled_from(DEFAULT_STOP + DEFAULT_START), PADDING, PADDING,
       st.lists(st.booleans(), min_size=12, max_size=12))
@example("STOP", "  ", "!", [False] * 12)
@example("SAIR", "", ".", [False] * 12)
@settings(max_examples=300)
def test_padding_and_case_never_change_a_keywords_verdict(word: str, before: str, after: str,
                                                          upper: list[bool]) -> None:
    expected = "stop" if word in DEFAULT_STOP else "start"
    cased = "".join(c.upper() if u else c.lower() for c, u in zip(word, upper, strict=False))
    assert Keywords().verdict(before + cased + after) == expected


@given(st.text(max_size=40), PADDING, PADDING)
@settings(max_examples=300)
def test_padding_and_ascii_case_never_change_any_verdict(text: str, before: str,
                                                         after: str) -> None:
    k = Keywords()
    swapped = "".join(c.swapcase() if c.isascii() else c for c in text)
    assert k.verdict(before + text + after) == k.verdict(text) == k.verdict(swapped)


@pytest.mark.parametrize("text", [
    "stop please", "don't stop", "STOP STOP", "stopp", "S T O P", "yes", "sim", "", "!!!",
    "Parar de enviar", "ok"])
def test_a_keyword_inside_other_words_is_an_ordinary_message(text: str) -> None:
    assert Keywords().verdict(text) is None


def test_full_width_and_zero_width_forms_are_read_as_the_keyword() -> None:
    k = Keywords()
    assert k.verdict("ＳＴＯＰ") == "stop" and k.verdict("\u200bSair\u200b") == "stop"
    assert k.verdict("Start!") == "start" and k.verdict("unstop") == "start"


def test_configured_keywords_are_normalised_and_start_never_shadows_stop() -> None:
    k = Keywords.of(["  Basta! ", "stop all", ""], ["VOLTAR", "basta"])
    assert k.stop == {"basta", "stop all"} and k.start == {"voltar"}
    assert k.verdict("STOP   ALL") == "stop" and k.verdict("Voltar.") == "start"
    assert k.verdict("stop") is None  # only what was configured
    assert NO_KEYWORDS.verdict("STOP") is None
    assert normalise_keyword("  «Cancelar» ") == "cancelar"


# ------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(("source", "prefix", "expected"), [
    ("351912345678", "", A),  # an SMSC's international digits, no "+"
    ("+351912345678", "", A),
    ("00351912345678", "", A),
    ("912345678", "351", A),  # national, with the account's default prefix
    ("912345678", "", None),
    ("MyBank", "351", None),
    ("", "351", None),
])
def test_a_reply_sender_is_read_as_e164(source: str, prefix: str, expected: str | None) -> None:
    assert sender_e164(source, prefix, NumberNormaliser(10)) == expected


# ------------------------------------------------------------------------------ the list


async def test_add_is_idempotent_and_remove_get_page_read_the_list(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        lst = OptOutList(store, now=lambda: 1000.0)
        first, added = await lst.add("shop", A)
        again, added_again = await lst.add("shop", A, source="import", at=2000.0)
        assert added and not added_again
        assert first == again and (again.at, again.source) == (1000.0, "api")  # first stands
        for i in range(5):
            await lst.add("shop", f"+35191234500{i}", source="import", at=3000.0 + i)
        assert lst.get("shop", A) == first and lst.get("shop", B) is None
        page, cursor = lst.page("shop", limit=4)
        assert [o.number for o in page] == [f"+35191234500{i}" for i in range(4)]
        assert cursor == "+351912345003"
        rest, end = lst.page("shop", after=cursor, limit=4)
        assert [o.number for o in rest] == ["+351912345004", A] and end is None
        imported, _ = lst.page("shop", source="import", since=3002.0)
        assert [o.at for o in imported] == [3002.0, 3003.0, 3004.0]
        sparse, more = lst.page("shop", source="api", max_scan=3)
        assert sparse == [] and more == "+351912345002"  # a sparse filter: follow the cursor
        removed = await lst.remove("shop", A)
        assert removed == first and await lst.remove("shop", A) is None
        assert lst.get("shop", A) is None
        assert store.entries(DB) == 5


async def test_one_accounts_list_never_touches_anothers(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        lst = OptOutList(store)
        await lst.add("shop", A)
        await lst.add("shop2", B)  # a name that starts with the other one
        assert lst.opted_out("shop", A) and not lst.opted_out("shop2", A)
        assert not lst.opted_out("other", A) and lst.get("shop2", A) is None
        assert [o.number for o in lst.page("shop")[0]] == [A]
        assert await lst.remove("other", A) is None and lst.opted_out("shop", A)


class CountingStore:
    """The real store, counting its read transactions."""

    def __init__(self, store: Any) -> None:
        self.store, self.reads = store, 0
        self.env = self  # its begin() counts too

    def begin(self, **kw: Any) -> Any:
        self.reads += 1
        return self.store.env.begin(**kw)

    def read(self) -> Any:
        self.reads += 1
        return self.store.read()

    def db(self, name: bytes) -> Any:
        return self.store.db(name)

    async def write(self, op: Any, **kw: Any) -> Any:
        return await self.store.write(op, **kw)


async def test_an_account_without_opt_outs_costs_no_read(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as real:
        store = CountingStore(real)
        clock = [0.0]
        lst = OptOutList(store, clock=lambda: clock[0], refresh=5.0)
        await lst.add("shop", A)
        assert not lst.opted_out("quiet", A)  # the first use reads the presence set: once
        store.reads = 0
        assert not any(lst.opted_out("quiet", f"+35191234{i:04d}") for i in range(1000))
        assert store.reads == 0
        assert lst.opted_out("shop", A) and not lst.opted_out("shop", B)
        assert store.reads == 2  # one get each, for the account that has opt-outs
        await lst.remove("shop", A)
        store.reads = 0
        assert not lst.opted_out("shop", A) and store.reads == 0  # its last one is gone


async def test_a_change_made_elsewhere_is_enforced_within_the_refresh(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        clock = [100.0]
        lst = OptOutList(store, clock=lambda: clock[0], refresh=5.0)
        assert not lst.opted_out("shop", A)  # the first use reads which accounts have any
        # another process adds one: straight to the store, no OptOutList of this process
        await store.write(partial(op_add, db=store.db(DB), account="shop", number=A, at=1.0,
                                  source="api"))
        clock[0] = 104.9
        assert not lst.opted_out("shop", A)  # not seen yet: the documented staleness
        clock[0] = 105.0
        assert lst.opted_out("shop", A)


async def test_lists_over_one_store_share_what_they_know(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        enforcing = OptOutList(store, refresh=float("inf"))
        assert not enforcing.opted_out("shop", A)
        await OptOutList(store).add("shop", A)  # e.g. the API's list
        assert enforcing.opted_out("shop", A)


async def test_a_refresh_while_an_addition_is_written_keeps_it_enforced(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        lst = OptOutList(store, refresh=float("inf"))
        lst.refresh()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(lst.add, "shop", A))
            await trio.testing.wait_all_tasks_blocked()  # the write is queued or running
            lst.refresh()  # e.g. the rate limiter's periodic read, before the commit
            assert "shop" in presence_of(store).accounts
        assert lst.opted_out("shop", A) and presence_of(store).adding == {}


async def test_replies_apply_stop_and_lift_only_a_keyword_opt_out(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        lst = OptOutList(store)
        await lst.add("shop", B)  # recorded by the upstream system
        replies = Replies(store.db(DB), Keywords(), {"shop": "351"}, NumberNormaliser(10))

        def reply(source: str, text: str) -> Any:
            return partial(lambda txn, s, t: apply_reply(txn, replies, "shop", s, t, 50.0),
                           s=source, t=text)

        await store.write(reply("912345678", "Stop."))
        assert lst.get("shop", A) is not None and lst.get("shop", A).source == "keyword"  # type: ignore[union-attr]
        await store.write(reply("351912345679", "START"))  # not a keyword opt-out: stays
        assert lst.get("shop", B) is not None
        await store.write(reply("+351912345678", "start"))
        assert lst.get("shop", A) is None
        await store.write(reply("Bank", "STOP"))
        assert replies.outcomes == {"stop": 1, "start": 2, "unreadable": 1}
        assert replies.changed == {"shop"}


# ------------------------------------------------------------------------------ config


def test_the_optouts_table_loads_and_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "septet.toml"
    path.write_text('[optouts]\nstop_keywords = ["BASTA", "Stop"]\nstart_keywords = []\n'
                    "refresh_seconds = 2\n")
    config = cfg.load(path, env={})
    assert config.optouts.keywords().verdict("basta!") == "stop"
    assert config.optouts.keywords().verdict("start") is None
    assert config.optouts.refresh_seconds == 2.0
    assert cfg.load(env={}).optouts.keywords() == Keywords()  # the defaults
    path.write_text('[optouts]\nstop_keywords = ["STOP", "?!"]\nstart_keywords = ["stop"]\n'
                    "refresh_seconds = 0\n")
    with pytest.raises(ConfigError) as err:
        cfg.load(path, env={})
    text = str(err.value)
    assert "optouts.stop_keywords[1]" in text and "both a stop and a start" in text
    assert "optouts.refresh_seconds" in text
