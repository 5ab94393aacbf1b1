"""Staging: appending recipient rows to a campaign's list in durable chunks (see
gateway.campaigns, "Theory of operation").

Each chunk is one write transaction that checks the campaign still takes rows, puts the rows
after its last one (``campaign_rows``) and advances its row count, so nothing is held beyond
a chunk and a crash loses at most the chunk in flight, never half of one.

Must not import: gateway.http, gateway.api.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

import msgpack

from gateway._campaign_model import (
    ROWS,
    CampaignError,
    load_campaign,
    row_key,
    save_campaign,
)

Also = Callable[[Any, int], None]
"""``also(txn, rows_in_chunk)``: the caller's own writes in a chunk's transaction."""


async def stage(store: Any, account: str, name: str, rows: Iterable[Mapping[str, Any]], *,
                also: Also | None = None, chunk: int = 5000) -> int:
    """Append recipient rows in durable chunks; returns how many were staged.

    ``also(txn, rows_in_chunk)`` runs in each chunk's transaction (the importer commits
    its file cursor there).

    Raises:
        CampaignError: 404 unknown campaign, 409 when it no longer takes rows.
    """
    total = 0
    batch: list[bytes] = []
    for row in rows:
        batch.append(msgpack.packb(dict(row), use_bin_type=True))
        if len(batch) >= chunk:
            total += await _stage_chunk(store, account, name, batch, also)
            batch = []
    if batch or total == 0:
        total += await _stage_chunk(store, account, name, batch, also)
    return total


async def stage_batches(store: Any, account: str, name: str,
                        batches: AsyncIterable[list[dict[str, Any]]], *,
                        offset: int | None = None, chunk: int = 2000) -> tuple[int, int]:
    """Stage rows as they arrive (lists of rows, e.g. per received chunk of a streamed
    upload), committing each ``chunk`` rows durably; returns (staged, skipped).

    ``offset``: the first row given is row ``offset`` of the campaign's list. Rows the
    campaign already has (below its staged count) are skipped, in the same transaction
    that stages the rest, so re-sending a list from its start after a dropped
    connection stages every row exactly once. None: append everything.

    Raises:
        CampaignError: 404 unknown campaign, 409 when it no longer takes rows or when
            ``offset`` is past the rows staged (a gap).
    """
    staged = skipped = 0
    at = offset
    batch: list[bytes] = []
    async for rows in batches:
        for row in rows:
            batch.append(msgpack.packb(row, use_bin_type=True))
        if len(batch) >= chunk:
            n = await _stage_chunk(store, account, name, batch, None, at)
            staged, skipped = staged + n, skipped + len(batch) - n
            at = None if at is None else at + len(batch)
            batch = []
    if batch or staged + skipped == 0:
        n = await _stage_chunk(store, account, name, batch, None, at)
        staged, skipped = staged + n, skipped + len(batch) - n
    return staged, skipped


async def _stage_chunk(store: Any, account: str, name: str, packed: list[bytes],
                       also: Also | None, first: int | None = None) -> int:
    """Append ``packed`` rows in one transaction; ``first``: the row number of
    ``packed[0]`` in the list (rows below the staged count are skipped), None to append.

    ``op`` must give the same result however often it runs: the store runs a batch's ops
    again after growing its map (and after a failed commit).
    """

    def op(txn: Any) -> int:
        c = load_campaign(txn, store, account, name)
        if c.sealed or c.state in ("cancelled", "done"):
            reason = f"campaign is {c.state} and sealed; it takes no more recipients"
            raise CampaignError(409, [("recipients", reason)])
        fresh = packed  # never rebind ``packed``: the store may run ``op`` again
        if first is not None:
            if first > c.rows:
                gap = f"row {first} is past the {c.rows} rows staged: none may be missing"
                raise CampaignError(409, [("offset", gap)])
            fresh = packed[c.rows - first:]  # rows the campaign already has are skipped
        db = store.db(ROWS)
        for i, data in enumerate(fresh):
            txn.put(row_key(c.key, c.rows + i), data, db=db)
        c.rows += len(fresh)
        save_campaign(txn, store, c)
        if also is not None:
            also(txn, len(fresh))
        return len(fresh)

    return int(await store.write(op))
