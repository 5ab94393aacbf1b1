"""Benchmark: the rate limiter's decision cost per message with 10,000 distinct buckets live.

    python -m bench.shaping [--messages 400000] [--batch 500] [--buckets 10000]

Rules: 100 accounts, each with an account bucket and a per-sender bucket, 100 sender ids per
account (10,000 sender buckets, all live), one connector bucket, and the account's send
window open all day; rates are generous (1e9 segments/s) so nothing waits and the figure is
the cost of deciding, not of waiting. Messages are spread evenly over the 10,000 buckets.

Two figures:

* ``decisions_per_s``: messages per second through the actor alone: pre-encoded msgpack
  batches in on a channel, the actor decodes, decides per message and encodes, batches out on
  a channel to a consumer that only counts. Wall clock, real trio run.
* ``decisions_per_cpu_s``: the same per CPU-second of this (single-threaded) process, which
  holds steady when other work shares the machine.
* ``shaper_admit_per_s``: the pure ``Shaper.admit`` on decoded rows (no channels, no msgpack),
  per CPU-second.

Also reported: the same actor run with ``ShapingRules()`` (no limits) for comparison, and with
the no-re-contact rule on (every number distinct, so each decision also writes the recent-
contacts memory). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import trio

from actors import messages, rate_limiter
from actors.messages import Message, MsgId
from actors.shaping import (
    AccountRules,
    ConnectorRules,
    Limit,
    SendWindow,
    Shaper,
    ShapingRules,
    rows_from_batch,
)

GENEROUS = Limit(1e9, 1e9)


def build_rules(buckets: int, *, recontact: bool = False) -> ShapingRules:
    accounts = max(1, buckets // 100)
    account = AccountRules(limit=GENEROUS, per_sender=GENEROUS,
                           window=SendWindow("Europe/Lisbon", "00:00", "00:00"),
                           no_recontact_hours=36.0 if recontact else 0.0)
    return ShapingRules(accounts={f"acct{a}": account for a in range(accounts)},
                        default_connector=ConnectorRules(limit=GENEROUS))


def build_batches(n: int, batch: int, buckets: int) -> list[bytes]:
    accounts = max(1, buckets // 100)
    now = time.time()
    out, current = [], []
    for i in range(n):
        k = i % buckets
        current.append(Message(MsgId(f"{i:012d}"), f"acct{k % accounts}", f"+4477{i:08d}",
                               f"SENDER{k // accounts}", "hello there", "transliterate", now,
                               parts=1 + i % 3))
        if len(current) == batch:
            out.append(messages.encode_batch(current))
            current = []
    if current:
        out.append(messages.encode_batch(current))
    return out


async def through_actor(rules: ShapingRules, batches: list[bytes], n: int) -> tuple[float, float]:
    """Wall and CPU seconds to move every message through the actor (channels in and out).

    CPU time is reported too because the machine may be shared: this process is single
    threaded, so its CPU seconds are the cost of the work whatever else runs.
    """
    in_tx, in_rx = trio.open_memory_channel[bytes](4)
    out_tx, out_rx = trio.open_memory_channel[bytes](4)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](4)
    received = 0
    ended = ended_cpu = 0.0

    async def consume() -> None:
        nonlocal received, ended, ended_cpu
        async with out_rx:
            async for b in out_rx:
                received += len(b)  # counting bytes only: the consumer's cost stays out
        ended, ended_cpu = time.perf_counter(), time.process_time()

    async def drain_finished() -> None:
        async with fin_rx:
            async for _ in fin_rx:
                raise AssertionError("nothing should finish NOT_SENT here")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        nursery.start_soon(drain_finished)
        await nursery.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules))
        t0, c0 = time.perf_counter(), time.process_time()
        async with in_tx:
            for b in batches:
                await in_tx.send(b)
    # The clocks stop when the last released batch has left the actor.
    return ended - t0, ended_cpu - c0


def pure_admit(rules: ShapingRules, batches: list[bytes]) -> tuple[float, int]:
    """CPU seconds of ``Shaper.admit`` alone over pre-decoded batches, and live buckets."""
    decoded = [rows_from_batch(b) for b in batches]
    shaper = Shaper(rules)
    now = time.time()
    released = 0
    t0 = time.process_time()
    for rows in decoded:
        for r in rows:
            shaper.admit(r, now)
        released += len(shaper.released)
        shaper.released = []
    elapsed = time.process_time() - t0
    assert released == sum(len(rows) for rows in decoded)
    return elapsed, shaper.statistics()["buckets"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=400_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--buckets", type=int, default=10_000)
    args = p.parse_args()
    n = args.messages
    batches = build_batches(n, args.batch, args.buckets)
    rules = build_rules(args.buckets)

    admit_s, live = pure_admit(rules, batches)
    print(f"pure Shaper.admit: {n / admit_s:,.0f} decisions per CPU-second"
          f" ({admit_s / n * 1e6:.2f} us each),"
          f" {live:,} per-sender buckets live")
    results, cpu = {}, {}
    for name, r in (("limits", rules), ("no_limits", ShapingRules()),
                    ("limits_and_no_recontact", build_rules(args.buckets, recontact=True))):
        runs = [trio.run(through_actor, r, batches, n) for _ in range(3)]
        best, best_cpu = min(w for w, _ in runs), min(c for _, c in runs)
        results[name], cpu[name] = n / best, n / best_cpu
        print(f"actor, {name:24s}: {n / best:,.0f} messages/s wall ({best / n * 1e6:.2f} us"
              f" each), {n / best_cpu:,.0f} per CPU-second, batches of {args.batch}, best of 3")
    print(json.dumps({
        "decisions_per_s": round(results["limits"]),
        "decisions_per_cpu_s": round(cpu["limits"]),
        "decisions_per_s_no_limits": round(results["no_limits"]),
        "decisions_per_s_with_no_recontact": round(results["limits_and_no_recontact"]),
        "shaper_admit_per_s": round(n / admit_s),
        "live_buckets": live,
        "messages": n,
        "batch": args.batch,
    }))


if __name__ == "__main__":
    main()
