"""The writer process (``[store] writer = "process"``): same rows as the thread writer, one
failing op alone rolled back, replies only after commit, a dead child fails loudly, the child
dies with its parent, map size handling. Real subprocesses, real LMDB files in tmp_path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from actors import messages as m
from actors.errors import StoreError
from actors.ingress import MsgIdFactory
from gateway._store_pipeline import PipelineStore
from gateway._store_process import (
    PROCESS_MAP_SIZE,
    ProcessPipelineStore,
    open_process_pipeline,
)
from gateway.store import STORE_DATABASES, Store, open_store

NOW = 1_790_000_000.0
ROOT = Path(__file__).resolve().parents[2]


def messages(n: int, start: int = 0, *, campaign: str = "c") -> list[m.Message]:
    ids = MsgIdFactory(lambda: NOW)
    return [m.Message(ids(), f"acc{i % 2}", f"+35191{i:07d}", "Septet", "hi", "transliterate",
                      NOW, campaign=campaign) for i in range(start, start + n)]


def dump(store: Store) -> dict[bytes, list[Any]]:
    """Every row of every database; of ``unknown`` the values (keys are a per-process clock
    sequence)."""
    with store.read() as txn:
        rows: dict[bytes, list[Any]] = {
            name: list(txn.cursor(db=store.db(name))) for name in STORE_DATABASES}
    rows[b"unknown"] = [v for _, v in rows[b"unknown"]]
    return rows


@asynccontextmanager
async def process_pipeline(path: Path, *, map_size: int = PROCESS_MAP_SIZE
                           ) -> AsyncIterator[tuple[Store, ProcessPipelineStore]]:
    async with open_store(path, map_size=map_size) as store, \
            open_process_pipeline(store, receipt_timeout=60.0) as pipe:
        yield store, pipe


async def drive(pipe: Any, msgs: list[m.Message]) -> list[Any]:
    """Every hot op once, in a message's order of life; returns the results."""
    parts = [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"x", 1, x.account)
             for x in msgs]
    subs = [m.PartSubmitted(x.msg_id, 1, 1, "c1", m.CarrierId(f"{1000 + i}"), NOW + 1)
            for i, x in enumerate(msgs[:-2])]
    failed = [m.PartFailed(msgs[-2].msg_id, 1, 1, "c1", "0x0B", "rejected", NOW + 1)]
    receipts: list[m.Kind] = [
        m.CarrierReceipt("c1", f"{1000 + i}", "DELIVRD", "000", NOW + 2, NOW + 2)
        for i in range(len(msgs) - 2)]
    receipts.append(m.CarrierReceipt("c1", "999999", "DELIVRD", "000", NOW + 2, NOW + 2))
    return [await pipe.accept(msgs), await pipe.mark_submitting(parts, NOW + 1),
            await pipe.apply([*subs, *failed], NOW + 1), await pipe.apply(receipts, NOW + 2),
            await pipe.expire_orphans(NOW + 3, 100), await pipe.recover("resend", NOW + 4)]


async def test_every_op_writes_the_same_rows_as_the_thread_writer(tmp_path: Path) -> None:
    msgs = messages(20)
    async with open_store(tmp_path / "t") as store:
        expected = await drive(PipelineStore(store, receipt_timeout=60.0), msgs)
        rows = dump(store)
    async with process_pipeline(tmp_path / "p") as (store, pipe):
        got = await drive(pipe, msgs)
        assert got == expected
        assert dump(store) == rows
        assert pipe.outbox_size() == 1  # the last message was never submitted
        assert pipe.last_contacted("acc0", msgs[0].to) == NOW + 1
        assert pipe.statistics().writer.commits == 5  # recover ran on the writer thread
    assert rows[b"unknown"]  # the stray receipt was parked, then expired to unknown


