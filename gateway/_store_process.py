"""The pipeline's hot store writes in a writer process (``[store] writer = "process"``).

The gateway is one process: its trio loop and its LMDB writer thread share one GIL, and the
writer thread's ops are about half the CPU of a message (bench/RESULTS.md). This module moves
the pipeline's hot ops (accept without ``also``, mark_submitting, apply, expire_orphans) and
the callback outbox's enqueue and settle (``callback_enqueue``/``callback_settle``: a
``gateway.callback_outbox.CallbackOutbox`` built with ``writes=`` this store) into
a child process, ``gateway._store_writer_main``, that opens the same LMDB environment; LMDB
serialises its write transactions with the gateway's own writer thread, which keeps every other
write (``Store.write``: idempotency keys, campaigns, inbound pushes, accounts, ``accept`` with an
``also`` op, and the start-up ``recover``). Reads stay inline in the gateway.

Theory of operation
-------------------
:class:`ProcessPipelineStore` satisfies ``actors.ports.PipelineStore``. A call encodes its op
as a frame (``gateway._store_process_wire``: an op name and msgpack arguments, the message
kinds in their wire form), hands it to the one sender task (which writes everything queued in
one ``send_all``, so several frames are in flight while the child commits) and waits for its
reply. The reader task reads the child's reply frames (one per commit, sent after the commit)
and wakes the callers. Nothing is acknowledged before the child's commit.

If the child dies, every waiting and every later call fails with ``StoreError`` and the reader
task raises, which tears down :func:`open_process_pipeline`'s block: the gateway stops loudly,
and the next start's recovery (``op_recover``, the in-doubt policy) settles what was in flight.
The child dies with the gateway (``PR_SET_PDEATHSIG``) and when its stdin closes. It is
spawned with ``subprocess.Popen`` on the trio thread itself, not with ``trio.open_process``:
that spawns from a cached worker thread, and the kernel sends PDEATHSIG when the parent
*thread* ends, which a worker thread does after 10 s idle (the writer died 10 s after start).

Shutdown: leaving the block waits (bounded) for the replies still due, closes the child's
stdin, and waits (bounded) for it to exit, then kills it.

Both processes must open the environment with the same map size (once the data of one grows
past the other's map, the other's next transaction fails with MDB_MAP_RESIZED): open the store
with ``PROCESS_MAP_SIZE`` (see :func:`process_map_size`); the file grows only as pages are used.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from actors import messages as m
from actors.errors import StoreError
from actors.ports import Applied, InDoubtPolicy, Recovered
from gateway import metrics
from gateway._callback_ops import Enqueued, SettleRow
from gateway._store_pipeline import PipelineStore
from gateway._store_process_wire import WIRE_VERSION, FrameReader, frame, result_from_wire
from gateway.store import FAILED_COMMIT_PAUSE, Store, WriterStats

logger = logging.getLogger(__name__)

PROCESS_MAP_SIZE: Final = 64 << 30
"""Map size both processes open the environment with in process mode (64 GiB of address space;
without ``writemap`` the file grows only as pages are used: 12 KiB for a fresh store here)."""
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0
F_SETPIPE_SZ: Final = 1031
PIPE_SIZE: Final = 1 << 20


def process_map_size(configured: int) -> int:
    """The map size to open the store with in process mode."""
    return max(configured, PROCESS_MAP_SIZE)


@dataclass(slots=True)
class _Waiter:
    op: str
    done: trio.Event = field(default_factory=trio.Event)
    ok: bool = False
    payload: Any = None


@dataclass(slots=True)
class ProcessStats:
    """The writer process's counters, from its reply frames (``statistics()``)."""

    writer: WriterStats = field(default_factory=WriterStats)
    child_cpu_seconds: float = 0.0  # the child's process CPU time, as of its last reply
    in_flight: int = 0  # requests sent, not yet answered


