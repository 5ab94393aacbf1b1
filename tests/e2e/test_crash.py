"""Kill -9 the pipeline at random points, restart it, and check nothing is lost.

The worker (tests/e2e/crash_worker.py) runs the real gateway on a real LMDB file. It is
SIGKILLed at least 20 times at random moments while it accepts and delivers, then run to the
end. Checked: every acknowledged message is in the store and final (DELIVERED), duplicates
at the carrier are counted, never exceed the parts recovery found in doubt, and stay within
the in-flight window per kill.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from actors.correlation import StateRecord
from gateway.store import open_env
from tests.e2e.crash_worker import WINDOW

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
TARGET = 3000


def _start(path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.e2e.crash_worker", str(path), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _in_doubt(out: str) -> int:
    total = 0
    for line in out.splitlines():
        if line.startswith("{"):
            total += json.loads(line).get("in_doubt", 0)
    return total


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    rnd = random.Random(int(os.environ.get("CRASH_SEED", "12345")))
    in_doubt = 0
    for _ in range(KILLS):
        proc = _start(tmp_path, "accept", str(TARGET))
        time.sleep(rnd.uniform(0.6, 1.4))  # start-up is ~0.5 s; kill somewhere after it
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
        in_doubt += _in_doubt(out)
    proc = _start(tmp_path, "finish")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    in_doubt += _in_doubt(out)
    assert '"final": true' in out

    acked = (tmp_path / "acked").read_text().split()
    assert len(acked) >= 1000
    env, dbs = open_env(tmp_path / "db")
    try:
        with env.begin() as txn:
            states = {k.decode(): StateRecord.unpack(v).state
                      for k, v in txn.cursor(db=dbs[b"state"])}
            outbox = txn.stat(dbs[b"outbox"])["entries"]
    finally:
        env.close()
    missing = [i for i in acked if i not in states]
    assert missing == []  # nothing acknowledged was lost
    assert set(states.values()) == {"DELIVERED"}  # everything stored reached its final state
    assert outbox == 0

    submitted = Counter(tuple(line.split()[:2])
                        for line in (tmp_path / "carrier.log").read_text().splitlines())
    duplicates = sum(n - 1 for n in submitted.values())
    assert {k[0] for k in submitted} >= set(acked)
    assert duplicates <= in_doubt  # only parts found in doubt were sent twice
    assert duplicates <= KILLS * WINDOW  # ... bounded by the in-flight window per kill
    print(f"kills={KILLS} messages={len(states)} in_doubt={in_doubt} duplicates={duplicates}")
