"""Recipient lists in request bodies: CSV with a header, JSON lines, a JSON array, each row
to a flat ``dict`` of strings (a bad row carries ``__error__`` and is refused per row when
the campaign expands it, never failing the upload).

Pure and sans-IO: bytes or text in, rows out. :class:`CsvStream` and :class:`NdjsonStream`
are incremental (``feed(chunk)`` returns the rows completed so far, a record cut by a chunk
boundary waits for the next chunk), so a streamed upload holds one chunk of its body at a
time; :func:`csv_rows` reads text lines (the importer's files); :func:`body_rows` parses a
whole body by its content type.

Must not import: trio, gateway.http, gateway.campaigns.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from typing import Any, Final

from gateway.api import bodies
from gateway.api.problems import bad_body

MAX_ROW_FIELDS: Final = 64
MAX_VALUE: Final = 1024
CSV_TYPES: Final = ("text/csv", "text/plain", "application/csv")
NDJSON_TYPES: Final = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
MAX_RECORD: Final = 1024 * 1024  # a CSV record / JSON line longer than this is cut (bad row)


def recipient(value: Any, index: int) -> dict[str, Any]:
    """One recipient as a flat dict of strings; a bad one carries ``__error__`` (refused
    per row when expanded, not failing the campaign)."""
    if not isinstance(value, dict):
        return {"__error__": f"recipient {index} is not an object"}
    fields = value.get("fields")
    flat = {k: v for k, v in value.items() if k != "fields"}
    if isinstance(fields, dict):
        flat.update(fields)
    if len(flat) > MAX_ROW_FIELDS:
        return {"__error__": f"recipient {index} has more than {MAX_ROW_FIELDS} fields"}
    out: dict[str, Any] = {}
    for k, v in flat.items():
        if isinstance(v, bool) or v is None:
            continue
        s = v if isinstance(v, str) else str(v)
        out[str(k)] = s[:MAX_VALUE]
    return out


def body_rows(body: bytes, content_type: str) -> Iterator[dict[str, Any]]:
    """Recipients of a whole body, parsed lazily (CSV with a header, JSON lines or a JSON
    array, or an object whose ``recipients`` is one).

    Raises:
        Problem: 400 when a JSON body holds no array of recipients.
    """
    kind = bodies.media_type(content_type or "text/csv")[0]
    if kind in NDJSON_TYPES:
        return _ndjson(body)
    if kind in CSV_TYPES:
        return csv_rows(io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline=""))
    try:
        doc, _ = bodies.decode(body, content_type or bodies.JSON)
    except ValueError as exc:
        raise bad_body(str(exc)[:120]) from None
    if isinstance(doc, dict):
        doc = doc.get("recipients")
    if not isinstance(doc, list):
        raise bad_body("expected an array of recipients (or CSV / JSON lines)")
    return (recipient(r, i) for i, r in enumerate(doc))


def _ndjson(body: bytes) -> Iterator[dict[str, Any]]:
    for i, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield {"__error__": f"line {i + 1} is not JSON"}
            continue
        yield recipient(value, i)


class CsvStream:
    """Incremental CSV with a header line (delimiter , ; tab or | taken from the header):
    ``feed(bytes)`` returns the rows completed so far. A record is cut only at a newline
    outside quotes; a record longer than ``MAX_RECORD`` is cut at its last newline anyway
    (an unbalanced quote then becomes one bad row rather than unbounded memory)."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode
        self._carry = ""
        self._names: list[str] | None = None
        self._delimiter = ","

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        text = self._carry + self._decode(data, final)
        cut = len(text) if final else text.rfind("\n") + 1
        if not final and text.count('"', 0, cut) % 2 and len(text) <= MAX_RECORD:
            cut = 0  # the last newline is inside a quoted field: wait for more
        done, self._carry = text[:cut], text[cut:]
        if not done:
            return []
        if self._names is None:
            header, _, done = done.partition("\n")
            if not header.strip():
                self._names = []
            else:
                self._delimiter = max((",", ";", "\t", "|"), key=header.count)
                self._names = [h.strip().lower() for h in
                               next(csv.reader([header], delimiter=self._delimiter))]
        names = self._names
        if not names:
            return []
        out = []
        try:
            for values in csv.reader(io.StringIO(done, newline=""), delimiter=self._delimiter):
                if values and values != [""]:
                    out.append({k: v.strip()[:MAX_VALUE]
                                for k, v in zip(names, values, strict=False) if k})
        except csv.Error as exc:
            out.append({"__error__": f"CSV: {str(exc)[:80]}"})
        return out


class NdjsonStream:
    """Incremental JSON lines: ``feed(bytes)`` returns the rows of the lines completed."""

    def __init__(self) -> None:
        self._carry = b""
        self._line = 0

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        data = self._carry + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        if not cut and len(data) > MAX_RECORD:
            cut = len(data)  # one line longer than MAX_RECORD: judged (and refused) now
        done, self._carry = data[:cut], data[cut:]
        if not done:
            return []
        lines = done.split(b"\n")
        if done.endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        out = []
        for line in lines:
            self._line += 1
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                out.append({"__error__": f"line {self._line} is not JSON"})
                continue
            out.append(recipient(value, self._line - 1))
        return out


def csv_rows(text: io.TextIOBase | Iterator[str]) -> Iterator[dict[str, Any]]:
    """Rows of a CSV with a header line; the delimiter (, ; tab |) is taken from the header."""
    lines = iter(text)
    header = next(lines, "")
    if not header.strip():
        return
    delimiter = max((",", ";", "\t", "|"), key=header.count)
    names = [h.strip().lower() for h in next(csv.reader([header], delimiter=delimiter))]
    for values in csv.reader(lines, delimiter=delimiter):
        if not values or values == [""]:
            continue
        yield {k: v.strip()[:MAX_VALUE] for k, v in zip(names, values, strict=False) if k}