async def test_recovery_does_not_wait_for_the_child(tmp_path: Path) -> None:
    """Start-up: the gateway recovers (and turns ready) while the child is still starting; the
    pipeline's first hot ops wait in the pipe for it."""
    async with process_pipeline(tmp_path / "db") as (store, pipe):
        os.kill(pipe.pid, signal.SIGSTOP)  # a child that has not started yet
        try:
            with trio.fail_after(10):
                assert (await pipe.recover("resend", NOW)).in_doubt == 0
        finally:
            os.kill(pipe.pid, signal.SIGCONT)
        await pipe.accept(messages(2))
        assert store.entries(b"messages") == 2


async def test_an_op_failing_in_the_child_fails_alone(tmp_path: Path) -> None:
    async with process_pipeline(tmp_path / "db") as (store, pipe):
        await pipe.expire_orphans(NOW, 1)  # warm: the next three go in one write
        commits = pipe.statistics().writer.commits
        first, second = messages(3), messages(3, 3)
        results: dict[str, object] = {}

        async def run(name: str, op: str, *args: Any) -> None:
            try:
                results[name] = await pipe._call(op, *args)
            except StoreError as exc:
                results[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", "accept", m.encode_batch(first))
            nursery.start_soon(run, "bad", "apply", b"\x92\x01", NOW)  # not a batch of rows
            nursery.start_soon(run, "b", "accept", m.encode_batch(second))
        assert pipe.statistics().writer.commits == commits + 1
        assert isinstance(results["bad"], StoreError)
        assert "apply failed" in str(results["bad"])
        assert results["a"] is None and results["b"] is None
        assert store.entries(b"messages") == 6
        assert pipe.statistics().writer.failed_ops == 1


async def test_replies_come_after_the_commit_and_a_killed_child_stops_the_pipeline(
        tmp_path: Path) -> None:
    msgs = messages(50)
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="exited"), flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            await pipe.accept(msgs)
            os.kill(pipe.pid, signal.SIGKILL)  # right after the reply: it must be on disk
            with trio.fail_after(10):
                await trio.to_thread.run_sync(pipe.process.wait)
            await trio.sleep_forever()  # the block is torn down by the writer's death
    async with open_store(tmp_path / "db") as store:  # a fresh open of the file
        assert store.entries(b"messages") == 50 and store.entries(b"outbox") == 50


async def test_a_dead_child_fails_waiting_and_new_calls(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError), flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            os.kill(pipe.pid, signal.SIGSTOP)  # the call below waits for its reply

            async def waiting() -> None:
                try:
                    await pipe.accept(messages(5))
                except StoreError as exc:
                    errors.append(exc)

            with trio.CancelScope(shield=True), trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(waiting)
                    await trio.testing.wait_all_tasks_blocked()
                    os.kill(pipe.pid, signal.SIGKILL)
                with pytest.raises(StoreError):
                    await pipe.expire_orphans(NOW, 1)
    assert len(errors) == 1


async def test_the_child_outlives_idle_worker_threads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: spawned from a trio worker thread (``trio.open_process``), the child got
    PDEATHSIG when that thread ended after 10 s idle, and the gateway stopped."""
    import trio._core._thread_cache as thread_cache

    monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 0.01)
    async with process_pipeline(tmp_path / "db") as (store, pipe):
        await pipe.accept(messages(5))
        await trio.sleep(0.3)  # real time for idle worker threads to end (not program logic)
        await pipe.accept(messages(5, 5))
        assert store.entries(b"messages") == 10
        assert pipe.process.poll() is None


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    parent = textwrap.dedent(f"""
        import trio
        from gateway.store import open_store
        from gateway._store_process import open_process_pipeline, PROCESS_MAP_SIZE
        async def main():
            async with open_store({str(tmp_path / "db")!r}, map_size=PROCESS_MAP_SIZE) as s, \\
                    open_process_pipeline(s) as p:
                print(p.pid, flush=True)
                await trio.sleep_forever()
        trio.run(main)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        assert _state(child) not in ("gone", "Z")
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5  # waits on the kernel, not on program time
        while _state(child) not in ("gone", "Z", "X") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _state(child) in ("gone", "Z", "X")
    finally:
        proc.kill()
        proc.wait()


