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
import gc
import json
import sys
import threading
import time

import trio

from bench import pipeline

_marks: list[float] = []
_process_time = time.process_time


def _process_time_marked() -> float:
    """``process_time`` that also notes the calling (main) thread's CPU."""
    _marks.append(time.thread_time())
    return _process_time()


_gc_cpu = [0.0, 0.0, 0.0]  # CPU seconds in collections of each generation (main thread)
_gc_runs = [0, 0, 0]
_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    """gc.callbacks hook: the main thread's CPU in each generation's collections."""
    if threading.current_thread() is not threading.main_thread():
        return
    if phase == "start":
        _gc_started[0] = time.thread_time()
    else:
        _gc_cpu[info["generation"]] += time.thread_time() - _gc_started[0]
        _gc_runs[info["generation"]] += 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=60_000)
    p.add_argument("--producers", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--dir", default=None)
    p.add_argument("--writer", choices=("thread", "process"), default="process",
                   help="who runs the store writes (bench.pipeline's --writer)")
    p.add_argument("--gc-threshold", type=int, default=0,
                   help="gc.set_threshold(N) for the run (0: Python's default, 700)")
    args = p.parse_args(argv)
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold)
    time.process_time = _process_time_marked  # bench.pipeline reads it via the time module
    gc.callbacks.append(_on_gc)
    try:
        result = trio.run(pipeline.throughput, args, args.writer)
    finally:
        time.process_time = _process_time
    loop = (_marks[-1] - _marks[0]) / args.messages * 1e6
    gc_us = sum(_gc_cpu) / args.messages * 1e6  # whole run (start-up included: small)
    print(f"event loop (main thread) CPU {loop:.1f} µs per message, of it cyclic GC "
          f"{gc_us:.1f} (collections per generation {_gc_runs}, CPU s {[round(c, 3) for c in _gc_cpu]})")
    sys.stdout.flush()
    print(json.dumps({**result, "loop_cpu_us_per_msg": round(loop, 1),
                      "loop_gc_us_per_msg": round(gc_us, 1)}))


if __name__ == "__main__":
    main()
