"""API keys expire after ``[api] key_inactivity_days`` without use (gateway.accounts).

Time is injected: each "day" is a fresh monotonic step past the authentication cache, and a
fresh AccountBook where a test must not see the uses an earlier book noted in memory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from gateway import cli
from gateway import config as cfg
from gateway.accounts import (
    DAY,
    Account,
    AccountBook,
    expired,
    hash_key,
    record_key_use,
    utc_day,
)
from gateway.store import open_store
from tests.gateway.http.conftest import start

T0 = 1_767_225_600.0 + 10 * 3600  # 2026-01-01 10:00 UTC: "day 0"


class Clock:
    """Wall clock (``now``) and monotonic clock, moved together; every move passes the
    authentication cache, so each authenticate() after one reads the store."""

    def __init__(self, at: float = T0) -> None:
        self.at = at
        self.mono = 0.0

    def day(self, n: float) -> Clock:
        self.at = T0 + n * DAY
        self.mono += 3600.0
        return self

    def now(self) -> float:
        return self.at

    def monotonic(self) -> float:
        return self.mono


class CountingStore:
    """A real store whose ``write`` calls are counted."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def write(self, op: Any, **kw: Any) -> Any:
        self.writes += 1
        return await self._store.write(op, **kw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    async with open_store(tmp_path / "db", sync=False) as s:
        yield s


def booker(store: Any, clock: Clock, days: int = 60) -> Callable[[], AccountBook]:
    """Fresh books on ``store`` and ``clock`` (a fresh one holds no unwritten uses)."""
    return lambda: AccountBook(store, now=clock.now, monotonic=clock.monotonic,
                               inactivity_days=days)


def record(store: Any, key: str) -> list[Any]:
    with store.read() as txn:
        return list(msgpack.unpackb(txn.get(b"k:" + hash_key(key), db=store.db(b"accounts"))))


def test_expired_counts_whole_utc_days() -> None:
    used = T0 + 13 * 3600  # day 0, 23:00 UTC
    assert not expired(used, T0 + 60 * DAY + 13.9 * 3600, 60)  # day 60, 23:54: still works
    assert expired(used, T0 + 61 * DAY - 10 * 3600, 60)  # day 61, 00:00
    assert not expired(used, T0 + 10_000 * DAY, 0)  # 0: never
    assert utc_day(T0) == 20454


async def test_key_used_on_day_0_works_on_day_59_and_is_refused_on_day_61(store: Any) -> None:
    clock = Clock()
    fresh = booker(store, clock)
    key = await fresh().create(Account("shop"))
    assert fresh().authenticate(key) is not None  # day 0
    clock.day(59)
    probe = fresh()
    assert probe.authenticate(key) is not None and not probe.expired(key)
    clock.day(60.58)  # day 60, 23:55 UTC: the last day it works
    assert fresh().authenticate(key) is not None
    clock.day(61)
    book = fresh()
    assert book.authenticate(key) is None
    assert book.expired(key)  # the reason: expired, not unknown
    assert not book.expired("sk_unknown") and book.authenticate("sk_unknown") is None
    assert probe.authenticate(key) is not None  # its day-59 use, noted, not yet written
    assert record(store, key)[0] == "shop"  # expired keys stay stored


async def test_use_on_day_59_is_recorded_by_the_flush_and_keeps_the_key_alive(
        store: Any) -> None:
    clock = Clock()
    fresh = booker(store, clock)
    key = await fresh().create(Account("shop"))
    clock.day(59)
    book = fresh()
    assert book.authenticate(key) is not None
    assert await book.flush() == 1
    assert utc_day(record(store, key)[3]) == utc_day(T0) + 59
    clock.day(100)  # 41 days after the last use
    assert fresh().authenticate(key) is not None
    clock.day(120)  # 61 days after it
    late = fresh()
    assert late.authenticate(key) is None and late.expired(key)


async def test_zero_days_disables_expiry(store: Any) -> None:
    clock = Clock()
    fresh = booker(store, clock, days=0)
    key = await fresh().create(Account("shop"))
    clock.day(10_000)
    assert fresh().authenticate(key) is not None


async def test_legacy_record_keeps_working_and_expires_from_the_upgrade(store: Any) -> None:
    clock = Clock()
    fresh = booker(store, clock)
    await fresh().create(Account("shop"))
    db = store.db(b"accounts")
    old, idle = "sk_" + "o" * 43, "sk_" + "i" * 43
    created = T0 - 400 * DAY  # made long before, used daily, but nothing recorded it
    for key in (old, idle):
        legacy = msgpack.packb(["shop", created, ""])  # the 3-item form
        await store.write(lambda txn, k=key, v=legacy: txn.put(b"k:" + hash_key(k), v, db=db))
    assert fresh().authenticate(old) is not None  # no mark yet: counts as used now
    assert await fresh().start_tracking() == T0  # `septet serve` after the upgrade
    clock.day(1)
    assert await fresh().start_tracking() == T0  # written once
    book = fresh()
    assert book.authenticate(old) is not None  # day 1: used (since the mark, day 0)
    assert await book.flush() == 1
    assert len(record(store, old)) == 4 and utc_day(record(store, old)[3]) == utc_day(T0) + 1
    clock.day(59)
    assert fresh().authenticate(idle) is not None  # 59 days since the upgrade
    clock.day(61)
    assert fresh().authenticate(old) is not None  # used on day 1
    gone = fresh()
    assert gone.authenticate(idle) is None and gone.expired(idle)  # never used since
    assert len(record(store, idle)) == 3


async def test_flush_writes_at_most_once_per_key_per_day(store: Any) -> None:
    clock = Clock()
    counted = CountingStore(store)
    book = AccountBook(counted, now=clock.now, monotonic=clock.monotonic)
    a = await book.create(Account("shop"))
    b = await book.add_key("shop")
    counted.writes = 0
    assert await book.flush() == 0 and counted.writes == 0  # nothing noted: no write
    for day in (1, 2):
        for minute in range(30):  # a day of traffic, a flush a minute
            clock.day(day)
            clock.at += minute * 60
            assert book.authenticate(a) is not None and book.authenticate(b) is not None
            await book.flush()
        assert counted.writes == day  # one write per day, holding both keys
    clock.day(3)
    book.authenticate(a)
    other = AccountBook(store, now=clock.now, monotonic=clock.monotonic)  # another process
    other.authenticate(a)
    assert await book.flush() == 1 and counted.writes == 3
    assert await other.flush() == 0  # that day is recorded already: no rewrite
    # a key revoked before its use is written is not brought back
    clock.day(4)
    book.authenticate(b)
    assert await AccountBook(store).revoke_key(b)
    assert await book.flush() == 0
    with store.read() as txn:
        assert txn.get(b"k:" + hash_key(b), db=store.db(b"accounts")) is None


async def test_flush_keeps_the_noted_uses_when_its_write_fails(store: Any) -> None:
    clock = Clock()
    book = AccountBook(store, now=clock.now, monotonic=clock.monotonic)
    key = await book.create(Account("shop"))
    clock.day(1)
    book.authenticate(key)
    real = store.write

    async def broken(op: Any, **kw: Any) -> Any:
        raise RuntimeError("disk")

    store.write = broken
    try:
        with pytest.raises(RuntimeError):
            await book.flush()
    finally:
        store.write = real
    assert await book.flush() == 1


class FlushCounter:
    def __init__(self) -> None:
        self.flushes = 0

    async def flush(self) -> int:
        await trio.sleep(0.5)  # a write's commit
        self.flushes += 1
        return 0


async def test_record_key_use_flushes_every_minute_and_once_more_at_shutdown(
        autojump_clock: Any) -> None:
    book = FlushCounter()
    async with trio.open_nursery() as nursery:
        await nursery.start(record_key_use, book)  # type: ignore[arg-type]
        await trio.sleep(3 * 60 + 30)
        assert book.flushes == 3
        nursery.cancel_scope.cancel()
    assert book.flushes == 4  # the shutdown flush ran, shielded from the cancellation


async def test_expired_key_answers_401_with_its_reason(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store, \
            trio.open_nursery() as nursery:
        served = await start(nursery, store)
        key = served.keys["alpha"]
        db = store.db(b"accounts")
        name, created, label, _ = record(store, key)
        idle = msgpack.packb([name, created, label, served.api.accounts._now() - 61 * DAY])
        await store.write(lambda txn: txn.put(b"k:" + hash_key(key), idle, db=db))
        async with served.client() as c:
            r = await c.get("/v1/account")
            assert r.status_code == 401
            assert r.headers["content-type"] == "application/problem+json"
            doc = r.json()
            assert doc["type"] == "urn:septet:problem:key-expired"
            assert doc["detail"] == ("API key expired: not used for 60 days; create a new one "
                                     "with `septet accounts key <account>`")
            assert "alpha" not in r.text
            assert 'error="invalid_token"' in r.headers["www-authenticate"]
            r = await c.get("/v1/account", headers={"authorization": "Bearer sk_" + "x" * 43})
            assert r.status_code == 401
            assert r.json()["type"] == "urn:septet:problem:unauthorized"
            assert r.json()["detail"] == "the API key is not valid"
        async with served.client("beta") as c:
            assert (await c.get("/v1/account")).status_code == 200
        nursery.cancel_scope.cancel()


async def test_serve_replaces_a_dev_key_unused_for_61_days(tmp_path: Path) -> None:
    config = cfg.load(None, env={"SEPTET_STORE__PATH": str(tmp_path)})
    clock = Clock()
    async with open_store(tmp_path / "db", sync=False) as store:
        first = await cli._dev_account(config, store, now=clock.now)
        assert first is not None
        assert await cli._dev_account(config, store, now=clock.day(59).now) == first
        second = await cli._dev_account(config, store, now=clock.day(62).now)
        assert second is not None and second != first
        assert (tmp_path / "dev-key").read_text().strip() == second
        assert (tmp_path / "dev-key").stat().st_mode & 0o777 == 0o600
        book = booker(store, clock)()
        assert book.authenticate(second) is not None
        assert book.authenticate(first) is None and book.expired(first)
        assert await cli._dev_account(config, store, now=clock.now) == second


def test_key_inactivity_days_is_checked() -> None:
    assert cfg.ApiConfig().key_inactivity_days == 60
    assert cfg.ApiConfig(key_inactivity_days=0).check() == []
    for bad in (-1, 3651):
        (err,) = cfg.ApiConfig(key_inactivity_days=bad).check()
        assert err.startswith("api.key_inactivity_days:") and "3650" in err
    loaded = cfg.load(None, env={"SEPTET_API__KEY_INACTIVITY_DAYS": "30"})
    assert loaded.api.key_inactivity_days == 30


def test_accounts_show_lists_keys_with_last_use(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "db"))
    monkeypatch.setenv("SEPTET_STORE__SYNC", "false")
    assert cli.main(["accounts", "create", "shop"]) == 0
    key = capsys.readouterr().out.strip()

    async def backdate() -> None:
        async with open_store(tmp_path / "db", sync=False) as store:
            name, created, label, _ = record(store, key)
            value = msgpack.packb([name, created, label, 1_700_000_000.0])
            db = store.db(b"accounts")
            await store.write(lambda txn: txn.put(b"k:" + hash_key(key), value, db=db))

    assert cli.main(["accounts", "key", "shop"]) == 0
    capsys.readouterr()
    trio.run(backdate)
    assert cli.main(["accounts", "show", "shop"]) == 0
    keys = json.loads(capsys.readouterr().out)["keys"]
    assert [k["expired"] for k in keys] == [True, False]
    assert keys[0]["last_used"] == "2023-11-14T22:13:20Z"
    assert keys[0]["id"] == hash_key(key)[:6].hex()

    assert cli.main(["accounts", "revoke", keys[0]["id"]]) == 0  # the expired one, by its id
    assert cli.main(["accounts", "revoke", keys[0]["id"]]) == 1
    assert cli.main(["accounts", "revoke", "zz"]) == 1
    capsys.readouterr()
    assert cli.main(["accounts", "show", "shop"]) == 0
    assert [k["id"] for k in json.loads(capsys.readouterr().out)["keys"]] == [keys[1]["id"]]
