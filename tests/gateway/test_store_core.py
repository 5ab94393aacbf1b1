"""The store's writer: group commit, isolation of a failing op, map growth, inline reads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from actors.errors import StoreError
from gateway.store import STORE_DATABASES, open_store


async def test_write_returns_op_result_after_commit_and_read_sees_it(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        db = store.db(b"meta")
        assert await store.write(lambda txn: txn.put(b"k", b"v", db=db)) is True
        with store.read() as txn:
            assert txn.get(b"k", db=db) == b"v"


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        db = store.db(b"meta")
        async with trio.open_nursery() as nursery:
            for i in range(500):
                nursery.start_soon(store.write, lambda txn, i=i: txn.put(b"%05d" % i, b"x", db=db))
        assert store.entries(b"meta") == 500
        assert store.stats.commits < 500  # grouped


async def test_failing_op_does_not_poison_its_batch(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        db = store.db(b"meta")

        def bad(txn: object) -> None:
            txn.put(b"bad", b"1", db=db)  # type: ignore[attr-defined]
            raise ValueError("refused")

        results: dict[str, object] = {}

        async def run(name: str, op: object) -> None:
            try:
                results[name] = await store.write(op)  # type: ignore[arg-type]
            except ValueError as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", lambda txn: txn.put(b"a", b"1", db=db))
            nursery.start_soon(run, "bad", bad)
            nursery.start_soon(run, "b", lambda txn: txn.put(b"b", b"1", db=db))
        assert isinstance(results["bad"], ValueError)
        with store.read() as txn:
            assert txn.get(b"a", db=db) == b"1" and txn.get(b"b", db=db) == b"1"
            assert txn.get(b"bad", db=db) is None


async def test_map_grows_instead_of_failing(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", map_size=1 << 20, sync=False) as store:
        db = store.db(b"meta")
        blob = b"x" * 4000
        for chunk in range(8):
            await store.write(lambda txn, c=chunk: [txn.put(b"%d-%d" % (c, i), blob, db=db)
                                                   for i in range(200)])
        assert store.stats.map_grown >= 1
        assert store.entries(b"meta") == 1600


async def test_unregistered_db_and_closed_store_raise_store_error(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db") as store:
        with pytest.raises(StoreError):
            store.db(b"nope")
    with pytest.raises(StoreError):
        await store.write(lambda txn: None)


def test_all_core_databases_are_registered() -> None:
    for name in (b"messages", b"idempotency", b"outbox", b"carriers", b"campaigns",
                 b"callbacks", b"accounts", b"contacts", b"orphans", b"unknown"):
        assert name in STORE_DATABASES


async def test_writes_waiting_when_the_writer_stops_get_an_answer(tmp_path: Path) -> None:
    outcomes: list[str] = []

    async def run_store(task_status: trio.TaskStatus[object]) -> None:
        with trio.CancelScope() as scope:
            async with open_store(tmp_path / "db", max_queue=100) as store:
                task_status.started((store, scope))
                await trio.sleep_forever()

    async def waiter(store: object) -> None:
        try:
            await store.write(lambda txn: None)  # type: ignore[attr-defined]
            outcomes.append("committed")
        except StoreError:
            outcomes.append("refused")

    with trio.fail_after(10):  # nobody may hang on a commit that will never happen
        async with trio.open_nursery() as nursery:
            store, scope = await nursery.start(run_store)
            for _ in range(200):
                nursery.start_soon(waiter, store)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()  # the store (and its writer) stops while writes wait
    assert len(outcomes) == 200
    assert set(outcomes) <= {"committed", "refused"}


async def test_write_queue_full_reports_a_full_queue(tmp_path: Path) -> None:
    release = threading.Event()
    async with open_store(tmp_path / "db", max_queue=4) as store:
        assert not store.write_queue_full
        async with trio.open_nursery() as nursery:
            nursery.start_soon(store.write, lambda txn: release.wait(5))  # the writer is busy
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(6):
                nursery.start_soon(store.write, lambda txn: None)
            await trio.testing.wait_all_tasks_blocked()
            assert store.write_queue_full
            release.set()
        assert not store.write_queue_full


def _commit_latency_count() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("septet_store_commit_latency_seconds_count") or 0.0


async def test_each_group_commit_is_timed_once(tmp_path: Path) -> None:
    before = _commit_latency_count()
    async with open_store(tmp_path / "db") as store:
        db = store.db(b"meta")
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(store.write, lambda txn, i=i: txn.put(b"%05d" % i, b"x", db=db))
        commits = store.stats.commits
    assert _commit_latency_count() - before == commits
