"""The store under pressure, through the whole gateway: the LMDB map filling up, and the
disk filling up.

Disk full is injected at the writer boundary (test hook, documented in docs/reliability.md):
``gateway.store._run_batch`` (the function the single writer thread runs for each group
commit) is wrapped to raise ``lmdb.DiskError`` (what LMDB raises for ENOSPC) while
``Disk.full`` is set. A tmpfs mount would need privileges and is fragile; the writer sees
exactly the same exception either way.

Both tests run the gateway with ``[store] writer = "thread"``: the hook is in that writer, and
the writer process opens a map of at least 64 GiB that never grows. The writer process's own
failed commits and full map are tested in tests/gateway/test_store_process*.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import lmdb
import pytest
import trio

import gateway.store
from gateway.config import MIB
from tests.reliability.stack import OK, all_final, start_stack, states, submit


async def test_a_tiny_map_grows_and_no_batch_is_lost(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, map_size=MIB, writer="thread")
        async with stack.client() as c:
            ids = await submit(c, 4000, tag="x" * 100)  # every batch answered 202
            got = await all_final(c, ids, timeout=60)
        nursery.cancel_scope.cancel()
    assert Counter(got[i]["state"] for i in ids) == {"DELIVERED": 4000}
    assert (stack.path / "data.mdb").stat().st_size > MIB  # the map had to grow


class Disk:
    """Makes every group commit fail as a full disk does, while ``full`` is set."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.full = False
        self.refused = 0

    def __call__(self, *args: Any) -> Any:
        if self.full:
            self.refused += 1
            raise lmdb.DiskError("mdb_txn_commit: No space left on device")
        return self.real(*args)


async def test_disk_full_answers_503_acknowledges_nothing_and_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = Disk(gateway.store._run_batch)
    monkeypatch.setattr(gateway.store, "_run_batch", disk)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, writer="thread")
        async with stack.client() as c:
            before = await submit(c, 100, tag="before")
            await all_final(c, before, timeout=30)
            disk.full = True
            refused = []
            for i in range(5):
                r = await c.post("/v1/messages", json={**OK, "text": f"during {i}"})
                refused.append(r)
            assert (await c.get("/healthz")).status_code == 200
            disk.full = False
            # the first answers after space returns may still be 503 (Retry-After: 1): a
            # client does as told
            for _ in range(5):
                r = await c.post("/v1/messages", json={**OK, "text": "probe"})
                if r.status_code != 503:
                    break
                await trio.sleep(float(r.headers["retry-after"]))
            assert r.status_code == 202, r.text
            after = [r.json()["id"], *await submit(c, 99, tag="after")]
            got = await all_final(c, before + after, timeout=30)
            texts = {m["text"] for m in (await states(c)).values()}
        nursery.cancel_scope.cancel()
    assert disk.refused >= 1  # the first commit failed; later accepts were refused before it
    for r in refused:
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert "id" not in r.json()
    assert not any(t.startswith("during") for t in texts)  # nothing acknowledged was kept...
    assert Counter(got[i]["state"] for i in before + after) == {"DELIVERED": 200}
