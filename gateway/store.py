"""The durable store: one LMDB environment, named databases, one group-committing writer.

Theory of operation
-------------------
Every write is an *op*: a plain function ``op(txn) -> T`` run inside a write transaction.
Callers ``await store.write(op)``; the request waits on a bounded channel. ONE writer task
drains what is waiting (at most ``max_batch`` requests, gathering for at most ``max_wait``
seconds), runs all of them in ONE write transaction in a worker thread
(``trio.to_thread.run_sync``), commits (``sync=True, metasync=True`` by default, so the commit
is an fsync) and only then wakes each waiter with its op's result. Nothing is acknowledged
before its commit. Measured on this machine: a batching writer sustains ~26k accepted
messages/s with fsync, one thread per request ~2.3k, and commits inside the event loop stall
it for up to 177 ms, hence the thread.

Each op runs in a nested child transaction (``env.begin(write=True, parent=txn)``, ~1.2 µs
measured), so an op that raises is rolled back alone and its caller gets the exception while
the other ops of the batch commit. When the map is full the whole batch is aborted, the map
doubled (``env.set_mapsize``, done on the trio thread where no read transaction can be open
because reads never span an ``await``) and the same batch is run again.

Reads are inline: ``with store.read() as txn:`` (a read-only snapshot, microseconds).

Databases (names are bytes; the layout is documented in docs/core.md):
    messages, state, outbox, inflight, carriers, campaigns, contacts, orphans,
    unknown, timeouts, history, idempotency, accounts, callbacks, meta
Other modules can register more names in ``STORE_DATABASES`` before opening the store or pass
``extra_dbs``.

Must not be imported by actors (they see the store through ``actors.ports``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import lmdb
import trio

from actors.errors import StoreError
from gateway import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

CORE_DATABASES: Final[tuple[bytes, ...]] = (
    b"messages",  # msg_id -> encode(Message)                      (immutable record)
    b"state",  # msg_id -> msgpack state record, with its events (actors.correlation.StateRecord)
    b"outbox",  # due_ms u64 BE || msg_id -> b""   not yet SENT/final, in due order
    b"inflight",  # msg_id -> b""                  parts handed to a carrier, no answer yet
    b"carriers",  # connector 0x00 carrier_key -> msgpack [msg_id, part]
    b"campaigns",  # account 0x00 campaign 0x00 counter -> msgpack int
    b"contacts",  # account 0x00 number -> msgpack float (last SENT time)
    b"orphans",  # connector 0x00 carrier_key -> msgpack [[parked_at, receipt wire], ...]
    b"unknown",  # u64 BE sequence -> encode(CarrierReceipt)   receipts never matched
    b"timeouts",  # due_ms u64 BE || msg_id -> b""   SENT messages waiting for receipts
    b"history",  # account 0x00 msg_id -> b""       per-account history in id (=time) order
    b"idempotency",  # owned by the HTTP layer (H4)
    b"accounts",  # owned by the HTTP layer (H4)
    b"callbacks",  # owned by the notifier (H6)
    b"meta",  # small named values (sequences)
)

STORE_DATABASES: list[bytes] = list(CORE_DATABASES)
"""Every name opened at start-up; other modules may append theirs before ``open_store``."""

DEFAULT_MAP_SIZE: Final = 1 << 30
FAILED_COMMIT_PAUSE: Final = 1.0  # seconds: longest retry pause, and fail-fast period
MAX_MAP_SIZE: Final = 1 << 40


@dataclass(slots=True)
class _Request(Generic[T]):
    op: Callable[[lmdb.Transaction[bytes]], T]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    fail_fast: bool = False


@dataclass(slots=True)
class WriterStats:
    """Cheap counters of the writer (``Store.statistics()``)."""

    commits: int = 0
    ops: int = 0
    failed_ops: int = 0
    map_grown: int = 0
    queued: int = 0
    ops_seconds: float = 0.0  # time spent running ops (worker thread)
    commit_seconds: float = 0.0  # time spent in commit (the fsync)
    failed_commits: int = 0  # commits that failed (disk full, I/O error)
    failing_until: float = 0.0  # trio time: fail_fast writes are refused until then
    ops_cpu_seconds: float = 0.0  # CPU time of the worker thread running ops and commits
    commit_cpu_seconds: float = 0.0  # the part of it spent in commit (GIL released: page
    # writes and fsync in the kernel)


class Store:
    """The open store. Build it with :func:`open_store`."""

    def __init__(
        self,
        env: lmdb.Environment,
        dbs: dict[bytes, Any],
        send: trio.MemorySendChannel[_Request[Any]],
        *,
        max_queue: int,
    ) -> None:
        self.env = env
        self._dbs = dbs
        self._send = send
        self._max_queue = max_queue
        self.stats = WriterStats()
        self.closed = False

    # ---------------------------------------------------------------------------- basic API

    def db(self, name: bytes) -> Any:
        """The handle of named database ``name`` (opened at start-up)."""
        try:
            return self._dbs[name]
        except KeyError:
            raise StoreError(f"database {name!r} was not registered") from None

    async def write(self, op: Callable[[lmdb.Transaction[bytes]], T], *,
                    fail_fast: bool = False) -> T:
        """Run ``op(txn)`` in the next group-committed write transaction.

        When a commit fails (disk full, I/O error) nothing of its batch is committed. A
        ``fail_fast`` request (one a client waits on: the HTTP accept path) then gets
        StoreError at once, and so does every new one for ``FAILED_COMMIT_PAUSE`` seconds
        (after that one is let through to probe). Other requests (the pipeline's own writes)
        are tried again with back-off until a commit succeeds, so no actor dies of a full
        disk and the work resumes when space returns.

        Returns:
            ``op``'s result, once the transaction holding it is durably committed.

        Raises:
            StoreError: the store is closed, or (``fail_fast`` only) it cannot commit.
            Exception: whatever ``op`` raised (only that op was rolled back).
        """
        if self.closed:
            raise StoreError("store is closed")
        if fail_fast and trio.current_time() < self.stats.failing_until:
            raise StoreError("the store cannot commit now (disk full or I/O error)")
        request: _Request[T] = _Request(op, fail_fast=fail_fast)
        self.stats.queued += 1
        try:
            await self._send.send(request)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as exc:
            raise StoreError("store is closed") from exc
        finally:
            self.stats.queued -= 1
        await request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[no-any-return]

    @property
    def write_queue_full(self) -> bool:
        """True when the writer's queue is at its bound (callers should back off)."""
        return self._send.statistics().current_buffer_used >= self._max_queue

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction[bytes]]:
        """A read-only snapshot. Use it inline; never hold it across an ``await``."""
        with self.env.begin(buffers=False) as txn:
            yield txn

    def entries(self, name: bytes) -> int:
        """Number of entries in database ``name`` (O(1))."""
        with self.read() as txn:
            return int(txn.stat(self.db(name))["entries"])

    def statistics(self) -> WriterStats:
        """A snapshot of the writer counters."""
        s = self.stats
        return WriterStats(s.commits, s.ops, s.failed_ops, s.map_grown, s.queued, s.ops_seconds,
                           s.commit_seconds, s.failed_commits, s.failing_until,
                           s.ops_cpu_seconds, s.commit_cpu_seconds)

    # ------------------------------------------------------- message view API (for HTTP)

    def get_message(self, msg_id: str) -> Any:
        """Message view (record, state, parts with carrier ids, events) or None.

        See :func:`gateway._store_views.get_message`.
        """
        from gateway import _store_views

        return _store_views.get_message(self, msg_id)

    def scan_account(
        self,
        account: str,
        *,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Any:
        """Messages of ``account`` in acceptance order (``gateway._store_views.scan_account``)."""
        from gateway import _store_views

        return _store_views.scan_account(
            self, account, since=since, until=until, cursor=cursor, limit=limit
        )


# -------------------------------------------------------------------------------- writer


def _run_batch(env: lmdb.Environment, batch: Sequence[_Request[Any]],
               stats: WriterStats | None = None) -> float:
    """Run every op of ``batch`` in one transaction and commit it (worker thread).

    Returns:
        Seconds from the transaction's begin to its commit's return (the fsync included).
    """
    t0 = time.perf_counter()
    c0 = time.thread_time()
    txn = env.begin(write=True)
    try:
        for req in batch:
            child = env.begin(write=True, parent=txn)
            try:
                req.result = req.op(child)
            except lmdb.MapFullError:
                child.abort()
                raise
            except Exception as exc:  # noqa: BLE001 - the op's own: undo it, tell its caller
                child.abort()
                req.error = exc
            else:
                child.commit()
        t1, c1 = time.perf_counter(), time.thread_time()
        txn.commit()
        t2, c2 = time.perf_counter(), time.thread_time()
        if stats is not None:
            stats.ops_seconds += t1 - t0
            stats.commit_seconds += t2 - t1
            stats.ops_cpu_seconds += c2 - c0
            stats.commit_cpu_seconds += c2 - c1
    except BaseException:
        txn.abort()
        raise
    return t2 - t0


async def _writer(
    env: lmdb.Environment,
    recv: trio.MemoryReceiveChannel[_Request[Any]],
    stats: WriterStats,
    *,
    max_batch: int,
    max_wait: float,
    threaded: bool,
) -> None:
    try:
        await _writer_loop(env, recv, stats, max_batch=max_batch, max_wait=max_wait,
                           threaded=threaded)
    finally:
        # Cancelled or closed: whatever still waits is refused, so no caller (e.g. a shielded
        # clean-up) waits forever for a commit that will not happen.
        while True:
            try:
                req = recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            req.error = StoreError("store is closing")
            req.done.set()
        recv.close()


async def _writer_loop(
    env: lmdb.Environment,
    recv: trio.MemoryReceiveChannel[_Request[Any]],
    stats: WriterStats,
    *,
    max_batch: int,
    max_wait: float,
    threaded: bool,
) -> None:
    # recv is closed by _writer, after it refused whatever still waits
    async for first in recv:
        batch = [first]
        deadline = trio.current_time() + max_wait
        while len(batch) < max_batch:
            try:
                batch.append(recv.receive_nowait())
            except trio.WouldBlock:
                if max_wait <= 0 or trio.current_time() >= deadline:
                    break
                await trio.lowlevel.checkpoint()
                if recv.statistics().current_buffer_used == 0:
                    break
            except trio.EndOfChannel:
                break
        await _commit(env, batch, stats, threaded, recv)


async def _commit(env: lmdb.Environment, batch: list[_Request[Any]], stats: WriterStats,
                  threaded: bool,
                  recv: trio.MemoryReceiveChannel[_Request[Any]] | None = None) -> None:
    pause = 0.05
    while True:
        for req in batch:
            req.result, req.error = None, None
        try:
            if threaded:
                took = await trio.to_thread.run_sync(_run_batch, env, batch, stats)
            else:  # tests under MockClock: a thread would let autojump move virtual time
                took = _run_batch(env, batch, stats)
                await trio.lowlevel.checkpoint()
        except lmdb.MapFullError:
            size = env.info()["map_size"]
            if size * 2 > MAX_MAP_SIZE:
                _fail(batch, StoreError("map cannot grow further"), stats)
                return
            env.set_mapsize(size * 2)  # trio thread: no read txn can be open now
            stats.map_grown += 1
            logger.info("store map grown to %d MiB", size * 2 >> 20)
            continue
        except lmdb.Error as exc:
            stats.failed_commits += 1
            stats.failing_until = trio.current_time() + FAILED_COMMIT_PAUSE
            while recv is not None:  # requests that queued meanwhile join the next try,
                try:  # and the fail-fast ones among them are answered now
                    batch.append(recv.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            fast = [req for req in batch if req.fail_fast]
            if fast:
                _fail(fast, StoreError(f"commit failed: {exc}"), stats)
                batch = [req for req in batch if not req.fail_fast]
            if not batch:
                return
            logger.error("store commit failed (%s); %d ops wait and are tried again in %.2f s",
                         exc, len(batch), pause)
            await trio.sleep(pause)
            pause = min(pause * 2, FAILED_COMMIT_PAUSE)
            continue
        break
    stats.failing_until = 0.0
    metrics.STORE_COMMIT_LATENCY.observe(took)
    stats.commits += 1
    stats.ops += len(batch)
    for req in batch:
        if req.error is not None:
            stats.failed_ops += 1
        req.done.set()


def _fail(batch: list[_Request[Any]], error: StoreError, stats: WriterStats) -> None:
    logger.error("store batch of %d ops failed: %s", len(batch), error)
    for req in batch:
        req.error = error
        req.done.set()
    stats.failed_ops += len(batch)


# ---------------------------------------------------------------------------------- open


def open_env(
    path: str | os.PathLike[str],
    *,
    sync: bool = True,
    metasync: bool = True,
    map_size: int = DEFAULT_MAP_SIZE,
    extra_dbs: Sequence[bytes] = (),
) -> tuple[lmdb.Environment, dict[bytes, Any]]:
    """Open (creating) the environment and every named database. Blocking; used by tools."""
    os.makedirs(path, exist_ok=True)
    names = list(dict.fromkeys([*STORE_DATABASES, *extra_dbs]))
    env = lmdb.open(
        os.fspath(path),
        map_size=map_size,
        max_dbs=max(64, len(names) + 8),
        sync=sync,
        metasync=metasync,
        max_readers=512,
        writemap=False,
    )
    with env.begin(write=True) as txn:
        dbs = {name: env.open_db(name, txn=txn) for name in names}
    return env, dbs


@asynccontextmanager
async def open_store(
    path: str | os.PathLike[str],
    *,
    sync: bool = True,
    metasync: bool = True,
    map_size: int = DEFAULT_MAP_SIZE,
    extra_dbs: Sequence[bytes] = (),
    max_batch: int = 4096,
    max_wait: float = 0.002,
    max_queue: int = 10_000,
    threaded: bool = True,
) -> AsyncIterator[Store]:
    """Open the store and run its writer for the duration of the ``async with``.

    Args:
        path: directory of the LMDB environment (created if missing).
        sync, metasync: LMDB durability flags; ``True`` means a commit is an fsync.
        map_size: initial map size in bytes; it doubles whenever it fills.
        extra_dbs: more database names to open besides ``STORE_DATABASES``.
        max_batch: most ops in one transaction.
        max_wait: longest the writer gathers a batch after the first request (seconds).
        max_queue: bound of the request queue; ``write`` waits when it is full.
        threaded: run transactions in a worker thread (the default). ``False`` runs them on
            the event loop: only for tests under trio's MockClock, where a task waiting on a
            thread counts as blocked and autojump would move virtual time meanwhile.
    """
    env, dbs = open_env(path, sync=sync, metasync=metasync, map_size=map_size, extra_dbs=extra_dbs)
    send, recv = trio.open_memory_channel[_Request[Any]](max_queue)
    store = Store(env, dbs, send, max_queue=max_queue)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: _writer(env, recv, store.stats, max_batch=max_batch, max_wait=max_wait,
                                threaded=threaded)
            )
            try:
                yield store
            finally:
                store.closed = True
                await send.aclose()  # the writer finishes what is queued, then ends
    finally:
        env.close()


def u64(value: int) -> bytes:
    """Big-endian 8-byte key part (sorts numerically)."""
    return value.to_bytes(8, "big")


def ms(t: float) -> int:
    """Unix seconds to integer milliseconds, clamped at 0."""
    return max(0, math.floor(t * 1000))
