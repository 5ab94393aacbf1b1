"""Command line of the simulator: ``python -m adapters.simulator --port 2775 [options]``.

``septet simulator`` calls ``main(argv)``. On SIGINT/SIGTERM it stops and prints one JSON line
with the counters (what the benchmark reads to check nothing was lost or duplicated).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from functools import partial

import trio

from adapters.simulator.config import SimulatorConfig, SimulatorStats
from adapters.simulator.server import serve_simulator


def _outcomes(text: str) -> tuple[tuple[str, float], ...]:
    """``DELIVRD=90,UNDELIV=5,EXPIRED=3,REJECTD=2`` -> pairs."""
    pairs = []
    for item in text.split(","):
        stat, _, weight = item.partition("=")
        pairs.append((stat.strip().upper(), float(weight or 1)))
    return tuple(pairs)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="septet simulator", description="Simulated SMPP 3.4 SMSC")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--system-id", default="", help="accept only this system_id (default any)")
    ap.add_argument("--password", default="", help="accept only this password (default any)")
    ap.add_argument("--latency", type=float, default=0.0, help="submit_sm_resp delay, s")
    ap.add_argument("--latency-jitter", type=float, default=0.0, help="extra U(0, j) delay, s")
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--max-rate", type=float, default=0.0, help="submits/s, then THROTTLED")
    ap.add_argument("--receipt-delay", default="0,0", help="MIN,MAX seconds (uniform)")
    ap.add_argument("--outcomes", default="DELIVRD=1", help="e.g. DELIVRD=90,UNDELIV=10")
    ap.add_argument("--no-receipts", action="store_true")
    ap.add_argument("--error-rate", type=float, default=0.0)
    ap.add_argument("--error-status", type=lambda s: int(s, 0), default=0x0B)
    ap.add_argument("--disconnect-rate", type=float, default=0.0)
    ap.add_argument("--id-format", choices=["decimal", "hex", "hex-resp-decimal-receipt"],
                    default="decimal")
    ap.add_argument("--mo-reply", default="",
                    help="handsets answer every message with this text (mobile-originated)")
    ap.add_argument("--mo-numbers", default="",
                    help="comma-separated handsets that answer (default: all)")
    ap.add_argument("--mo-packed", action="store_true", help="MO GSM 7-bit bodies packed")
    ap.add_argument("--mo-concat", choices=["udh", "sar"], default="udh")
    ap.add_argument("--mo-delay", type=float, default=0.0, help="seconds before the MO reply")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    return ap


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    low, _, high = args.receipt_delay.partition(",")
    return SimulatorConfig(
        system_id=args.system_id,
        password=args.password,
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        window=args.window,
        max_submit_rate=args.max_rate,
        receipts=not args.no_receipts,
        receipt_delay_min=float(low),
        receipt_delay_max=float(high or low),
        outcomes=_outcomes(args.outcomes),
        submit_error_rate=args.error_rate,
        submit_error_status=args.error_status,
        disconnect_rate=args.disconnect_rate,
        id_format=args.id_format,
        mo_reply=args.mo_reply,
        mo_numbers=tuple(n.strip() for n in args.mo_numbers.split(",") if n.strip()),
        mo_packed_gsm7=args.mo_packed,
        mo_concat=args.mo_concat,
        mo_delay=args.mo_delay,
        seed=args.seed,
    )


async def _run(config: SimulatorConfig, host: str, port: int, stats: SimulatorStats,
               quiet: bool) -> None:
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(partial(serve_simulator, config, host=host, port=port,
                                            stats=stats))
        if not quiet:
            print(f"simulator listening on {host}:{bound}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; print the counters as JSON; return 0."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO)
    stats = SimulatorStats()
    trio.run(_run, config_from_args(args), args.host, args.port, stats, args.quiet)
    print(json.dumps(stats.statistics()), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
