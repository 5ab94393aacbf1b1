"""SMPP throughput: SmppCarrier -> simulator in ANOTHER process, window 64, receipts flowing back.

    python -m bench.smpp [--seconds 10] [--window 64] [--binds 1] [--callers 4] [--batch 512]
    python -m bench.smpp --micro     # CPU µs per PDU of the client's hot steps, no sockets
    python -m bench.smpp --simulator-alone 30000   # the simulator's CPU µs per submit, driven
                                                   # by a minimal blocking-socket ESME

Starts ``python -m adapters.simulator`` as a subprocess (receipts after U(0, 50 ms)), binds
one transceiver, keeps ``callers`` concurrent ``submit_many`` batches going for ``--seconds``,
waits for the receipts, stops the simulator and reads its counters to check nothing was lost
or duplicated. Prints figures; the last line is one JSON object (submit_per_s, p99_ms, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import trio

from actors.messages import CarrierReceipt, MsgId, SubmitPart
from adapters.smpp.client import SmppCarrier
from bench._common import percentile


def _start_simulator(receipt_delay: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.simulator", "--port", "0", "--receipt-delay",
         receipt_delay],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "simulator listening on 127.0.0.1:PORT"
    return proc, int(line.rsplit(":", 1)[1])


def _parts(n: int, start: int) -> list[SubmitPart]:
    body = b"Septet benchmark message, one part"
    return [SubmitPart(MsgId(f"b{i}"), 1, 1, f"+4915{i:09d}", "Septet", 0, b"", body, 0)
            for i in range(start, start + n)]


async def _drive(port: int, args: argparse.Namespace) -> dict[str, float]:
    receipts = 0

    async def sink(batch: Sequence[CarrierReceipt]) -> None:
        nonlocal receipts
        receipts += len(batch)

    latencies: list[float] = []
    carrier = SmppCarrier("bench", "127.0.0.1", port, "bench", "bench", window=args.window,
                          binds=args.binds, latency_samples=latencies)
    counts = {"submitted": 0, "accepted": 0, "failed": 0}
    next_index = 0

    async def caller(stop_at: float) -> None:
        nonlocal next_index
        while trio.current_time() < stop_at:
            batch = _parts(args.batch, next_index)
            next_index += args.batch
            results = await carrier.submit_many(batch)
            counts["submitted"] += len(batch)
            ok = sum(r.ok for r in results)
            counts["accepted"] += ok
            counts["failed"] += len(batch) - ok

    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run, sink)
        with trio.move_on_after(5):
            while carrier.statistics()["bound"] < args.binds:
                await trio.sleep(0.01)
        if not carrier.ready:
            raise SystemExit("could not bind to the simulator")
        # Warm-up, not measured.
        await carrier.submit_many(_parts(2000, 10_000_000))
        with trio.move_on_after(5):
            while receipts < 2000:
                await trio.sleep(0.01)
        latencies.clear()
        receipts_before = receipts
        t0 = trio.current_time()
        async with trio.open_nursery() as callers:
            for _ in range(args.callers):
                callers.start_soon(caller, t0 + args.seconds)
        elapsed = trio.current_time() - t0
        with trio.move_on_after(10):
            while receipts - receipts_before < counts["accepted"]:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    accepted = counts["accepted"]
    got = receipts - receipts_before
    return {
        "seconds": round(elapsed, 2),
        "submitted": counts["submitted"],
        "accepted": accepted,
        "failed": counts["failed"],
        "receipts": got,
        "submit_per_s": round(accepted / elapsed),
        "pdus_per_s": round((2 * accepted + 2 * got) / elapsed),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "warmup_parts": 2000,
    }


def micro(rounds: int = 7) -> dict[str, float]:
    """CPU µs per PDU of the client's hot steps, without sockets (best of ``rounds``):
    framing + decoding 64 submit_sm_resp / 64 receipt deliver_sm (as the simulator writes
    them), the session answering 64 submits, parsing 64 receipts, and bytes to
    ``CarrierReceipt`` through the general decoder + ``parse_receipt`` or the session's fast
    path (``adapters.smpp._fast``)."""
    import timeit

    from adapters.simulator.machine import encode_receipt, receipt_text
    from adapters.smpp import _fast
    from adapters.smpp import pdu as p
    from adapters.smpp.receipts import parse_receipt
    from adapters.smpp.session import EsmeSession, State
    from adapters.smpp.submit import PartEncoder, SubmitOptions

    n = 64
    now = time.time()
    ids = [f"{i + 100000:016x}" for i in range(n)]
    resps = b"".join(p.encode_submit_sm_resp(i + 1, 0, ids[i]) for i in range(n))
    receipts = b"".join(
        encode_receipt(1000 + i, "447700900123", "SEPTET",
                       receipt_text(ids[i], "DELIVRD", 0, now, now, b"hello world this is"),
                       ids[i], 2, 0)
        for i in range(n))
    pdus = [d for d in p.Framer().feed(receipts) if isinstance(d, p.DeliverSm)]
    parts = _parts(n, 0)
    encode = PartEncoder(SubmitOptions()).encode

    def answer() -> object:
        session = EsmeSession(now=0.0, window=n)
        session.state, session.mode = State.BOUND, "transceiver"
        for i in range(n):
            session.submit_encoded(b"\0" * 40, now=0.0, token=i)
        return session.receive_data(resps, 0.0)

    steps = {
        "decode_submit_sm_resp_us": lambda: p.Framer().feed(resps),
        "decode_receipt_us": lambda: p.Framer().feed(receipts),
        "session_submit_and_answer_us": answer,
        "parse_receipt_us": lambda: [parse_receipt(d, connector="c", received_at=1.0)
                                     for d in pdus],
        # bytes -> CarrierReceipt: the general path (the two above) and the session's fast path
        "receipt_general_us": lambda: [parse_receipt(d, connector="c", received_at=1.0)
                                       for d in p.Framer().feed(receipts)],
        "receipt_fast_us": lambda: [d.receipt("c", 1.0) for d in p.Framer().feed(
            receipts, _fast.decode_with_receipts)],
        "encode_submit_us": lambda: [encode(part) for part in parts],
    }
    return {name: round(min(timeit.repeat(fn, number=200, repeat=rounds)) / 200 / n * 1e6, 3)
            for name, fn in steps.items()}


def simulator_alone(n: int, window: int) -> dict[str, float]:
    """The simulator process's CPU µs per submit (receipts at once, each acknowledged), driven
    by a blocking-socket ESME that does little else: the simulator's own cost, with as little
    of the client's CPU competing for the cores as possible."""
    import socket

    from adapters.smpp import pdu as p
    from adapters.smpp.submit import SubmitOptions, encode_part

    proc, port = _start_simulator("0,0")

    def cpu() -> float:
        with open(f"/proc/{proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    options = SubmitOptions()
    frames = [encode_part(part, options) for part in _parts(n, 0)]  # not measured
    framer = p.Framer()
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as trio streams do
            sock.sendall(p.encode(p.BindRequest("transceiver", 1, "bench", "bench", "", 0x34, 0,
                                                0, "")))
            while not framer.feed(sock.recv(65536)):
                pass
            cpu0, t0, seq = cpu(), time.time(), 1
            for start in range(0, n, window):
                batch = []
                for frame in frames[start : start + window]:
                    seq += 1
                    batch.append(frame[:12] + seq.to_bytes(4, "big") + frame[16:])
                sock.sendall(b"".join(batch))
                answers = receipts = 0
                while answers < len(batch) or receipts < len(batch):
                    acks = []
                    for pdu in framer.feed(sock.recv(262144)):
                        if isinstance(pdu, p.SubmitSmResp):
                            answers += 1
                        elif isinstance(pdu, p.DeliverSm):
                            receipts += 1
                            acks.append(p.encode_deliver_sm_resp(pdu.sequence))
                    if acks:  # acknowledged as they come, one write per read (as the gateway)
                        sock.sendall(b"".join(acks))
            cpu1, t1 = cpu(), time.time()
    finally:
        proc.send_signal(2)
        proc.communicate(timeout=30)
    return {"simulator_alone_cpu_us_per_submit": round((cpu1 - cpu0) / n * 1e6, 2),
            "simulator_alone_submits_per_s": round(n / (t1 - t0)), "submits": n,
            "loadavg_1m": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.smpp")
    ap.add_argument("--micro", action="store_true",
                    help="only the per-PDU CPU of the client's hot steps (no sockets, ~5 s)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--binds", type=int, default=1, help="connections (each with its window)")
    ap.add_argument("--callers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--receipt-delay", default="0,0.05")
    ap.add_argument("--simulator-alone", type=int, default=0, metavar="N",
                    help="only the simulator's CPU per submit, N submits from a minimal ESME")
    args = ap.parse_args(argv)
    if args.simulator_alone:
        figures = simulator_alone(args.simulator_alone, args.window)
        print(f"simulator CPU per submit {figures['simulator_alone_cpu_us_per_submit']} us "
              f"({figures['simulator_alone_submits_per_s']} submits/s)")
        print(json.dumps(figures))
        return
    if args.micro:
        figures = micro()
        for name, value in figures.items():
            print(f"{name:32} {value:7.3f} per PDU")
        print(json.dumps(figures))
        return
    proc, port = _start_simulator(args.receipt_delay)
    try:
        wall = time.time()
        cpu0 = time.process_time()
        figures = trio.run(_drive, port, args)
        client_cpu = time.process_time() - cpu0
    finally:
        proc.send_signal(2)  # SIGINT: the simulator prints its counters and exits
        out, _ = proc.communicate(timeout=30)
    sim_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = figures["accepted"] + figures["warmup_parts"]
    figures["client_cpu_us_per_submit"] = round(client_cpu / total * 1e6, 1)
    figures["simulator_cpu_us_per_submit"] = round((sim_cpu.ru_utime + sim_cpu.ru_stime)
                                                   / total * 1e6, 1)
    figures["loadavg_1m"] = os.getloadavg()[0]
    sim = json.loads(out.strip().splitlines()[-1])
    expected = figures["accepted"] + figures["warmup_parts"]
    figures["lost"] = expected - sim["distinct_accepted"]
    figures["duplicates"] = sim["duplicates"]
    figures["sim_receipts_acked"] = sim["receipts_acked"]
    figures["window"] = args.window
    figures["binds"] = args.binds
    print(f"ran {time.time() - wall:.1f}s wall; simulator counters: {json.dumps(sim)}")
    print(f"submit_sm accepted: {figures['accepted']} in {figures['seconds']}s "
          f"= {figures['submit_per_s']}/s; PDUs on the wire: {figures['pdus_per_s']}/s")
    print(f"submit->resp latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; "
          f"receipts {figures['receipts']}; lost {figures['lost']}; "
          f"duplicates {figures['duplicates']}")
    print(f"CPU per accepted submit (receipt included): client "
          f"{figures['client_cpu_us_per_submit']} us, simulator "
          f"{figures['simulator_cpu_us_per_submit']} us; load average {figures['loadavg_1m']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
