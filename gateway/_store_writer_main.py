"""The store writer process: ``python -m gateway._store_writer_main CONFIG_JSON``.

Started by ``gateway._store_process`` (``[store] writer = "process"``), never forked: it opens
the gateway's LMDB environment itself (``gateway.store.open_env``, same databases, same
``sync``/``metasync``, same map size) and runs the pipeline's hot write ops there, so that they
use the machine's second core instead of sharing the gateway's GIL; so do the callback
outbox's enqueue and settle (``gateway._callback_ops``).

Theory of operation
-------------------
Requests arrive as frames on stdin (``gateway._store_process_wire``). The loop blocks for the
first bytes, then takes every further byte already waiting (``poll`` with a zero timeout),
runs ALL complete requests in ONE write transaction, each op in a nested child transaction
(as ``gateway.store._run_batch``: an op that raises is rolled back alone and reported to its
caller, the others commit), commits (the fsync) and only then writes one reply frame for the
whole commit on stdout. So group commit comes by itself: what queued during one commit is the
next batch. LMDB serialises this process's write transactions with the gateway's own writer
thread (idempotency keys, campaigns, callbacks...) on its environment lock.

Map: both processes open the environment with the same, large map (``PROCESS_MAP_SIZE``; the
file grows only as pages are used). This process never grows the map (data grown past the
gateway's map would make its next transaction fail with MDB_MAP_RESIZED, and the gateway can
adopt a new size only with no transaction open in any of its threads): a batch that fills it fails with ``MapFullError`` for its callers, the gateway
stops loudly. If the gateway grew the map, this process adopts the new size
(``set_mapsize(0)``, it never holds a transaction between batches) and runs the batch again.

A commit that fails (disk full, I/O error) fails the batch's ``accept`` requests at once (the
HTTP client is waiting) and runs the others again after a back-off, up to 1 s apart, as the
thread writer does.

Lifecycle: the process dies with its parent (``PR_SET_PDEATHSIG``), and exits when stdin
reaches EOF (the gateway closed it: graceful shutdown), after answering what it read. It
ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the whole group:
the gateway then shuts down gracefully and stops it.
It logs counts and errors on stderr, never message bodies or numbers.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import lmdb

from actors import correlation as corr
from actors import messages as m
from gateway import _callback_ops as cb
from gateway import _store_pipeline as sp
from gateway._gc import settle_after_start
from gateway._store_process_wire import WIRE_VERSION, FrameReader, frame, result_to_wire

logger = logging.getLogger("gateway.store_writer")

PR_SET_PDEATHSIG: Final = 1
MAX_REQUESTS: Final = 1024  # requests in one transaction at most
READ_SIZE: Final = 1 << 20
RETRY_PAUSE_MAX: Final = 1.0


class Handles:
    """The named databases of the environment (``gateway._store_pipeline.Dbs``)."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._dbs = dbs

    def db(self, name: bytes) -> Any:
        """The handle of named database ``name``."""
        return self._dbs[name]


