"""Benchmark: how long a one-time password waits behind another account's bulk send.

A bulk account limited to ``--rate`` messages a second submits ``--backlog`` messages at once
(batches of 1,000 through ``Gateway.accept``, as the HTTP layer would); right after, and then
every ``--every`` seconds, another account submits one message (the "OTP"). Each OTP's wait
is from its accept call to its SMS_SENT event. The same run first measures three OTPs with no
backlog: their median is the baseline.

Real actors, a real LMDB file with ``sync=True``, the pipeline's writes in the writer process
(the default on 2+ CPUs; ``--writer thread`` for the thread), the scripted carrier; no HTTP.

    python -m bench.backlog                       # 200,000 at 50/s, 5 OTPs 0.5 s apart
    python -m bench.backlog --backlog 1000000

Prints figures; the last line is one JSON object (otp_wait_p50_s, otp_wait_max_s,
otp_wait_no_backlog_s, backlog, backlog_accept_s, rss_mb).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

from actors import messages as m
from actors.ingress import MsgIdFactory
from actors.shaping import AccountRules, Limit, ShapingRules
from bench.pipeline import _open_core
from gateway.app import CoreSettings
from tests.fakes import ScriptedCarrier


class SentAt:
    """A notifier recording when each message turned SENT (wall clock)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def run(self, inbox: trio.abc.ReceiveChannel[bytes],
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                t = time.time()
                for e in m.decode_batch_of(m.StatusEvent, item):
                    if e.event == "SMS_SENT":
                        self.at[e.msg_id] = t

    async def wait(self, msg_id: str) -> float:
        with trio.fail_after(600):
            while msg_id not in self.at:
                await trio.sleep(0.005)
        return self.at[msg_id]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sent = SentAt()
    ids = MsgIdFactory(time.time)
    rules = ShapingRules(accounts={"bulk": AccountRules(limit=Limit(args.rate, args.rate))})
    settings = CoreSettings(shaping=rules, receipt_timeout=None)

    def message(account: str, to: str, text: str) -> m.Message:
        return m.Message(ids(), account, to, "Septet", text, "transliterate", time.time())

    async def otp_wait(k: int) -> float:
        t = time.time()
        [otp] = await gw.accept([message("otp", f"+35192{k:07d}", "Your code is 123456")])
        return await sent.wait(otp) - t

    with tempfile.TemporaryDirectory(dir=args.dir) as path:
        carrier = ScriptedCarrier("c1", now=time.time)
        async with _open_core(path + "/db", args.writer, 1 << 32, carrier, settings,
                              notifier=sent.run) as (store, gw, _):
            baseline = statistics.median([await otp_wait(k) for k in range(3)])
            t0 = time.time()
            for i in range(0, args.backlog, 1000):
                await gw.accept([message("bulk", f"+3519{j:08d}", "Spring sale: 20% off")
                                 for j in range(i, min(i + 1000, args.backlog))])
            accept_s = time.time() - t0
            waits = []
            for k in range(3, args.otps + 3):
                waits.append(await otp_wait(k))
                await trio.sleep(args.every)
            left = store.entries(b"outbox")
            gw.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"backlog           {args.backlog:,} messages to an account limited to {args.rate:g}/s "
          f"(accepted in {accept_s:.1f} s; {left:,} still in the outbox at the end)")
    print(f"OTP, no backlog   {baseline * 1000:.1f} ms (median of 3)")
    print("OTP behind it     " + " / ".join(f"{w * 1000:.0f}" for w in waits)
          + f" ms (one every {args.every:g} s)")
    print(f"RSS               {rss:.0f} MiB")
    return {"otp_wait_p50_s": round(statistics.median(waits), 3),
            "otp_wait_max_s": round(max(waits), 3),
            "otp_wait_no_backlog_s": round(baseline, 3), "backlog": args.backlog,
            "backlog_accept_s": round(accept_s, 1), "rss_mb": round(rss)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backlog", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=50.0, help="the bulk account's messages/s")
    p.add_argument("--otps", type=int, default=5)
    p.add_argument("--every", type=float, default=0.5, help="seconds between OTPs")
    p.add_argument("--writer", choices=("thread", "process"), default="process")
    p.add_argument("--dir", default=None, help="where the LMDB file goes (default: tmp)")
    args = p.parse_args(argv)
    print(json.dumps(trio.run(run, args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