class ProcessPipelineStore:
    """``actors.ports.PipelineStore`` whose hot writes run in the writer process.

    Build it with :func:`open_process_pipeline`. Reads and ``accept(..., also=...)`` go to
    ``thread`` (a plain :class:`gateway._store_pipeline.PipelineStore` on the same store).
    """

    def __init__(self, store: Store, thread: PipelineStore,
                 process: subprocess.Popen[bytes]) -> None:
        self.store = store
        self.thread = thread
        self.process = process
        self.stats = ProcessStats()
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._queued: list[bytes] = []
        self._wake = trio.Event()
        self._dead: str = ""  # why calls are refused (empty: the child is serving)
        self.closing = False
        self.ready = trio.Event()  # the child has opened the environment
        self.spawned = time.time()  # wall clock: the child reports its own start on it

    @property
    def pid(self) -> int:
        """The writer process's pid."""
        return self.process.pid

    # ------------------------------------------------------------------- PipelineStore

    async def accept(self, batch: Sequence[m.Message],
                     also: Callable[[Any], None] | None = None) -> None:
        if also is not None:  # a closure cannot cross the process boundary
            await self.thread.accept(batch, also)
            return
        if trio.current_time() < self.stats.writer.failing_until:  # as Store.write(fail_fast)
            raise StoreError("the store cannot commit now (disk full or I/O error)")
        await self._call("accept", m.encode_batch(batch))

    def read_due(self, cursor: bytes, now: float, limit: int,
                 skip: set[str]) -> tuple[Sequence[m.Message], bytes, float | None]:
        return self.thread.read_due(cursor, now, limit, skip)

    def outbox_size(self) -> int:
        return self.thread.outbox_size()

    async def mark_submitting(self, parts: Sequence[m.SubmitPart], now: float) -> list[bool]:
        result: list[bool] = await self._call("mark", m.encode_batch(parts), now)
        return result

    async def apply(self, items: Sequence[m.Kind], now: float) -> Applied:
        result: Applied = await self._call("apply", m.encode_batch(items), now)
        return result

    def timeouts_due(self, now: float, limit: int) -> list[m.MsgId]:
        return self.thread.timeouts_due(now, limit)

    async def expire_orphans(self, older_than: float, limit: int) -> int:
        result: int = await self._call("expire", older_than, limit)
        return result

    # ------------------------------------------- the callback outbox (gateway._callback_ops)

    async def callback_enqueue(self, events: Sequence[m.StatusEvent], now: float) -> Enqueued:
        """``op_enqueue`` in the writer process (``CallbackOutbox(writes=...)``)."""
        new, scheduled, waiting = await self._call("cb_enqueue", m.encode_batch(events), now)
        return new, scheduled, waiting

    async def callback_settle(self, rows: Sequence[SettleRow], now: float) -> list[bytes]:
        """``op_settle`` in the writer process (``CallbackOutbox(writes=...)``)."""
        released: list[bytes] = await self._call("cb_settle", rows, now)
        return released

    async def recover(self, policy: InDoubtPolicy, now: float) -> Recovered:
        # On the writer thread, not in the child: it runs once, before the pipeline starts,
        # with nothing else to do, and so the gateway need not wait for the child's start
        # (0.3-0.45 s of interpreter and imports on this machine under load) to be ready: the
        # first hot ops wait in the pipe instead.
        return await self.thread.recover(policy, now)

    def last_contacted(self, account: str, number: str) -> float | None:
        return self.thread.last_contacted(account, number)

    def statistics(self) -> ProcessStats:
        """A snapshot of the writer process's counters."""
        s, w = self.stats, self.stats.writer
        return ProcessStats(WriterStats(w.commits, w.ops, w.failed_ops, 0, len(self._waiters),
                                        w.ops_seconds, w.commit_seconds, w.failed_commits, 0.0,
                                        w.ops_cpu_seconds, w.commit_cpu_seconds),
                            s.child_cpu_seconds, len(self._waiters))

    # ------------------------------------------------------------------------ plumbing

    async def _call(self, op: str, *args: Any) -> Any:
        if self._dead:
            raise StoreError(self._dead)
        rid = next(self._ids)
        waiter = _Waiter(op)
        self._waiters[rid] = waiter
        self._queued.append(frame([rid, op, *args]))
        self._wake.set()
        try:
            await waiter.done.wait()
        finally:
            self._waiters.pop(rid, None)
        if not waiter.ok:
            raise StoreError(f"store writer process: {op} failed: {': '.join(waiter.payload)}")
        return result_from_wire(op, waiter.payload)

    async def _send_loop(self, stream: trio.abc.SendStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            data, self._queued = b"".join(self._queued), []
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._die(f"store writer process is gone ({exc})")
                return

    async def _receive_loop(self, stream: trio.abc.ReceiveStream) -> None:
        reader = FrameReader()
        while True:
            try:
                data = await stream.receive_some(1 << 20)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                break
            reader.feed(data)
            try:
                for reply in reader.frames():
                    if reply[0] == "ready":
                        self._hello(*reply[1:])
                    else:
                        self._answer(*reply)
            except Exception as exc:  # a garbled frame: nothing it says can be trusted
                self.process.kill()
                self._die(f"store writer process sent a bad frame ({exc!r})")
                raise StoreError(f"store writer process sent a bad frame ({exc!r})") from exc
        code = await _wait(self.process)
        why = f"store writer process exited (code {code})"
        if reader.pending:  # it died writing a reply: those callers are in doubt, not lost
            why += f" in the middle of a reply ({reader.pending} bytes)"
        self._die(why)
        if not self.closing:
            logger.error("store writer process (pid %d): %s: stopping", self.process.pid, why)
            raise StoreError(why)

    def _hello(self, pid: int, map_size: int, started: float = 0.0, open_s: float = 0.0,
               stale_readers: int = 0) -> None:
        """The child's first frame: it has opened the environment."""
        self.ready.set()
        logger.info("store writer process ready (pid %d, map %d MiB) %.3f s after spawn: "
                    "interpreter and imports %.3f s, environment open %.3f s; %d stale reader "
                    "slots cleared", pid, map_size >> 20, time.time() - self.spawned,
                    started - self.spawned, open_s, stale_readers)

    def _answer(self, timings: list[float], replies: list[list[Any]],
                failed_commits: int = 0) -> None:
        w = self.stats.writer
        if failed_commits:  # the child tries again with back-off; accepts fail meanwhile
            w.failed_commits += failed_commits
            self.store.stats.failed_commits += failed_commits
            w.failing_until = trio.current_time() + FAILED_COMMIT_PAUSE
        if timings:  # a commit happened (a batch failed whole sends none)
            w.failing_until = 0.0
            took, ops_s, commit_s, ops_cpu, commit_cpu, child_cpu = timings
            metrics.STORE_COMMIT_LATENCY.observe(took)
            for s in (w, self.store.stats):  # /metrics sums both writers' commits and ops
                s.commits += 1
                s.ops += len(replies)
                s.ops_seconds += ops_s
                s.commit_seconds += commit_s
            w.ops_cpu_seconds += ops_cpu
            w.commit_cpu_seconds += commit_cpu
            self.stats.child_cpu_seconds = child_cpu
        for rid, ok, payload in replies:
            if not ok:
                w.failed_ops += 1
                self.store.stats.failed_ops += 1
            waiter = self._waiters.get(rid)
            if waiter is not None:  # None: its caller was cancelled meanwhile
                waiter.ok, waiter.payload = ok, payload
                waiter.done.set()

    def _die(self, why: str) -> None:
        if not self._dead:
            self._dead = why
        for waiter in self._waiters.values():
            if not waiter.done.is_set():
                waiter.ok, waiter.payload = False, ["StoreError", why]
                waiter.done.set()


def _child_config(store: Store, *, receipt_timeout: float | None,
                  id_types: Mapping[str, str]) -> str:
    info, flags = store.env.info(), store.env.flags()
    return json.dumps({
        "path": store.env.path(), "sync": flags["sync"], "metasync": flags["metasync"],
        "map_size": info["map_size"], "dbs": [n.decode("latin-1") for n in store._dbs],
        "receipt_timeout": receipt_timeout, "id_types": dict(id_types), "parent": os.getpid(),
        "wire": WIRE_VERSION,
        "log_level": logging.getLogger().getEffectiveLevel()})


def _child_argv(config: str) -> list[str]:
    """The child's command line (tests replace it with a scripted child)."""
    return [sys.executable, "-m", "gateway._store_writer_main", config]


def _child_env() -> dict[str, str]:
    """The environment of the child: ours, with this checkout importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _widen_pipe(stream: Any) -> None:
    try:  # bigger pipes: fewer wake-ups of either side per batch (Linux only)
        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


@asynccontextmanager
async def open_process_pipeline(
    store: Store, *, receipt_timeout: float | None = 48 * 3600,
    id_types: Mapping[str, str] | None = None,
) -> AsyncIterator[ProcessPipelineStore]:
    """Start the writer process on ``store``'s environment; stop it when the block ends.

    Args:
        store: the open store (its path, databases, sync flags and map size are the child's).
        receipt_timeout, id_types: as for :class:`gateway._store_pipeline.PipelineStore`.

    Raises:
        StoreError: the child did not start, or it died while the block ran.
    """
    thread = PipelineStore(store, receipt_timeout=receipt_timeout, id_types=id_types)
    config = _child_config(store, receipt_timeout=receipt_timeout, id_types=id_types or {})
    spawned = time.time()
    # On this (the trio) thread, which lives as long as the gateway: see the module docstring.
    process = subprocess.Popen(  # noqa: ASYNC220 - a few ms, once at start-up
        _child_argv(config), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_env())
    assert process.stdin is not None and process.stdout is not None
    send = trio.lowlevel.FdStream(os.dup(process.stdin.fileno()))
    receive = trio.lowlevel.FdStream(os.dup(process.stdout.fileno()))
    process.stdin.close()
    process.stdout.close()
    _widen_pipe(send)
    pipeline = ProcessPipelineStore(store, thread, process)
    pipeline.spawned = spawned
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pipeline._send_loop, send)
            nursery.start_soon(pipeline._receive_loop, receive)
            nursery.start_soon(_start_deadline, pipeline)
            try:
                yield pipeline
            finally:
                await _stop(pipeline, nursery, send)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()  # at once: it was killed
        await send.aclose()
        await receive.aclose()


async def _wait(process: subprocess.Popen[bytes]) -> int:
    """The child's exit code, once it has exited (waitpid in a worker thread)."""
    return await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)


async def _start_deadline(pipeline: ProcessPipelineStore) -> None:
    """Kill a child that has not opened the environment within ``START_TIMEOUT`` (the
    receive loop then fails every call and stops the block). The block does not wait for it:
    requests queue in the pipe meanwhile, so its start overlaps the gateway's own."""
    with trio.move_on_after(START_TIMEOUT):
        await pipeline.ready.wait()
        return
    logger.error("store writer process did not start within %.0f s", START_TIMEOUT)
    pipeline.process.kill()


async def _stop(pipeline: ProcessPipelineStore, nursery: trio.Nursery,
                send: trio.abc.SendStream) -> None:
    """Drain (bounded), close the child's stdin, wait for it (bounded)."""
    pipeline.closing = True
    process = pipeline.process
    t0 = time.monotonic()
    with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
        while pipeline._waiters and not pipeline._dead:
            await trio.sleep(0.01)
        pipeline._dead = pipeline._dead or "store writer process is stopping"
        while pipeline._queued:  # the sender task still has frames to write
            await trio.sleep(0.01)
        await send.aclose()
        code = await _wait(process)
        logger.info("store writer process stopped (code %s) in %.2f s", code,
                    time.monotonic() - t0)
    pipeline._die("store writer process is stopping")  # (any caller still waiting: timed out)
    nursery.cancel_scope.cancel()