class Writer:
    """Runs request batches against the environment (the process's whole state)."""

    def __init__(self, env: lmdb.Environment, dbs: dict[bytes, Any], *,
                 receipt_timeout: float | None, id_types: Mapping[str, str]) -> None:
        self.env = env
        self.handles = Handles(dbs)
        self.receipt_timeout = receipt_timeout
        self.id_bases = {c: corr.ID_TYPES[t] for c, t in id_types.items()}
        self._callback_dbs: cb.CallbackDbs | None = None

    def callback_dbs(self) -> cb.CallbackDbs:
        """The callback outbox's handles (on first use: a store opened without them fails
        only the callback ops, each alone)."""
        if self._callback_dbs is None:
            self._callback_dbs = cb.CallbackDbs(self.handles)
        return self._callback_dbs

    def run_op(self, txn: Any, req: list[Any]) -> Any:
        """Run one request's op in ``txn``; its result in wire form."""
        op, h = req[1], self.handles
        if op == "accept":
            msgs, records = sp.split_messages(req[2])  # records sliced, not packed again
            return sp.op_accept(txn, h, msgs, None, records)
        if op == "mark":
            return sp.op_mark_submitting(txn, h, m.decode_batch_of(m.SubmitPart, req[2]), req[3])
        if op == "apply":
            return result_to_wire(op, sp.op_apply(txn, h, m.decode_batch(req[2]), req[3],
                                                  self.receipt_timeout, self.id_bases))
        if op == "expire":
            return sp.op_expire_orphans(txn, h, req[2], req[3])
        if op == "recover":
            return result_to_wire(op, sp.op_recover(txn, h, req[2], req[3]))
        if op == "cb_enqueue":
            return cb.op_enqueue(txn, self.callback_dbs(),
                                 m.decode_batch_of(m.StatusEvent, req[2]), req[3])
        if op == "cb_settle":
            return cb.op_settle(txn, self.callback_dbs(), req[2], req[3])
        raise ValueError(f"unknown op {op!r}")

    def run_batch(self, reqs: list[list[Any]]) -> tuple[list[list[Any]], list[float]]:
        """Run ``reqs`` in one transaction and commit it.

        Returns:
            The replies ``[rid, ok, payload]`` and the timings row of the reply frame.

        Raises:
            lmdb.MapFullError: the map is full (nothing of the batch was committed).
            lmdb.Error: the commit failed (nothing was committed).
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        replies: list[list[Any]] = []
        txn = self._begin()
        try:
            for req in reqs:
                child = self.env.begin(write=True, parent=txn)
                try:
                    result = self.run_op(child, req)
                except lmdb.MapFullError:
                    child.abort()
                    raise
                except Exception as exc:  # noqa: BLE001  (the op's own failure: roll back that op)
                    child.abort()
                    replies.append([req[0], False, [type(exc).__name__, str(exc)]])
                else:
                    child.commit()
                    replies.append([req[0], True, result])
            t1, c1 = time.perf_counter(), time.thread_time()
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        t2, c2 = time.perf_counter(), time.thread_time()
        return replies, [t2 - t0, t1 - t0, t2 - t1, c2 - c0, c2 - c1, time.process_time()]

    def _begin(self) -> Any:
        try:
            return self.env.begin(write=True)
        except lmdb.MapResizedError:  # the gateway grew the map: adopt its size
            self.env.set_mapsize(0)
            logger.info("store map grown by the gateway to %d MiB",
                        self.env.info()["map_size"] >> 20)
            return self.env.begin(write=True)


def _failed(reqs: list[list[Any]], exc: BaseException, text: str) -> list[list[Any]]:
    return [[req[0], False, [type(exc).__name__, text]] for req in reqs]


Reply = Callable[[list[float], list[list[Any]], int], None]
"""Sends one reply frame: ``(timings, replies, failed_commits)``."""


def commit_with_retry(writer: Writer, reqs: list[list[Any]], reply: Reply,
                      more: Callable[[float], list[list[Any]]]) -> None:
    """:meth:`Writer.run_batch`, with the failure policy of the module docstring.

    Every outcome is sent through ``reply`` as soon as it is known: a failed commit sends a
    frame at once with the batch's ``accept`` requests failed (their HTTP clients wait) and
    the failed commit counted (``septet_store_*`` includes the child's failures). While it
    backs off, ``more(pause)`` takes the requests that arrive meanwhile: new accepts fail at
    once too, the others join the next try (as the thread writer's ``fail_fast``).
    """
    pause = 0.05
    while True:
        try:
            done, timings = writer.run_batch(reqs)
        except lmdb.MapFullError as exc:
            size = writer.env.info()["map_size"]
            logger.error("store map full (%d MiB): %d requests fail; raise [store] map_size",
                         size >> 20, len(reqs))
            reply([], _failed(reqs, exc, f"store map is full ({size >> 20} MiB)"), 0)
            return
        except lmdb.Error as exc:
            logger.error("store commit failed (%s); ops other than accepts are tried again "
                         "in %.2f s", exc, pause)
            failed_commits, deadline = 1, time.monotonic() + pause
            while True:  # the back-off, taking what arrives meanwhile
                fast = [r for r in reqs if r[1] == "accept"]
                reqs = [r for r in reqs if r[1] != "accept"]
                if fast or failed_commits:
                    reply([], _failed(fast, exc, f"commit failed: {exc}"), failed_commits)
                failed_commits, left = 0, deadline - time.monotonic()
                arrived = more(left) if reqs and left > 0 else []
                if not arrived:  # (the pause is over)
                    break
                reqs += arrived
            if not reqs:
                return
            pause = min(pause * 2, RETRY_PAUSE_MAX)
            continue
        reply(timings, done, 0)
        return


class Inbox:
    """The request frames arriving on ``fd`` (the gateway's pipe)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.reader = FrameReader()
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self.eof = False

    def take(self, timeout: float | None = None) -> list[list[Any]]:
        """The requests that arrive within ``timeout`` seconds (None: block for the first
        bytes), with every further byte already waiting. After EOF: none (sleeps ``timeout``).
        """
        if self.eof:
            time.sleep(timeout or 0.0)
            return []
        if timeout is not None and not self.poller.poll(math.ceil(timeout * 1000)):
            return []
        self._read()
        while not self.eof and self.poller.poll(0):
            self._read()
        frames: list[list[Any]] = self.reader.frames()
        return frames

    def _read(self) -> None:
        data = os.read(self.fd, READ_SIZE)
        self.eof = not data
        self.reader.feed(data)


def serve(writer: Writer, infd: int, outfd: int) -> None:
    """The loop of the module docstring; returns at EOF on ``infd``."""
    inbox = Inbox(infd)

    def reply(timings: list[float], replies: list[list[Any]], failed_commits: int) -> None:
        _write_all(outfd, frame([timings, replies, failed_commits]))

    while not inbox.eof:
        reqs = inbox.take()
        for start in range(0, len(reqs), MAX_REQUESTS):
            commit_with_retry(writer, reqs[start:start + MAX_REQUESTS], reply, inbox.take)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux); exit at once if
    the parent is already gone. A kill mid-commit loses nothing acknowledged: LMDB aborts the
    transaction and no reply had been sent for it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: EOF on stdin still ends the process
        pass
    if os.getppid() != parent:
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point. ``argv[0]``: the JSON config written by ``gateway._store_process``."""
    started = time.time()  # interpreter start and imports are behind us (the gateway times them)
    cfg = json.loads((argv or sys.argv[1:])[0])
    die_with_parent(cfg["parent"])
    logging.basicConfig(level=cfg.get("log_level", logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    if cfg.get("wire") != WIRE_VERSION:
        logger.error("the gateway speaks wire version %s, this writer %d: the installed code "
                     "changed under the gateway; restart it", cfg.get("wire"), WIRE_VERSION)
        return 2
    # The gateway decides when we stop: Ctrl-C reaches the whole process group, and systemd or
    # docker send SIGTERM to every process of the unit; the gateway then drains us and closes
    # stdin. If the gateway dies instead, PDEATHSIG kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    outfd = os.dup(1)  # replies go to a private fd; anything printed goes to stderr
    os.dup2(2, 1)
    from gateway.store import open_env

    env, dbs = open_env(cfg["path"], sync=cfg["sync"], metasync=cfg["metasync"],
                        map_size=cfg["map_size"],
                        extra_dbs=[n.encode("latin-1") for n in cfg["dbs"]])
    # Reader slots of killed processes (a SIGKILLed gateway's inline reads) pin old pages
    # until someone clears them; LMDB only resets the table when no process has it open.
    stale = env.reader_check()
    writer = Writer(env, dbs, receipt_timeout=cfg["receipt_timeout"], id_types=cfg["id_types"])
    _write_all(outfd, frame(["ready", os.getpid(), env.info()["map_size"], started,
                             time.time() - started, stale]))
    settle_after_start()  # the cyclic GC as in the gateway (gateway._gc): fewer gen-0 passes
    try:
        serve(writer, 0, outfd)
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