async def test_a_full_map_fails_the_batch_and_the_child_keeps_serving(tmp_path: Path) -> None:
    async with process_pipeline(tmp_path / "db", map_size=1 << 20) as (store, pipe):
        with pytest.raises(StoreError, match="map is full"):
            for k in range(50):  # ~1.2 kB a message: the 1 MiB map fills within 50 x 100
                await pipe.accept(messages(100, k * 100, campaign=""))
        kept = store.entries(b"messages")
        assert 0 < kept < 5000
        assert await pipe.expire_orphans(NOW, 1) == 0  # still serving
        # The gateway's own writer grows the map; the child adopts the new size.
        db = store.db(b"meta")
        # 2 MiB on top of the full 1 MiB map: doubled twice (4 MiB), leaving ~0.9 MiB free.
        # (A 1 MiB value could just fit the first doubling and leave the accept below no room.)
        await store.write(lambda txn: txn.put(b"big", b"x" * (2 << 20), db=db))
        assert store.stats.map_grown >= 2
        await pipe.accept(messages(100, 10_000, campaign=""))
        assert store.entries(b"messages") == kept + 100


def test_process_map_is_sparse_on_disk(tmp_path: Path) -> None:
    """Opening with the 64 GiB map costs no disk: the file grows only as pages are used."""
    import lmdb

    env = lmdb.open(str(tmp_path), map_size=PROCESS_MAP_SIZE)
    with env.begin(write=True) as txn:
        txn.put(b"k", b"v")
    env.close()
    assert (tmp_path / "data.mdb").stat().st_size < 1 << 20


async def test_sigterm_to_the_child_is_left_to_the_gateway(tmp_path: Path) -> None:
    """A service manager signals every process of the unit: the gateway drains the child."""
    async with process_pipeline(tmp_path / "db") as (store, pipe):
        await pipe.accept(messages(3))  # the child is up (its handlers are set)
        os.kill(pipe.pid, signal.SIGTERM)
        await pipe.accept(messages(3, 3))
        assert store.entries(b"messages") == 6
    assert pipe.process.returncode == 0  # stopped by the gateway closing its stdin


def _children() -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


async def test_serve_with_the_process_writer_delivers_with_and_without_idempotency_keys(
        tmp_path: Path) -> None:
    """``septet serve`` with ``[store] writer = "process"``: an accept without ``also`` goes
    to the writer process, one with an Idempotency-Key (an ``also`` op) to the writer thread;
    both are delivered, and the writer process stops with the gateway."""
    import httpx

    from gateway import cli
    from gateway import config as cfg

    before = set(_children())
    config = cfg.load(None, env={"SEPTET_STORE__PATH": str(tmp_path / "db"),
                                 "SEPTET_HTTP__PORT": "0", "SEPTET_STORE__WRITER": "process",
                                 "SEPTET_SIMULATOR__DELIVERY_DELAY": "0"})
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: cli.serve(
            config, key_file=str(tmp_path / "key"), task_status=task_status))
        writers = set(_children()) - before
        assert len(writers) == 1
        key = (tmp_path / "key").read_text().strip()
        auth = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            ids = []
            for extra in ({}, {"idempotency-key": "k-1"}):
                r = await c.post("/v1/messages", headers={**auth, **extra},
                                 json={"to": "+351912345678", "from": "Septet", "text": "hi"})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            with trio.fail_after(10):
                for msg_id in ids:
                    while (await c.get(f"/v1/messages/{msg_id}", headers=auth)
                           ).json()["state"] != "DELIVERED":
                        await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    (writer,) = writers
    assert _state(writer) in ("gone", "Z", "X")
