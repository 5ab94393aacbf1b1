"""gateway._gc: what `septet serve` does to the cyclic GC once started."""

from __future__ import annotations

import subprocess
import sys


def test_settle_after_start_freezes_and_raises_the_first_threshold() -> None:
    # In a child interpreter: the test process's own GC settings stay as they are.
    code = (
        "import gc; from gateway._gc import settle_after_start, GEN0_THRESHOLD\n"
        "keep = [[i] for i in range(1000)]\n"
        "before = gc.get_threshold()\n"
        "settle_after_start()\n"
        "after = gc.get_threshold()\n"
        "assert after == (GEN0_THRESHOLD, before[1], before[2]), (before, after)\n"
        "assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # the assert below shows its stderr
    assert done.returncode == 0, done.stderr
