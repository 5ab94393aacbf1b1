"""The callback outbox on either store writer: the same results, rows and memo whether its
enqueue and settle run on the gateway's writer thread or, by name, in the writer process
(``CallbackOutbox(store, writes=<ProcessPipelineStore>)``); a child dying under a settle
fails it with StoreError and acknowledges nothing.

Hypothesis drives random scripts through a loopback of the writer process (every request and
reply really packed into frames and read back, the child's ``Writer`` run in this process);
a fixed script then runs through a real child."""

from __future__ import annotations

import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.errors import StoreError
from actors.messages import MsgId, StatusEvent
from actors.ports import CallbackEntry, Settlement
from gateway._callback_ops import CALLBACK_DATABASES
from gateway._store_process import ProcessPipelineStore
from gateway._store_process_wire import FrameReader, frame, result_from_wire
from gateway._store_writer_main import Writer
from gateway.callback_outbox import CallbackOutbox, replay_dead_letters
from gateway.store import open_env, open_store
from tests.fakes import InlineStore
from tests.gateway.test_store_process import process_pipeline

NOW = 1_790_000_000.0
OUTCOMES = ("delivered", "retry", "postpone", "dead", "dropped")


def ev(msg: str, seq: int) -> StatusEvent:
    return StatusEvent(MsgId(msg), f"acc-{msg[-1]}", "SMS_SENT" if seq == 1 else "SMS_DELIVERED",
                       seq, NOW + seq, client_ref=f"r{seq}")


def rows(store: Any) -> dict[bytes, list[tuple[bytes, bytes]]]:
    with store.read() as txn:
        return {name: list(txn.cursor(db=store.db(name))) for name in CALLBACK_DATABASES}


class Loopback(ProcessPipelineStore):
    """The writer process's callback calls with the pipe and the process taken out: the
    request is packed into a frame and read back, run by the child's own ``Writer`` on its own
    environment in this process, and its reply frame read back the same way."""

    def __init__(self, writer: Writer) -> None:  # (no process: only _call is used)
        self.writer = writer

    async def _call(self, op: str, *args: Any) -> Any:
        await trio.lowlevel.checkpoint()
        reader = FrameReader()
        reader.feed(frame([1, op, *args]))
        replies, _timings = self.writer.run_batch(reader.frames())
        reader.feed(frame(replies))
        [[[_rid, ok, payload]]] = reader.frames()
        if not ok:
            raise StoreError(f"store writer process: {op} failed: {payload}")
        return result_from_wire(op, payload)


# ---------------------------------------------------------------------------- hypothesis

steps = st.lists(st.one_of(
    st.tuples(st.just("enqueue"), st.lists(st.tuples(st.sampled_from(["m1", "m2", "mo-3"]),
                                                     st.integers(1, 5)), min_size=1, max_size=5)),
    st.tuples(st.just("settle"), st.lists(st.tuples(st.sampled_from(OUTCOMES),
                                                    st.integers(0, 9)), min_size=1, max_size=3),
              st.booleans()),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.0004, 0.3, 7.0])),
    st.tuples(st.just("replay"), st.sampled_from(["acc-1", "acc-2", "acc-3"])),
), max_size=25)


def _decisions(due: Sequence[CallbackEntry], picks: list[tuple[str, int]], now: float
               ) -> list[Settlement]:
    out = []
    for outcome, pick in picks:
        at = now + 2.5 if outcome in ("retry", "postpone") else 0.0
        out.append(Settlement(due[pick % len(due)], outcome, at=at,  # type: ignore[arg-type]
                              error="http 503" if outcome != "delivered" else ""))
    return out


