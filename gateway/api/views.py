"""How stored messages look in answers: JSON objects for one message, rows for CSV export.

Reads the store's ``MessageView`` (gateway._store_views) duck-typed: ``message`` (an
``actors.messages.Message``), ``state``, ``code``, ``reason``, ``updated_at``, ``parts`` and
``events``. Times are RFC 3339 UTC with milliseconds.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

CSV_COLUMNS: Final = ("id", "accepted_at", "to", "from", "campaign", "client_ref", "state",
                      "code", "reason", "encoding", "parts", "send_at", "not_after", "updated_at",
                      "carrier_ids", "text")


PART_STATUS: Final = {"P": "PENDING", "S": "SUBMITTING", "A": "SENT", "D": "DELIVERED",
                      "F": "NOT_DELIVERED", "R": "NOT_SENT"}  # actors.correlation PART_* letters


def rfc3339(t: float) -> str | None:
    """Unix seconds as ``2026-01-31T09:00:00.000Z``; None for 0 (unset)."""
    if not t:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_json(view: Any, *, events: bool = True) -> dict[str, Any]:
    """One message as the API shows it."""
    m = view.message
    out: dict[str, Any] = {
        "id": m.msg_id, "to": m.to, "from": m.sender, "text": m.text, "campaign": m.campaign or None,
        "client_ref": m.client_ref or None, "state": str(view.state), "code": view.code or None,
        "reason": view.reason or None, "encoding": m.encoding, "parts": m.parts,
        "max_parts": m.max_parts, "policy": m.policy, "accepted_at": rfc3339(m.accepted_at),
        "send_at": rfc3339(m.send_at), "not_after": rfc3339(m.not_after),
        "updated_at": rfc3339(view.updated_at), "callback_url": m.callback_url or None,
        "part_status": [
            {"part": p.part, "status": PART_STATUS.get(p.status, p.status), "connector": p.connector or None,
             "carrier_id": p.carrier_id or None, "code": p.code or None, "at": rfc3339(p.at)}
            for p in view.parts
        ],
    }
    if events:
        out["events"] = [
            {"seq": e.seq, "event": e.event, "at": rfc3339(e.at), "code": e.code or None,
             "reason": e.reason or None, "carrier_id": e.carrier_id or None}
            for e in view.events
        ]
    return out


def csv_header() -> bytes:
    return _csv_lines([CSV_COLUMNS])


def csv_rows(views: Iterable[Any]) -> bytes:
    rows = []
    for v in views:
        m = v.message
        rows.append((
            m.msg_id, rfc3339(m.accepted_at), m.to, m.sender, m.campaign, m.client_ref,
            str(v.state), v.code, v.reason, m.encoding, m.parts, rfc3339(m.send_at) or "",
            rfc3339(m.not_after) or "", rfc3339(v.updated_at) or "",
            " ".join(p.carrier_id for p in v.parts if p.carrier_id), _csv_safe(m.text),
        ))
    return _csv_lines(rows)


def _csv_safe(text: str) -> str:
    """Neutralise spreadsheet formula injection (OWASP "CSV injection")."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode()
