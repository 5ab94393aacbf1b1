"""Benchmark: delivery receipts correlated per second (and, from bench.callbacks, callbacks/s).

A real LMDB store with ``sync=True`` holds ``--receipts`` SENT messages whose carrier ids were
answered in hex (``0x…``); connectors then report their receipts in decimal, in batches of
``--batch`` from ``--connectors`` concurrent tasks, through the durable receipt sink into the
correlator actor. The clock runs from the first receipt to the last SMS_DELIVERED event: each
receipt is stored in the durable inbox, matched through the carrier-id index, folded, its event
persisted and passed on.

    python -m bench.receipts                     # 50,000 receipts, then bench.callbacks
    python -m bench.receipts --receipts 20000 --no-callbacks

The last line is one JSON object with ``receipts_per_s`` (and ``callbacks_per_s`` from
``python -m bench.callbacks`` unless ``--no-callbacks``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from functools import partial

import trio

from actors import messages as m
from actors import receipt_correlator
from actors.ingress import MsgIdFactory
from bench.pipeline import rss_mb
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store

BASE = 0x0400_0000_0000_0000


async def _prepare(pstore: PipelineStore, n: int) -> list[m.Message]:
    ids = MsgIdFactory()
    now = time.time()
    msgs = [m.Message(ids(), "acc", f"+3519{i:08d}", "S", "hi", "transliterate", now,
                      campaign="bench") for i in range(n)]
    for i in range(0, n, 5000):
        chunk = msgs[i:i + 5000]
        await pstore.accept(chunk)
        await pstore.mark_submitting(
            [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"hi", 0, x.account)
             for x in chunk], now)
        await pstore.apply([m.PartSubmitted(x.msg_id, 1, 1, "smsc",
                                            m.CarrierId(f"0x{BASE + i + j:X}"), now)
                            for j, x in enumerate(chunk)], now)
    return msgs


async def run(args: argparse.Namespace) -> dict[str, float]:
    n = args.receipts
    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        async with open_store(path, sync=True, map_size=1 << 31) as store:
            pstore = PipelineStore(store, receipt_timeout=None)
            await _prepare(pstore, n)
            delivered = 0
            done = trio.Event()
            send, recv = trio.open_memory_channel[bytes](16)
            ev_send, ev_recv = trio.open_memory_channel[bytes](16)

            async def notifier() -> None:
                nonlocal delivered
                async with ev_recv:
                    async for item in ev_recv:
                        delivered += sum(e.event == "SMS_DELIVERED"
                                         for e in m.decode_batch_of(m.StatusEvent, item))
                        if delivered >= n:
                            done.set()

            stats = receipt_correlator.CorrelatorStats()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(notifier)
                await nursery.start(partial(receipt_correlator.run, recv, ev_send, None,
                                            store=pstore, receipt_timeout=None, stats=stats))
                sink = receipt_correlator.receipt_sink(pstore, send)
                t0 = time.perf_counter()

                async def connector(k: int) -> None:
                    for start in range(k * args.batch, n, args.batch * args.connectors):
                        await sink([m.CarrierReceipt("smsc", str(BASE + i), "DELIVRD", "000",
                                                     time.time())
                                    for i in range(start, min(n, start + args.batch))])

                async with trio.open_nursery() as connectors:
                    for k in range(args.connectors):
                        connectors.start_soon(connector, k)
                with trio.fail_after(600):
                    await done.wait()
                elapsed = time.perf_counter() - t0
                await send.aclose()
    rate = n / elapsed
    print(f"receipts          {n} (hex submit ids, decimal receipt ids)")
    print(f"correlated in     {elapsed:.2f} s  ({rate:,.0f} receipts/s)")
    print(f"matched {stats.matched}  duplicates {stats.duplicates}  unknown {stats.unknown}  "
          f"batches {stats.batches}")
    print(f"RSS               {rss_mb():.0f} MiB")
    return {"receipts_per_s": round(rate), "receipts": n, "matched": stats.matched}


def _callbacks() -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-m", "bench.callbacks"], capture_output=True,
                          text=True, timeout=300, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        print("bench.callbacks failed:", proc.stderr[-500:])
        return {}
    result = json.loads(lines[-1])
    print(f"callbacks         {result.get('callbacks_per_s')} /s (python -m bench.callbacks)")
    return {"callbacks_per_s": result.get("callbacks_per_s")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--receipts", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--connectors", type=int, default=4)
    p.add_argument("--no-callbacks", action="store_true")
    p.add_argument("--dir", default=None)
    args = p.parse_args(argv)
    result = trio.run(run, args)
    if not args.no_callbacks:
        result.update(_callbacks())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
