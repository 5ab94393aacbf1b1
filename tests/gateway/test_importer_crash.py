"""A killed-and-restarted import (SIGKILL mid-file) neither loses nor duplicates rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import lmdb
import msgpack

import gateway.importer  # noqa: F401  (registers its databases before open_store)
from gateway.app import Gateway
from gateway.campaigns import Campaigns
from gateway.store import open_store

N = 60_000
ROOT = Path(__file__).resolve().parents[2]


def journal_cursor(store_path: Path) -> int | None:
    try:
        env = lmdb.open(str(store_path), readonly=True, max_dbs=64, lock=True)
    except lmdb.Error:
        return None
    try:
        with env.begin() as txn:
            db = env.open_db(b"imports", txn=txn, create=False)
            for _, value in txn.cursor(db=db):
                return int(msgpack.unpackb(value, raw=False)["cursor"])
    except lmdb.Error:
        return None
    finally:
        env.close()
    return None


def worker(store: Path, file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.gateway._import_worker", str(store),
                             str(file)], cwd=ROOT, stdout=subprocess.PIPE)


def kill_mid_file(store_path: Path, file: Path) -> int | None:
    """Start a worker, SIGKILL it once its journal shows staged rows; the cursor then seen."""
    proc = worker(store_path, file)
    deadline = time.monotonic() + 60
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        cursor = journal_cursor(store_path)
        if cursor:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = cursor
            break
        time.sleep(0.005)  # polling another process, not time logic
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return killed_at


async def test_sigkill_mid_file_then_restart_imports_every_row_once(tmp_path: Path) -> None:
    drop, store_path = tmp_path / "drop", tmp_path / "db"
    drop.mkdir()
    today = datetime.now(UTC).strftime("%d%m%y")
    file = drop / f"mailing_{today}_1.csv"
    file.write_text("mobile_phone,message\n" + "".join(
        f"9{12000000 + i:08d},Hello {i}\n" for i in range(N)))

    killed_at = kill_mid_file(store_path, file)
    assert killed_at is not None
    assert file.exists()  # not moved: the import did not finish
    assert 0 < (journal_cursor(store_path) or 0) < N

    proc = worker(store_path, file)
    assert proc.wait(timeout=120) == 0
    assert not file.exists() and (drop / "processed" / file.name).exists()

    async with open_store(store_path, sync=False) as store:
        svc = Campaigns(store, Gateway(store, []))
        (c,) = svc.of_account("acme")
        assert (c.rows, c.sealed) == (N, True)
        rows = list(svc.rows(c.account, c.name, refs=False))
        assert [r for r, _, _ in rows] == list(range(N))
        assert [d["mobile_phone"] for _, d, _ in rows] == [f"9{12000000 + i:08d}" for i in range(N)]
        await svc.step()
        assert store.entries(b"messages") == N
        assert svc.statistics(svc.get("acme", c.name))["accepted"] == N  # type: ignore[arg-type]