@settings(max_examples=60, deadline=None)
@given(steps)
def test_both_writers_give_the_same_results_rows_and_memo(script: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        thread_store = InlineStore(Path(tmp) / "t")
        process_store = InlineStore(Path(tmp) / "p")  # the gateway's reads of the child's env
        writer = Writer(process_store.env, process_store._dbs, receipt_timeout=None,
                        id_types={})
        try:
            trio.run(_run_script, thread_store, process_store, writer, script)
        finally:
            thread_store.env.close()
            process_store.env.close()


async def _run_script(thread_store: InlineStore, process_store: InlineStore, writer: Writer,
                      script: list[Any]) -> None:
    by_thread = CallbackOutbox(thread_store)  # type: ignore[arg-type]
    by_process = CallbackOutbox(process_store, writes=Loopback(writer))  # type: ignore[arg-type]
    now = NOW
    stale: list[CallbackEntry] = []  # entries read earlier: their decisions may come late
    for step in script:
        if step[0] == "enqueue":
            events = [ev(msg, seq) for msg, seq in step[1]]
            assert (await by_thread.enqueue(events, now=now)
                    == await by_process.enqueue(events, now=now))
        elif step[0] == "settle":
            due = by_thread.due(now, limit=10)
            assert by_process.due(now, limit=10) == due
            pool = stale if step[2] and stale else due
            if pool:
                decisions = _decisions(pool, step[1], now)
                await by_thread.settle(decisions, now=now)
                await by_process.settle(decisions, now=now)
            stale = due or stale
        elif step[0] == "tick":
            now += step[1]
        else:
            assert (await replay_dead_letters(thread_store, step[1], "all", now=now)  # type: ignore[arg-type]
                    == await replay_dead_letters(process_store, step[1], "all", now=now))  # type: ignore[arg-type]
        assert rows(process_store) == rows(thread_store)
        later = now + 100
        assert by_process.due(later, limit=100) == by_thread.due(later, limit=100)
        # The memo (filled from the child's replies) says what the rows say.
        cold = CallbackOutbox(process_store)  # type: ignore[arg-type]
        assert by_process.due(later, limit=100) == cold.due(later, limit=100)
        assert by_process._writing == []


async def test_the_memo_is_filled_from_the_childs_reply(tmp_path: Path) -> None:
    store = InlineStore(tmp_path / "db")
    writer = Writer(store.env, store._dbs, receipt_timeout=None, id_types={})
    outbox = CallbackOutbox(store, writes=Loopback(writer))  # type: ignore[arg-type]
    # Given out of order: the op runs them sorted, its indices are into what it was sent.
    assert await outbox.enqueue([ev("m2", 2), ev("m1", 1), ev("m2", 1), ev("m1", 1)],
                                now=NOW) == 3
    assert sorted(e.seq for e, _ in outbox._fresh.values()) == [1, 1]
    assert [(e.msg_id, e.seq) for e in outbox._held_back.values()] == [("m2", 2)]
    due = outbox.due(NOW, limit=10)
    assert [(e.event, e.first_attempt_at) for e in due] == [(ev("m1", 1), NOW), (ev("m2", 1), NOW)]
    await outbox.settle([Settlement(due[1], "delivered")], now=NOW + 1)
    # The release came back from the child: the held-back event is now fresh, no read needed.
    assert outbox._held_back == {}
    assert [v for v in outbox._fresh.values() if v[0].seq == 2] == [(ev("m2", 2), NOW + 1)]
    assert outbox.due(NOW + 1, limit=10) == CallbackOutbox(store).due(NOW + 1, limit=10)  # type: ignore[arg-type]
    store.env.close()


# ------------------------------------------------------------------------- a real child


async def _fixed_script(outbox: CallbackOutbox) -> list[Any]:
    seen: list[Any] = []
    seen.append(await outbox.enqueue([ev("m1", 1), ev("m1", 2), ev("m2", 1), ev("m3", 2)],
                                     now=NOW))
    seen.append(await outbox.enqueue([ev("m1", 1), ev("m3", 1), ev("m4", 1)], now=NOW + 0.5))
    due = outbox.due(NOW + 1, limit=10)
    seen.append(due)
    await outbox.settle([Settlement(due[0], "delivered"),
                         Settlement(due[1], "retry", at=NOW + 3, error="http 500"),
                         Settlement(due[2], "dead", error="http 410"),
                         Settlement(due[3], "postpone", at=NOW + 2)], now=NOW + 1)
    seen.append(outbox.due(NOW + 5, limit=10))
    await outbox.settle([Settlement(e, "dropped") for e in outbox.due(NOW + 5, limit=10)],
                        now=NOW + 5)
    seen.append(outbox.due(NOW + 9, limit=10))
    return seen


async def test_a_real_writer_process_writes_what_the_thread_writer_writes(
        tmp_path: Path) -> None:
    async with open_store(tmp_path / "t") as store:
        expected = await _fixed_script(CallbackOutbox(store))
        expected_rows = rows(store)
    async with process_pipeline(tmp_path / "p") as (store, pipe):
        outbox = CallbackOutbox(store, writes=pipe)
        assert await _fixed_script(outbox) == expected
        assert rows(store) == expected_rows
        child = pipe.statistics().writer
        assert child.ops == 4  # two enqueues, two settles: all in the child
        assert store.stats.commits == child.commits  # and none on the writer thread
        assert outbox.due(NOW + 9, limit=10) == CallbackOutbox(store).due(NOW + 9, limit=10)
    assert expected[:2] == [4, 1]  # m1:1 again and m3:1 (behind m3:2) were refused


async def test_a_child_dying_during_a_settle_fails_it_and_acknowledges_nothing(
        tmp_path: Path) -> None:
    errors: list[StoreError] = []
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError), flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (store, pipe):
            outbox = CallbackOutbox(store, writes=pipe)
            await outbox.enqueue([ev("m1", 1), ev("m1", 2)], now=NOW)
            [entry] = outbox.due(NOW, limit=10)
            os.kill(pipe.pid, signal.SIGSTOP)  # the settle below waits for its reply

            async def settling() -> None:
                try:
                    await outbox.settle([Settlement(entry, "delivered")], now=NOW + 1)
                except StoreError as exc:
                    errors.append(exc)

            with trio.CancelScope(shield=True), trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(settling)
                    await trio.testing.wait_all_tasks_blocked()
                    os.kill(pipe.pid, signal.SIGKILL)
                # Nothing of the failed settle reached the memo; the next call fails too.
                assert outbox._writing == []
                assert entry.key in outbox._fresh and len(outbox._held_back) == 1
                with pytest.raises(StoreError):
                    await outbox.enqueue([ev("m9", 1)], now=NOW + 2)
    assert len(errors) == 1
    async with open_store(tmp_path / "db") as store:  # the settle never committed
        assert [e.key for e in CallbackOutbox(store).due(NOW + 10, limit=10)] == [entry.key]


def test_the_writer_process_opens_the_callback_databases(tmp_path: Path) -> None:
    """The child opens the databases the gateway registered: the callback outbox's are among
    them as soon as ``gateway.callback_outbox`` is imported (``septet serve`` imports it before
    it opens the store)."""
    env, dbs = open_env(tmp_path / "db", sync=False, metasync=False)
    try:
        assert set(CALLBACK_DATABASES) <= set(dbs)
    finally:
        env.close()
