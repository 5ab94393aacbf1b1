"""Crash loop: the real gateway under load, SIGKILLed every 2 ± 1 s and restarted each time.

    python -m bench.torture                 # 50,000 messages per policy, both policies
    python -m bench.torture --quick         # 5,000 messages per policy (~6 kills each)
    python -m bench.torture --policies mark_unknown --messages 20000 --seed 7

For each in-doubt policy (``resend``: at-least-once; ``mark_unknown``: parts in flight at the
crash end NOT_SENT ``in_doubt``), on loopback, from scratch:

* the SMSC simulator (``python -m adapters.simulator``), one process for the whole run, so it
  outlives every kill and keeps its counters (printed as JSON when it is stopped); receipts
  after 0-0.3 s, held across connections for the next bind as an SMSC does;
* the gateway: ``septet serve`` with ``[core] in_doubt`` set to the policy and
  ``store.sync = true`` in a temporary directory and one ``[[smpp]]`` connector to it;
* this process: the load generator (batches of 500 over HTTP, each with its own
  ``Idempotency-Key``, paced to ``--rate``; a batch not acknowledged with 202 is sent again
  until it is, so an acknowledged id is an accepted message) and the killer (SIGKILL
  ``U(1, 3)`` s after the gateway is ready again, then restart, then time ``/readyz``).

When the load is done the killing stops; the gateway runs until every acknowledged message is
final (DELIVERED, NOT_DELIVERED, NOT_SENT) or 5 minutes pass, then stops (SIGTERM), and its
LMDB file is read directly. Figures: ``lost`` (acknowledged ids the store does not have),
``not_final``, ``duplicates`` (parts the simulator accepted more than once), ``kills``,
restart-to-ready p50/p99/max. It passes when nothing is lost, everything is final,
duplicates stay within the parts in flight at the kills (what recovery reports in doubt: the
SMPP window plus answers not yet stored, in gateway.log) under ``resend`` and are 0 under
``mark_unknown``, and restart p99 is at most 2 s. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from bench._common import free_port, percentile
from gateway.config import StoreConfig

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
WINDOW = 64  # the SMPP window of the connector: parts in flight at a kill
BATCH = 500
FINAL = ("DELIVERED", "NOT_DELIVERED", "NOT_SENT")
FINAL_WITHIN = 300.0  # seconds after the load ends
RESTART_LIMIT = 2.0  # restart-to-ready p99 must not exceed it


@dataclass
class Run:
    """One policy's run: processes, bookkeeping, figures."""

    policy: str
    messages: int
    rate: float
    seed: int
    work: Path
    sim_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    gateway: subprocess.Popen[bytes] | None = None
    acked: dict[str, int] = field(default_factory=dict)  # msg id -> message index
    restarts: list[float] = field(default_factory=list)
    kills: int = 0
    load_done: bool = False
    load_seconds: float = 0.0
    retried_batches: int = 0
    key: str = ""
    store_writer: str = "thread"  # [store] writer of the gateway: thread | process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> Path:
        path = self.work / "septet.toml"
        path.write_text(f"""
log_level = "WARNING"
[core]
in_doubt = "{self.policy}"
[http]
port = {self.http_port}
[store]
path = "{self.work / 'store'}"
sync = true
writer = "{self.store_writer}"
[simulator]
enabled = false
[dev]
create_account = true
[[smpp]]
name = "smsc"
port = {self.sim_port}
system_id = "septet"
password = "torture"
window = {WINDOW}
""")
        return path

    def start_gateway(self) -> None:
        log = open(self.work / "gateway.log", "ab")  # noqa: SIM115 - the child owns it
        self.gateway = subprocess.Popen(
            [PY, "-m", "gateway.cli", "--config", str(self.config()), "serve"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
        log.close()

    def log_tail(self, lines: int = 40) -> str:
        """The end of gateway.log (a failed restart's reason)."""
        text = (self.work / "gateway.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, client: httpx.AsyncClient, timeout: float = 30.0) -> float:
        started = time.monotonic()
        while True:
            try:
                if (await client.get(self.url + "/readyz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            assert self.gateway is not None
            if self.gateway.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with code {self.gateway.returncode}; last lines of "
                    f"{self.work / 'gateway.log'} (kept):\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise RuntimeError("gateway not ready in time")
            await trio.sleep(0.01)


# ------------------------------------------------------------------------------ load


def _batch_body(first: int, count: int) -> bytes:
    items = [{"to": f"+35191{i % 10**7:07d}", "from": "Septet", "text": f"torture {i}"}
             for i in range(first, first + count)]
    return json.dumps({"messages": items}).encode()


async def _send_batch(run: Run, client: httpx.AsyncClient, first: int, count: int) -> None:
    body = _batch_body(first, count)
    headers = {"authorization": f"Bearer {run.key}", "content-type": "application/json",
               "idempotency-key": f"torture-{run.policy}-{first}"}
    tries = 0
    while True:
        tries += 1
        try:
            r = await client.post(run.url + "/v1/messages", content=body, headers=headers)
        except httpx.TransportError:
            await trio.sleep(0.05)
            continue
        if r.status_code == 202:
            doc = r.json()
            for item in doc["messages"]:
                run.acked[item["id"]] = first + item["index"]
            if tries > 1:
                run.retried_batches += 1
            return
        if r.status_code in (503, 409):
            await trio.sleep(float(r.headers.get("retry-after", "0.2")))
            continue
        raise RuntimeError(f"unexpected answer {r.status_code}: {r.text[:300]}")


async def _load(run: Run, client: httpx.AsyncClient, workers: int = 4) -> None:
    started = time.monotonic()
    starts = list(range(0, run.messages, BATCH))
    per_batch = BATCH / run.rate

    async def worker(k: int) -> None:
        for n, first in enumerate(starts[k::workers]):
            due = started + (n * workers + k) * per_batch
            await trio.sleep(max(0.0, due - time.monotonic()))
            await _send_batch(run, client, first, min(BATCH, run.messages - first))

    async with trio.open_nursery() as nursery:
        for k in range(workers):
            nursery.start_soon(worker, k)
    run.load_seconds = time.monotonic() - started
    run.load_done = True


async def _killer(run: Run, client: httpx.AsyncClient, rnd: random.Random) -> None:
    while not run.load_done:
        with trio.move_on_after(rnd.uniform(1.0, 3.0)):
            while not run.load_done:
                await trio.sleep(0.05)
        if run.load_done:
            return
        assert run.gateway is not None
        run.gateway.send_signal(signal.SIGKILL)
        await trio.to_thread.run_sync(run.gateway.wait)
        run.kills += 1
        started = time.monotonic()
        run.start_gateway()
        await run.wait_ready(client)
        run.restarts.append(time.monotonic() - started)


async def _non_final(run: Run, client: httpx.AsyncClient) -> int:
    """How many of the account's messages are not final (history search, all pages)."""
    count, cursor = 0, None
    while True:
        params = {"status": "ACCEPTED,QUEUED,SUBMITTING,SENT", "limit": "1000"}
        if cursor:
            params["cursor"] = cursor
        try:
            r = await client.get(run.url + "/v1/messages", params=params,
                                 headers={"authorization": f"Bearer {run.key}"})
        except httpx.TransportError:
            return -1
        doc = r.json()
        count += len(doc["messages"])
        cursor = doc.get("next_cursor")
        if not cursor:
            return count


# ------------------------------------------------------------------------------ one run


async def run_policy(run: Run) -> dict[str, Any]:
    rnd = random.Random(run.seed)
    sim_log = open(run.work / "simulator.out", "wb")  # noqa: SIM115, ASYNC230
    sim = subprocess.Popen(  # noqa: ASYNC220 - spawning is quick; waits go to threads
        [PY, "-m", "adapters.simulator", "--port", str(run.sim_port), "--system-id", "septet",
         "--password", "torture", "--receipt-delay", "0,0.3", "--seed", str(run.seed),
         "--quiet"], cwd=ROOT, stdout=sim_log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=16)) as c:
            run.start_gateway()
            await run.wait_ready(c)
            run.key = (run.work / "store" / "dev-key").read_text().strip()
            print(f"[{run.policy}] gateway ready; {run.messages} messages at {run.rate:.0f}/s",
                  file=sys.stderr, flush=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_load, run, c)
                nursery.start_soon(_killer, run, c, rnd)
            load_end = time.monotonic()
            print(f"[{run.policy}] load done in {run.load_seconds:.1f} s, {run.kills} kills; "
                  "waiting for final states", file=sys.stderr, flush=True)
            final_after = None
            while time.monotonic() - load_end < FINAL_WITHIN:
                pending = await _non_final(run, c)
                if pending == 0:
                    final_after = time.monotonic() - load_end
                    break
                await trio.sleep(0.5)
        assert run.gateway is not None
        run.gateway.send_signal(signal.SIGTERM)
        await trio.to_thread.run_sync(run.gateway.wait)
    finally:
        if run.gateway is not None and run.gateway.poll() is None:
            run.gateway.kill()
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)
        sim_log.close()
    sim_stats = json.loads((run.work / "simulator.out").read_text().strip().splitlines()[-1])
    in_doubt = [int(m.group(1)) for m in re.finditer(
        r"recovery: (\d+) parts were in flight", (run.work / "gateway.log").read_text())]
    states, codes = _read_store(run.work / "store")
    lost = sum(1 for i in run.acked if i not in states)
    not_final = sum(1 for i in run.acked if states.get(i) not in FINAL)
    by_state = Counter(states.get(i, "LOST") for i in run.acked)
    return {
        "policy": run.policy,
        "messages": run.messages,
        "acked": len(run.acked),
        "stored": len(states),
        "lost": lost,
        "not_final": not_final,
        "final_after_s": None if final_after is None else round(final_after, 1),
        "states": dict(by_state),
        "not_sent_codes": dict(codes),
        "duplicates": sim_stats["duplicates"],
        "in_doubt": sum(in_doubt),  # parts recovery found in flight, over every restart
        "in_doubt_max_per_kill": max(in_doubt, default=0),
        "sim_accepted": sim_stats["submits_accepted"],
        "sim_distinct": sim_stats["distinct_accepted"],
        "receipts_redelivered": sim_stats["receipts_redelivered"],
        "kills": run.kills,
        "retried_batches": run.retried_batches,
        "load_s": round(run.load_seconds, 1),
        "restart_p50_s": round(percentile(run.restarts, 0.5), 3),
        "restart_p99_s": round(percentile(run.restarts, 0.99), 3),
        "restart_max_s": round(max(run.restarts, default=0.0), 3),
    }


def _read_store(path: Path) -> tuple[dict[str, str], Counter[str]]:
    from actors.correlation import StateRecord
    from gateway.store import open_env

    env, dbs = open_env(path)
    try:
        states: dict[str, str] = {}
        codes: Counter[str] = Counter()
        with env.begin() as txn:
            for k, v in txn.cursor(db=dbs[b"state"]):
                rec = StateRecord.unpack(v)
                states[k.decode()] = rec.state
                if rec.state == "NOT_SENT":
                    codes[getattr(rec, "code", "") or "?"] += 1
        return states, codes
    finally:
        env.close()


def verdict(r: dict[str, Any]) -> list[str]:
    """Why a run failed (empty when it passed)."""
    why = []
    if r["lost"]:
        why.append(f"{r['lost']} accepted messages lost")
    if r["not_final"]:
        why.append(f"{r['not_final']} not final {FINAL_WITHIN:.0f} s after the load")
    # A duplicate is a part the SMSC took whose answer the gateway had not stored when it
    # died: one of the parts recovery finds in flight (marked SUBMITTING, no outcome). Those
    # are the in-flight window at the kill: the SMPP window plus answers not yet committed.
    limit = 0 if r["policy"] == "mark_unknown" else r["in_doubt"]
    if r["duplicates"] > limit:
        why.append(f"{r['duplicates']} duplicates > {limit} parts in flight at the kills")
    if r["restart_p99_s"] > RESTART_LIMIT:
        why.append(f"restart p99 {r['restart_p99_s']} s > {RESTART_LIMIT} s")
    return why


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.torture", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5,000 messages per policy")
    ap.add_argument("--messages", type=int, help="messages per policy (default 50,000)")
    ap.add_argument("--rate", type=float, help="offered messages/s (default 1,000; quick 300)")
    ap.add_argument("--policies", default="resend,mark_unknown")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--store-writer", choices=("auto", "thread", "process"), default="auto",
                    help="the gateway's [store] writer (process: the pipeline's writes in a "
                         "writer process, which must die with each SIGKILLed gateway)")
    args = ap.parse_args(argv)
    args.store_writer = StoreConfig(writer=args.store_writer).resolved_writer  # "auto" decided
    messages = args.messages or (5_000 if args.quick else 50_000)
    rate = args.rate or (300.0 if args.quick else 1_000.0)
    results = []
    for n, policy in enumerate(args.policies.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"torture-{policy}-"))
        failed = True
        try:
            r = trio.run(run_policy, Run(policy, messages, rate, args.seed + n, work,
                                             store_writer=args.store_writer))
            failed = bool(verdict(r))
        finally:
            if failed:  # the gateway's log says why: never delete it
                print(f"[{policy}] failed: work directory kept: {work}", file=sys.stderr)
            elif not args.keep:
                shutil.rmtree(work, ignore_errors=True)
            else:
                print(f"[{policy}] work directory kept: {work}", file=sys.stderr)
        results.append(r)
        print(f"{policy:>12}: acked {r['acked']}  lost {r['lost']}  not_final {r['not_final']}"
              f"  final after {r['final_after_s']} s  duplicates {r['duplicates']}"
              f"  (in flight at kills {r['in_doubt']}, most at one kill "
              f"{r['in_doubt_max_per_kill']}, SMPP window {WINDOW})"
              f"  kills {r['kills']}  restart p50/p99/max {r['restart_p50_s']}/"
              f"{r['restart_p99_s']}/{r['restart_max_s']} s  states {r['states']}"
              f"  NOT_SENT codes {r['not_sent_codes']}  load {r['load_s']} s"
              f"  retried batches {r['retried_batches']}", flush=True)
        for why in verdict(r):
            print(f"{policy:>12}: FAIL {why}", flush=True)
    by = {r["policy"]: r for r in results}
    failures = [w for r in results for w in verdict(r)]
    summary = {
        "passed": not failures,
        "messages_per_policy": messages,
        "lost": sum(r["lost"] for r in results),
        "not_final": sum(r["not_final"] for r in results),
        "duplicates": by.get("resend", results[0])["duplicates"],
        "duplicates_mark_unknown": by["mark_unknown"]["duplicates"] if "mark_unknown" in by
        else None,
        "duplicate_limit_resend": by["resend"]["in_doubt"] if "resend" in by else None,
        "in_doubt_max_per_kill": max(r["in_doubt_max_per_kill"] for r in results),
        "kills": sum(r["kills"] for r in results),
        "restart_p99_s": max(r["restart_p99_s"] for r in results),
        "restart_max_s": max(r["restart_max_s"] for r in results),
        "final_after_s": max((r["final_after_s"] or FINAL_WITHIN) for r in results),
        "policies": {r["policy"]: {k: r[k] for k in ("acked", "lost", "not_final", "duplicates",
                                                     "kills", "restart_p99_s", "final_after_s")}
                     for r in results},
    }
    print(json.dumps(summary), flush=True)
    return 0 if not failures else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
