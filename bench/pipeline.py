"""Benchmark: messages/s from accept to final status through the in-process pipeline.

Real actors, a real LMDB file with ``sync=True`` (every commit is an fsync), a no-latency
scripted carrier that accepts every part and sends its DELIVRD receipt at once; no HTTP.
Producers call ``Gateway.accept`` concurrently with batches (as the HTTP layer would); the
clock runs from the first accept to the last final event. Latency is per message, from its
``accepted_at`` to its final event.

    python -m bench.pipeline                 # 100,000 messages, thread writer then process
    python -m bench.pipeline --writer process --rounds 3   # or alternate both, 3 times each
    python -m bench.pipeline --messages 20000 --producers 8 --batch 100
    python -m bench.pipeline --park 1000000  # park 1M future messages, report RSS
    python -m bench.pipeline --ops 20000     # CPU µs per message of each writer op, no pipeline

Prints figures; the last line is one JSON object (final_msgs_per_s, p50_ms, p99_ms, rss_mb,
cpu_us_per_msg, writer_cpu_us_per_msg, commit_cpu_us_per_msg; in --park mode parked,
park_accept_msgs_per_s, rss_parked_mb; in --ops mode <op>_us per message and ops_total_us).
With ``--writer`` (``thread``: the gateway's writer thread; ``process``: the writer process of
``[store] writer = "process"``; ``both``, the default: thread then process, ``--rounds`` times)
the plain keys are the thread writer's best round, and ``final_msgs_per_s_<writer>``,
``main_cpu_us_per_msg_<writer>`` (main thread), ``writer_cpu_us_per_msg_<writer>`` (writer
thread or writer process), ``p99_ms_<writer>``, ``main_waiting_for_cpu_s_<writer>`` and
``rounds_msgs_per_s_<writer>`` (every round), ``main_switches_per_msg_<writer>`` (voluntary
context switches of the main thread a message: with the writer thread, waits for the GIL) and
``main_idle_s_<writer>`` (seconds the event loop slept with nothing runnable) are added for each.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import trio

from actors import messages as m
from actors.ingress import MsgIdFactory
from gateway._gc import settle_after_start
from gateway._store_process import open_process_pipeline, process_map_size
from gateway.app import CoreSettings, open_gateway
from gateway.config import StoreConfig
from gateway.store import open_store
from tests.fakes import ScriptedCarrier


def rss_mb() -> float:
    """Current resident set size in MiB (from /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_ids = MsgIdFactory()


def schedstat(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(seconds running, seconds runnable but waiting for a CPU) of a thread, from /proc."""
    try:
        with open(f"/proc/{pid}/task/{tid or pid}/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def context_switches(pid: int | None = None) -> dict[int, tuple[int, int]]:
    """Thread id -> (voluntary, involuntary) context switches so far, of every thread of a
    process, from /proc. A thread waiting for the GIL sleeps (voluntary) and is woken at
    each release by the thread holding it, which is what the GIL hand-off costs."""
    out: dict[int, tuple[int, int]] = {}
    base = f"/proc/{pid or 'self'}/task"
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        vol = inv = 0
        try:
            with open(f"{base}/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        inv = int(line.split()[1])
        except OSError:
            continue
        out[int(tid)] = (vol, inv)
    return out


def rss_parts_mb(pid: int | None = None) -> dict[str, float]:
    """RssAnon (Python heap) and RssFile (LMDB pages mapped in) from /proc, in MiB."""
    out = {}
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split(":")
                    out[key] = round(int(value.split()[0]) / 1024)
    except OSError:
        pass
    return out


def _batch(start: int, n: int, now: float, send_at: float = 0.0) -> list[m.Message]:
    return [m.Message(_ids(), f"acc{i % 4}", f"+3519{i:08d}", "Septet",
                      f"Your code is {i % 100000:05d}", "transliterate", now, campaign="bench",
                      send_at=send_at) for i in range(start, start + n)]


class IoWaits(trio.abc.Instrument):
    """How long the event loop slept in its I/O wait (nothing runnable: e.g. every actor
    waiting for a commit of the writer thread), and how often it went there to sleep."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.sleeps = 0
        self._t0 = 0.0

    def before_io_wait(self, timeout: float) -> None:
        self._t0 = time.perf_counter()

    def after_io_wait(self, timeout: float) -> None:
        if timeout > 0:  # a poll (timeout 0) does not sleep
            self.sleeps += 1
            self.seconds += time.perf_counter() - self._t0


@asynccontextmanager
async def _open_core(path: str, writer: str, map_size: int, carrier: Any, settings: CoreSettings,
                     notifier: Any = None) -> AsyncIterator[tuple[Any, Any, Any]]:
    """(store, gateway, process pipeline or None) with the pipeline's writes on ``writer``."""
    if writer == "thread":
        async with open_store(path, sync=True, map_size=map_size) as store, \
                open_gateway(store, [carrier], settings, notifier=notifier) as gw:
            yield store, gw, None
        return
    async with open_store(path, sync=True, map_size=process_map_size(map_size)) as store, \
            open_process_pipeline(store, receipt_timeout=settings.receipt_timeout) as pipe, \
            open_gateway(store, [carrier], settings, notifier=notifier, pipeline=pipe) as gw:
        yield store, gw, pipe


async def throughput(args: argparse.Namespace, writer: str = "thread") -> dict[str, float]:
    n = args.messages
    latencies: list[float] = []
    done = trio.Event()

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                t = time.time()
                # the harness reads the wire rows itself ([tag, version, msg_id, account,
                # event, ...]): building StatusEvents would charge the pipeline for it
                for e in msgpack.unpackb(item, raw=False):
                    if e[0] != m.StatusEvent.TAG:
                        raise ValueError("not a StatusEvent")
                    if e[4] != "SMS_SENT":
                        latencies.append(t - accepted[e[2]])
                if len(latencies) >= n:
                    done.set()

    accepted: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        carrier = ScriptedCarrier("bench", now=time.time)
        settings = CoreSettings(receipt_timeout=None)
        async with _open_core(path, writer, 1 << 31, carrier, settings,
                              notifier) as (store, gw, pipe):
            if True:  # (keeps the measured block's indentation)
                settle_after_start()  # the cyclic GC as `septet serve` sets it once started
                t0 = time.perf_counter()
                cpu0 = time.process_time()
                child0 = pipe.statistics().child_cpu_seconds if pipe else 0.0
                sched0 = (schedstat(os.getpid()), schedstat(pipe.pid) if pipe else (0.0, 0.0))
                switches0 = context_switches()
                io_waits = IoWaits()
                trio.lowlevel.add_instrument(io_waits)

                async def producer(k: int) -> None:
                    for start in range(k * args.batch, n, args.batch * args.producers):
                        batch = _batch(start, min(args.batch, n - start), time.time())
                        for msg_id, msg in zip(await gw.accept(batch), batch, strict=True):
                            accepted[msg_id] = msg.accepted_at

                async with trio.open_nursery() as nursery:
                    for k in range(args.producers):
                        nursery.start_soon(producer, k)
                t_accept = time.perf_counter() - t0
                with trio.fail_after(600):
                    await done.wait()
                elapsed = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                stats = store.statistics()
                child = pipe.statistics() if pipe else None
                sched1 = (schedstat(os.getpid()), schedstat(pipe.pid) if pipe else (0.0, 0.0))
                switches1 = context_switches()
                trio.lowlevel.remove_instrument(io_waits)
        rss = rss_mb()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"--- writer {writer}")
    print(f"messages          {n}")
    print(f"accepted in       {t_accept:.2f} s  ({n / t_accept:,.0f} msgs/s)")
    print(f"final in          {elapsed:.2f} s  ({n / elapsed:,.0f} msgs/s)")
    print(f"accept→final p50  {p50:.1f} ms   p99 {p99:.1f} ms")
    print(f"CPU               {cpu:.2f} s  ({cpu / n * 1e6:.1f} µs per message, all threads,"
          f" {cpu / elapsed:.0%} of one core)")
    per_commit = stats.ops / max(1, stats.commits)
    print(f"commits           {stats.commits}  ops {stats.ops}  ({per_commit:.1f}"
          f" ops/commit); writer ran ops {stats.ops_seconds:.2f} s, committed "
          f"{stats.commit_seconds:.2f} s; writer thread CPU {stats.ops_cpu_seconds / n * 1e6:.1f}"
          f" µs per message, {stats.commit_cpu_seconds / n * 1e6:.1f} of it in commits (GIL"
          f" released)")
    main_us = (cpu - stats.ops_cpu_seconds) / n * 1e6  # main process less its writer thread
    child_us = 0.0
    if child is not None:
        child_us = (child.child_cpu_seconds - child0) / n * 1e6
        w = child.writer
        print(f"writer process    commits {w.commits}  ops {w.ops} "
              f"({w.ops / max(1, w.commits):.1f} ops/commit); CPU {child_us:.1f} µs per message"
              f" (ops+commits {w.ops_cpu_seconds / n * 1e6:.1f}, of it commits "
              f"{w.commit_cpu_seconds / n * 1e6:.1f}), {child_us * n / 1e6 / elapsed:.0%} of "
              f"one core")
    print(f"CPU per message   main thread {main_us:.1f} µs, writer thread "
          f"{stats.ops_cpu_seconds / n * 1e6:.1f} µs, writer process {child_us:.1f} µs")
    # CPU contention: time runnable but not running (the machine's 2 cores are shared)
    main_wait = sched1[0][1] - sched0[0][1]
    child_wait = sched1[1][1] - sched0[1][1]
    print(f"waiting for a CPU main thread {main_wait:.2f} s, writer process {child_wait:.2f} s"
          f" of {elapsed:.2f} s (runnable, not running: other work on the machine)")
    main_tid = threading.main_thread().native_id or os.getpid()
    vol_main = switches1.get(main_tid, (0, 0))[0] - switches0.get(main_tid, (0, 0))[0]
    vol_other = sum(v[0] - switches0.get(t, (0, 0))[0] for t, v in switches1.items()
                    if t != main_tid)
    print(f"context switches  main thread {vol_main / n:.2f} a message (voluntary), other "
          f"threads {vol_other / n:.2f}")
    print(f"event loop idle   {io_waits.seconds:.2f} s of {elapsed:.2f} s in {io_waits.sleeps}"
          f" I/O waits (nothing runnable: with the writer thread, mostly waiting for commits)")
    print(f"RSS               {rss:.0f} MiB")
    return {"main_idle_s": round(io_waits.seconds, 2), "main_idle_waits": io_waits.sleeps,
            "main_switches_per_msg": round(vol_main / n, 2),
            "other_switches_per_msg": round(vol_other / n, 2),
            "main_waiting_for_cpu_s": round(main_wait, 2),
            "child_waiting_for_cpu_s": round(child_wait, 2), "final_msgs_per_s": round(n / elapsed), "accept_msgs_per_s": round(n / t_accept),
            "main_thread_cpu_us_per_msg": round(main_us, 1),
            "child_cpu_us_per_msg": round(child_us, 1),
            "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "rss_mb": round(rss),
            "cpu_us_per_msg": round(cpu / n * 1e6, 1),
            "writer_cpu_us_per_msg": round(stats.ops_cpu_seconds / n * 1e6, 1),
            "commit_cpu_us_per_msg": round(stats.commit_cpu_seconds / n * 1e6, 1), "messages": n}


async def park(args: argparse.Namespace) -> dict[str, float]:
    """Accept ``--park`` messages due tomorrow; they must wait in LMDB, not in memory.

    With the writer process (``--writer process``, or ``both``/default where ``septet serve``
    would pick it) the RSS of both processes is reported."""
    n = args.park
    writer = StoreConfig().resolved_writer if args.writer == "both" else args.writer
    rss0 = rss_mb()
    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        carrier = ScriptedCarrier("bench", now=time.time)
        async with _open_core(path, writer, 1 << 32, carrier, CoreSettings()) as (_, gw, pipe):
            t0 = time.perf_counter()
            later = time.time() + 86_400

            async def producer(k: int) -> None:
                for start in range(k * args.batch, n, args.batch * args.producers):
                    await gw.accept(_batch(start, min(args.batch, n - start), time.time(),
                                           send_at=later))

            async with trio.open_nursery() as nursery:
                for k in range(args.producers):
                    nursery.start_soon(producer, k)
            elapsed = time.perf_counter() - t0
            await trio.sleep(1.0)  # let the pump look at the outbox
            waiting = gw.pipeline.outbox_size()
            rss = rss_mb()
            parts = rss_parts_mb()
            child = rss_parts_mb(pipe.pid) if pipe is not None else {}
    print(f"parked            {waiting} messages in the outbox in {elapsed:.1f} s "
          f"({n / elapsed:,.0f} msgs/s accepted), writer {writer}")
    print(f"RSS               {rss0:.0f} MiB before, {rss:.0f} MiB with them parked "
          f"(anonymous {parts.get('RssAnon')} MiB, LMDB file pages {parts.get('RssFile')} MiB)")
    if child:
        print(f"writer process    RSS anonymous {child.get('RssAnon')} MiB, LMDB file pages "
              f"{child.get('RssFile')} MiB")
    return {"parked": waiting, "park_accept_msgs_per_s": round(n / elapsed),
            "rss_parked_mb": round(rss), "rss_mb": round(rss),
            "rss_anon_mb": parts.get("RssAnon"), "rss_file_mb": parts.get("RssFile"),
            "writer_process_rss_anon_mb": child.get("RssAnon"),
            "writer_process_rss_file_mb": child.get("RssFile")}


def ops(args: argparse.Namespace) -> dict[str, float]:
    """Each store op of one message's life, single-threaded in direct transactions.

    Measures the CPU (``time.process_time``) per message of op_accept, op_mark_submitting,
    op_apply (PartSubmitted) and op_apply (its receipt, a later batch) over ``--ops`` one-part
    messages in batches of 512, with ``sync=False`` (the ops, not the fsync).
    """
    from gateway import _store_pipeline as sp
    from gateway.store import Store, open_env

    n, size = args.ops, 512
    now = time.time()
    msgs = _batch(0, n, now)
    parts = [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"x", 1, x.account)
             for x in msgs]
    first = 0x0400_0000_086E_CD50
    subs = [m.PartSubmitted(x.msg_id, 1, 1, "bench", str(first + i), now)
            for i, x in enumerate(msgs)]
    receipts = [m.PendingReceipt(i, "bench", str(first + i), "DELIVRD", "000", now, now)
                for i in range(n)]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        env, dbs = open_env(path, sync=False, metasync=False, map_size=1 << 31)
        store = Store.__new__(Store)  # no writer task: the ops run in direct transactions
        store.env, store._dbs = env, dbs

        settle_after_start()  # as the writer runs in `septet serve`: the inputs are frozen
        # (they live through the run: the GC would rescan them), gen-0 threshold 50,000

        def phase(name: str, op: Any, items: list[Any]) -> list[Any]:
            results = []
            t = time.process_time()
            for i in range(0, n, size):
                with env.begin(write=True) as txn:
                    results.append(op(txn, items[i:i + size]))
            out[f"{name}_us"] = round((time.process_time() - t) / n * 1e6, 2)
            return results

        phase("accept", lambda txn, b: sp.op_accept(txn, store, b, None), msgs)
        phase("mark_submitting", lambda txn, b: sp.op_mark_submitting(txn, store, b, now), parts)
        phase("apply_submitted", lambda txn, b: sp.op_apply(txn, store, b, now, None), subs)
        phase("apply_receipt", lambda txn, b: sp.op_apply(txn, store, b, now, None), receipts)
        env.close()
    out["ops_total_us"] = round(sum(out.values()), 2)
    for name, value in out.items():
        print(f"{name:<22}{value:>8.2f} µs per message")
    return out


