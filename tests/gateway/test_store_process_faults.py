"""The writer process when things go wrong (``[store] writer = "process"``): a failed commit is
counted and fails accepts at once, a child dying in the middle of a reply or sending a garbled
frame fails its callers and stops the block, a child of other code refuses to serve, and what
was in the pipe when the child died is settled by the next start's recovery.

Real subprocesses and real LMDB files in tmp_path. Where the fault cannot be produced on
demand in a real child (a disk error, a torn reply), a scripted child speaks the same frames
(``gateway._store_process_wire``) and misbehaves on cue."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path

import prometheus_client
import pytest
import trio
import trio.testing

from actors import messages as m
from actors.errors import StoreError
from gateway import _store_process as sp
from gateway import metrics
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store
from tests.gateway.test_store_process import NOW, messages, process_pipeline

SCRIPTED_CHILD = textwrap.dedent("""
    import os, sys, time
    from gateway._store_process_wire import FrameReader, frame
    mode = sys.argv[1]
    send = lambda value: os.write(1, frame(value))
    send(["ready", os.getpid(), 1 << 30, time.time(), 0.0, 0])
    reader = FrameReader()
    while data := os.read(0, 1 << 16):
        reader.feed(data)
        for rid, op, *args in reader.frames():
            if mode == "failed_commit":  # the disk is full: accepts fail, the commit counted
                send([[], [[rid, False, ["Error", "commit failed: disk full"]]], 1])
            elif mode == "torn_reply":  # committed, then died writing the reply
                whole = frame([[0.0] * 6, [[rid, True, None]], 0])
                os.write(1, whole[:len(whole) // 2])
                os._exit(0)
            elif mode == "garbled":  # 0xc1 is never used by msgpack
                os.write(1, b"\\x00\\x00\\x00\\x02\\xc1\\xc1")
""")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the next writer process the scripted child; append its mode to the list."""
    mode: list[str] = []
    monkeypatch.setattr(sp, "_child_argv",
                        lambda config: [sys.executable, "-c", SCRIPTED_CHILD, mode[0], config])
    return mode


async def test_a_failed_commit_is_counted_and_fails_accepts_at_once(
        tmp_path: Path, scripted: list[str]) -> None:
    scripted.append("failed_commit")
    async with process_pipeline(tmp_path / "db") as (store, pipe):
        with pytest.raises(StoreError, match="commit failed"):
            await pipe.accept(messages(2))
        assert store.stats.failed_commits == 1  # what /metrics reports (both writers)
        assert pipe.statistics().writer.failed_commits == 1
        assert store.stats.failed_ops == 1
        metrics.bind_store(store)
        scraped = prometheus_client.generate_latest().decode()
        assert "\nseptet_store_failed_commits_total 1.0\n" in scraped
        # For a second after a failed commit, accepts are refused without asking the child
        # (as the thread writer's fail_fast): the HTTP layer answers 503 at once.
        with pytest.raises(StoreError, match="cannot commit now"):
            await pipe.accept(messages(2))
        assert pipe.statistics().writer.failed_commits == 1


async def test_a_child_dying_in_the_middle_of_a_reply_fails_its_caller(
        tmp_path: Path, scripted: list[str]) -> None:
    scripted.append("torn_reply")
    errors: list[StoreError] = []
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="in the middle of a reply"),
                            flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            try:  # in doubt (it may have committed): never acknowledged
                await pipe.mark_submitting([], NOW)
            except StoreError as exc:
                errors.append(exc)
            await trio.sleep_forever()  # the block is torn down by the child's death
    assert len(errors) == 1 and "middle of a reply" in str(errors[0])


async def test_a_garbled_reply_stops_the_block_and_kills_the_child(
        tmp_path: Path, scripted: list[str]) -> None:
    scripted.append("garbled")
    errors: list[StoreError] = []
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="bad frame"),
                            flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            try:
                await pipe.expire_orphans(NOW, 1)
            except StoreError as exc:
                errors.append(exc)
            await trio.sleep_forever()
    assert len(errors) == 1
    assert pipe.process.returncode == -signal.SIGKILL


async def test_a_child_of_other_code_refuses_to_serve(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child imports the installed code afresh at each start: replaced under a running
    gateway, it must refuse clearly rather than half understand the frames."""
    monkeypatch.setattr(sp, "WIRE_VERSION", -1)
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="code 2"),
                            flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            with pytest.raises(StoreError):
                await pipe.expire_orphans(NOW, 1)
            await trio.sleep_forever()


async def test_requests_in_the_pipe_when_the_child_dies_fail_and_recovery_settles_them(
        tmp_path: Path) -> None:
    msgs = messages(5)
    parts = [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"x", 1, x.account)
             for x in msgs]
    outcomes = [m.PartSubmitted(x.msg_id, 1, 1, "c1", m.CarrierId(f"{100 + i}"), NOW + 1)
                for i, x in enumerate(msgs)]
    errors: list[StoreError] = []
    with pytest.RaisesGroup(pytest.RaisesExc(StoreError, match="exited"),
                            flatten_subgroups=True):
        async with process_pipeline(tmp_path / "db") as (_, pipe):
            await pipe.accept(msgs)
            assert await pipe.mark_submitting(parts, NOW) == [True] * 5
            os.kill(pipe.pid, signal.SIGSTOP)  # the outcomes wait in the pipe, unread

            async def submit_outcomes() -> None:
                try:
                    await pipe.apply(outcomes, NOW + 1)
                except StoreError as exc:
                    errors.append(exc)

            with trio.CancelScope(shield=True), trio.fail_after(10):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(submit_outcomes)
                    await trio.testing.wait_all_tasks_blocked()
                    os.kill(pipe.pid, signal.SIGKILL)
            await trio.sleep_forever()
    assert len(errors) == 1  # never acknowledged
    async with open_store(tmp_path / "db") as store:  # the next start
        recovered = await PipelineStore(store).recover("resend", NOW + 2)
    assert recovered.in_doubt == 5  # the parts whose outcome was lost: sent again


def test_septet_serve_exits_non_zero_when_its_writer_process_dies(tmp_path: Path) -> None:
    """The gateway must not run on without its writer: it stops with an error, and the next
    start's recovery settles what was in flight."""
    import subprocess
    import time

    env = {**os.environ, "SEPTET_STORE__PATH": str(tmp_path / "db"), "SEPTET_HTTP__PORT": "0",
           "SEPTET_STORE__WRITER": "process", "SEPTET_LOG_LEVEL": "WARNING"}
    root = Path(__file__).resolve().parents[2]
    gateway = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], cwd=root, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30  # waits on real processes, not on program time
        writers: list[int] = []  # serve has other, short-lived children: pick the writer
        while not writers and time.monotonic() < deadline and gateway.poll() is None:
            writers = [pid for pid in _children(gateway.pid)
                       if b"_store_writer_main" in _cmdline(pid)]
            time.sleep(0.02)
        assert len(writers) == 1, "the writer process did not start"
        os.kill(writers[0], signal.SIGKILL)
        assert gateway.wait(timeout=30) != 0
        assert gateway.stderr is not None
        assert b"store writer process" in gateway.stderr.read()
    finally:
        gateway.kill()
        gateway.wait()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it ended meanwhile
        return b""
