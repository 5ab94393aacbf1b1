"""``GET /v1/campaigns/{id}/messages.csv``: every row of a campaign, its message and its
events, as CSV streamed in blocks of 500 rows (the list is never held whole).

Cells a spreadsheet would run as a formula (starting ``= + - @``) get a leading ``'``,
except the ``to`` column (an E.164 number starts with ``+``).

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any, Final

import trio

from gateway.api.views import rfc3339
from gateway.campaigns import Campaign, Campaigns

EXPORT_COLUMNS: Final = ("row", "id", "to", "state", "code", "reason", "encoding", "parts",
                         "accepted_at", "updated_at", "carrier_ids", "events")


def export_filename(name: str) -> str:
    """A file name for the campaign ``name`` (characters a header could break on replaced)."""
    return "campaign-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) + ".csv"


async def export_csv(service: Campaigns, c: Campaign) -> AsyncIterator[bytes]:
    """The export of ``c``: the header line, then a row per staged recipient."""
    yield _csv_line(EXPORT_COLUMNS)
    store = service.store
    buf: list[bytes] = []
    for row, _data, ref in service.rows(c.account, c.name):
        if not ref:
            buf.append(_csv_line((row, "", "", "STAGED", "", "", "", "", "", "", "", "")))
        elif ref.startswith("!"):
            code, _, detail = ref[1:].partition(": ")
            buf.append(_csv_line((row, "", "", "REFUSED", code, detail, "", "", "", "", "",
                                  "")))
        else:
            view = store.get_message(ref)
            if view is None:
                continue
            m = view.message
            events = "; ".join(f"{e.event} {rfc3339(e.at)}" + (f" {e.code}" if e.code else "")
                               for e in view.events)
            buf.append(_csv_line((
                row, m.msg_id, m.to, str(view.state), view.code, view.reason, m.encoding,
                m.parts, rfc3339(m.accepted_at), rfc3339(view.updated_at) or "",
                " ".join(p.carrier_id for p in view.parts if p.carrier_id), events)))
        if len(buf) >= 500:
            yield b"".join(buf)
            buf = []
            await trio.lowlevel.checkpoint()
    if buf:
        yield b"".join(buf)


def _csv_line(values: tuple[Any, ...]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(
        ["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") and i != 2 else v
         for i, v in enumerate(values)])
    return buf.getvalue().encode()
