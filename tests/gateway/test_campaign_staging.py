"""Staging recipients (gateway._campaign_staging) against a real LMDB store in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack

import gateway.campaigns  # noqa: F401  (registers the campaign databases before open_store)
from gateway.campaigns import ROWS, Campaign, Campaigns, campaign_key
from gateway.store import open_store


async def _batches(*batches: list[dict[str, Any]]) -> AsyncIterator[list[dict[str, Any]]]:
    for batch in batches:
        yield batch


def _rows(start: int, stop: int, pad: int = 0) -> list[dict[str, Any]]:
    return [{"phone": f"+3519{i:08d}", "note": "x" * pad} for i in range(start, stop)]


def _staged(store: Any, name: str) -> list[str]:
    prefix = campaign_key("alpha", name).encode() + b"\x00"
    with store.read() as txn, txn.cursor(db=store.db(ROWS)) as cur:
        cur.set_range(prefix)
        return [msgpack.unpackb(v)["phone"] for k, v in cur if k.startswith(prefix)]


async def test_a_resumed_upload_whose_commit_is_retried_stages_every_row_once(
        tmp_path: Path) -> None:
    """The store re-runs a batch's ops after growing its map (MapFullError): a chunk that
    skips the rows already staged must skip them once, not once per run."""
    async with open_store(tmp_path / "db", sync=False, map_size=1 << 20) as store:
        svc = Campaigns(store)
        await svc.create(Campaign(name="resumed", account="alpha", sender="Septet", text="hi"))
        assert await svc.stage_batches("alpha", "resumed", _batches(_rows(0, 10))) == (10, 0)
        # the whole list again from row 0, in one chunk too big for the 1 MiB map
        staged, skipped = await svc.stage_batches(
            "alpha", "resumed", _batches(_rows(0, 3000, pad=600)), offset=0, chunk=5000)
        assert store.statistics().map_grown >= 1  # the chunk's op did run again
        assert (staged, skipped) == (2990, 10)
        assert _staged(store, "resumed") == [r["phone"] for r in _rows(0, 3000)]
