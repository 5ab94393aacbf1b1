"""An account's message history, filtered and paged, and its CSV form.

One implementation for the two ways out of the store: ``GET /v1/messages`` (JSON pages, or the
whole result as CSV with ``Accept: text/csv``) and ``septet export``, which writes the same CSV
from the command line, e.g. for a monthly report or before a store is retired. Reads only: LMDB
readers never block the writer, so an export can run beside a serving gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from gateway.api.query import SearchQuery
from gateway.api.views import csv_header, csv_rows

SCAN_PAGE: Final = 500
"""Messages read per store transaction while filtering."""


def matching(store: Any, account: str, q: SearchQuery, cursor: str | None, limit: int,
             max_scan: int | None = None) -> tuple[list[Any], str | None]:
    """Up to ``limit`` messages of ``account`` that match ``q``, after ``cursor``, and the cursor
    to continue from (None at the end).

    ``max_scan`` bounds the messages read for one call: a sparse filter over a long history then
    returns fewer (possibly no) matches with a cursor, and the caller continues from there.
    """
    out: list[Any] = []
    scanned = 0
    read = min(SCAN_PAGE, max(limit, 100), max_scan or SCAN_PAGE)
    while True:
        page = store.scan_account(account, since=q.since, until=q.until, cursor=cursor,
                                  limit=read)
        for view in page.items:
            scanned += 1
            if q.matches(view):
                out.append(view)
                if len(out) == limit:
                    return out, view.message.msg_id
        if page.cursor is None:
            return out, None
        cursor = page.cursor
        if max_scan is not None and scanned >= max_scan:
            return out, cursor


def pages(store: Any, account: str, q: SearchQuery, max_scan: int = 10 * SCAN_PAGE
          ) -> Iterator[list[Any]]:
    """Every message of ``account`` matching ``q`` (from ``q.cursor``), a list per step.

    A step reads at most ``max_scan`` messages, so a sparse filter yields empty lists now and
    then: an async caller checkpoints between steps and never blocks its loop for long. Each
    step reads in its own transactions, so a long export holds no snapshot open (an open LMDB
    reader pins old pages and makes the file grow).
    """
    cursor = q.cursor
    while True:
        views, cursor = matching(store, account, q, cursor, SCAN_PAGE, max_scan)
        yield views
        if cursor is None:
            return


def csv_chunks(store: Any, account: str, q: SearchQuery) -> Iterator[bytes]:
    """The whole matching history as CSV: the header, then one chunk per non-empty step."""
    yield csv_header()
    for views in pages(store, account, q):
        if views:
            yield csv_rows(views)


__all__ = ["SCAN_PAGE", "csv_chunks", "matching", "pages"]
