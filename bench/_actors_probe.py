"""Probe: the event loop's own CPU per message in ``bench.pipeline``'s throughput run.

``bench.pipeline`` prints the CPU of all threads and the writer thread's; the event loop
(the main thread: actors, the scripted carrier, the harness's producers and notifier) is
the rest only roughly, because the writer's GIL hand-overs and the commit land in both. This
probe runs the same throughput run and reads the main thread's own CPU
(``time.thread_time``) at the two instants ``bench.pipeline`` reads ``process_time``, so the
figure covers exactly the measured interval.

    python -m bench._actors_probe --messages 60000 --writer process   # as bench.pipeline

Last line: one JSON object, bench.pipeline's figures plus ``loop_cpu_us_per_msg``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import trio

from bench import pipeline

_marks: list[float] = []
_process_time = time.process_time


def _process_time_marked() -> float:
    """``process_time`` that also notes the calling (main) thread's CPU."""
    _marks.append(time.thread_time())
    return _process_time()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=60_000)
    p.add_argument("--producers", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--dir", default=None)
    p.add_argument("--writer", choices=("thread", "process"), default="process",
                   help="who runs the store writes (bench.pipeline's --writer)")
    args = p.parse_args(argv)
    time.process_time = _process_time_marked  # bench.pipeline reads it via the time module
    try:
        result = trio.run(pipeline.throughput, args, args.writer)
    finally:
        time.process_time = _process_time
    loop = (_marks[-1] - _marks[0]) / args.messages * 1e6
    print(f"event loop (main thread) CPU {loop:.1f} µs per message")
    sys.stdout.flush()
    print(json.dumps({**result, "loop_cpu_us_per_msg": round(loop, 1)}))


if __name__ == "__main__":
    main()