def compare(args: argparse.Namespace) -> dict[str, float]:
    """Run the throughput test on each writer asked for (alternating, ``--rounds`` times);
    the figures of the writer `septet serve` picks here ("auto") keep the plain keys, the best round counts."""
    writers = ("thread", "process") if args.writer == "both" else (args.writer,)
    best: dict[str, dict[str, float]] = {}
    rounds: dict[str, list[float]] = {w: [] for w in writers}
    for _ in range(max(1, args.rounds)):
        for writer in writers:
            r = trio.run(throughput, args, writer)
            rounds[writer].append(r["final_msgs_per_s"])
            if writer not in best or r["final_msgs_per_s"] > best[writer]["final_msgs_per_s"]:
                best[writer] = r
    # the plain keys: the writer `septet serve` picks here ([store] writer = "auto")
    default = StoreConfig().resolved_writer
    result = dict(best.get(default) or next(iter(best.values())))
    for writer, r in best.items():
        result[f"final_msgs_per_s_{writer}"] = r["final_msgs_per_s"]
        result[f"main_cpu_us_per_msg_{writer}"] = r["main_thread_cpu_us_per_msg"]
        result[f"rounds_msgs_per_s_{writer}"] = rounds[writer]  # type: ignore[assignment]
        result[f"writer_cpu_us_per_msg_{writer}"] = (r["writer_cpu_us_per_msg"] if
                                                    writer == "thread" else
                                                    r["child_cpu_us_per_msg"])
        result[f"p99_ms_{writer}"] = r["p99_ms"]
        result[f"main_waiting_for_cpu_s_{writer}"] = r["main_waiting_for_cpu_s"]
        result[f"main_switches_per_msg_{writer}"] = r["main_switches_per_msg"]
        result[f"main_idle_s_{writer}"] = r["main_idle_s"]
    if len(best) == 2:
        print(f"final msgs/s      thread {best['thread']['final_msgs_per_s']:,}  process "
              f"{best['process']['final_msgs_per_s']:,}")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--producers", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--park", type=int, default=0, help="park N future messages, report RSS")
    p.add_argument("--ops", type=int, default=0,
                   help="time each store op over N messages (no pipeline, no fsync)")
    p.add_argument("--dir", default=None, help="where the LMDB file goes (default: tmp)")
    p.add_argument("--writer", choices=("thread", "process", "both"), default="both",
                   help="who runs the pipeline's store writes (both: thread, then process)")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --writer both: alternate thread and process this many times")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="sys.setswitchinterval (s) for the run: how long a thread holding the "
                        "GIL runs before one waiting for it is let in (CPython default 0.005)")
    args = p.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.ops:
        result = ops(args)
    elif args.park:
        result = trio.run(park, args)
    else:
        result = compare(args)
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
