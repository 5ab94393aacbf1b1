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
import re
from collections.abc import Iterator
from typing import Any, Final

from gateway.api import bodies
from gateway.api.problems import bad_body

MAX_ROW_FIELDS: Final = 64
MAX_VALUE: Final = 1024
CSV_TYPES: Final = ("text/csv", "text/plain", "application/csv")
NDJSON_TYPES: Final = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
MAX_RECORD: Final = 1024 * 1024  # a CSV record / JSON line longer than this is cut (bad row)
DELIMITERS: Final = (",", ";", "\t", "|")
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


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
    """Recipients of a whole body: CSV with a header or JSON lines (through the same parsers
    as a streamed body, so both paths give the same rows), a JSON array, or an object whose
    ``recipients`` is one.

    Raises:
        Problem: 400 when a JSON body holds no array of recipients.
    """
    kind = bodies.media_type(content_type or "text/csv")[0]
    if kind in CSV_TYPES or kind in NDJSON_TYPES:
        return iter(parser_for(kind).feed(body, final=True))
    try:
        doc, _ = bodies.decode(body, content_type or bodies.JSON)
    except ValueError as exc:
        raise bad_body(str(exc)[:120]) from None
    if isinstance(doc, dict):
        doc = doc.get("recipients")
    if not isinstance(doc, list):
        raise bad_body("expected an array of recipients (or CSV / JSON lines)")
    return (recipient(r, i) for i, r in enumerate(doc))


def parser_for(kind: str) -> CsvStream | NdjsonStream:
    """A fresh incremental parser for the media type ``kind`` (CSV_TYPES or NDJSON_TYPES)."""
    return NdjsonStream() if kind in NDJSON_TYPES else CsvStream()


class CsvStream:
    """Incremental CSV with a header line (delimiter , ; tab or | taken from the header):
    ``feed(bytes)`` returns the rows completed so far.

    Records end at ``\n``, ``\r\n`` or ``\r`` (as the csv module reads them), and the
    chunk's text is cut after its last line end outside double quotes: a quoted field may
    hold newlines, and a chunk boundary inside one (or inside a UTF-8 character) just
    leaves the record for the next feed. Quotes are counted, not parsed: a stray ``"``
    inside an unquoted field makes the records after it wait, until the carried text
    exceeds ``MAX_RECORD``; it is then cut at its last line end anyway, so memory stays
    bounded and an unbalanced quote costs bad rows, not the upload. A record with no line
    end in more than ``MAX_RECORD`` characters is one bad row and the rest of it is skipped
    up to its line end, so the row count does not depend on where the body is cut.
    """

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode
        self._carry = ""
        self._names: list[str] | None = None  # [] when the header line is blank: no rows
        self._delimiter = ","
        self._skipping = False  # inside a record already refused as too long

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        text = self._decode(data, final)
        if self._skipping:
            line_end = _LINE_END.search(text)
            if line_end is None:
                return []
            self._skipping, text = False, text[line_end.end():]
        text = self._carry + text
        cut = len(text) if final else _records_end(text)
        if cut < 0:
            return self._refuse_long(text)
        done, self._carry = text[:cut], text[cut:]
        if self._names is None:
            if not done:
                return []
            line_end = _LINE_END.search(done)
            header, done = (done[:line_end.start()], done[line_end.end():]) if line_end \
                else (done, "")
            self._delimiter, self._names = _header(header)
        if not self._names or not done:
            return []
        reader = csv.reader(io.StringIO(done, newline=""), delimiter=self._delimiter)
        return list(_records(reader, self._names))

    def _refuse_long(self, text: str) -> list[dict[str, Any]]:
        """``text`` has no line end in ``MAX_RECORD`` characters: one bad row (or, for the
        header, a list with no rows), and skip to its line end."""
        self._carry, self._skipping = "", True
        if self._names is None:
            self._names = []
            return []
        return [{"__error__": f"CSV: a record longer than {MAX_RECORD} characters"}]


def _records_end(text: str) -> int:
    """Where the complete records of ``text`` (which starts at a record's start) end: after
    its last line end outside double quotes, or 0 if there is none yet. Past ``MAX_RECORD``
    characters without one: after its last line end at all, or -1 if it has none."""
    end = len(text)
    pieces = text.split('"')
    for i in range(len(pieces) - 1, -1, -1):  # from the end: the cut is usually near it
        start = end - len(pieces[i])
        if i % 2 == 0:  # an even piece lies outside quotes
            at = max(pieces[i].rfind("\n"), pieces[i].rfind("\r"))
            if at >= 0:
                return start + at + 1
        end = start - 1  # the quote before this piece
    if len(text) <= MAX_RECORD:
        return 0
    return max(text.rfind("\n"), text.rfind("\r")) + 1 or -1


class NdjsonStream:
    """Incremental JSON lines: ``feed(bytes)`` returns the rows of the lines completed.

    A line longer than ``MAX_RECORD`` bytes is one bad row however the body is cut (row
    numbers must not depend on chunking: an ``?offset`` resume counts on them): once a line
    without its end grows past the limit it is refused at once and the rest of it, up to its
    newline, is skipped as it comes.
    """

    def __init__(self) -> None:
        self._carry = b""
        self._line = 0
        self._skipping = False  # inside a line already refused as too long

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return []
            self._skipping, data = False, data[end + 1:]
        data = self._carry + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        if not cut and len(data) > MAX_RECORD:
            cut, self._skipping = len(data), True  # judged (and refused) now
        done, self._carry = data[:cut], data[cut:]
        if not done:
            return []
        lines = done.split(b"\n")
        if done.endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        out = []
        for line in lines:
            self._line += 1  # blank lines are numbered too
            if line.strip():
                out.append(self._row(line))
        return out

    def _row(self, line: bytes) -> dict[str, Any]:
        """The recipient on line ``self._line``, or why it is none."""
        if len(line) > MAX_RECORD:
            return {"__error__": f"line {self._line} is longer than {MAX_RECORD} bytes"}
        try:
            value = json.loads(line)
        except ValueError:
            return {"__error__": f"line {self._line} is not JSON"}
        return recipient(value, self._line - 1)


def csv_rows(text: io.TextIOBase | Iterator[str]) -> Iterator[dict[str, Any]]:
    """Rows of CSV text lines (the importer's files) with a header line; the delimiter
    (, ; tab |) is taken from the header, as :class:`CsvStream` does."""
    lines = iter(text)
    header = next(lines, "")
    if not header.strip():
        return
    delimiter, names = _header(header)
    yield from _records(csv.reader(lines, delimiter=delimiter), names)


def _header(line: str) -> tuple[str, list[str]]:
    """The delimiter of a header line (the one of , ; tab | it holds most; , if none) and
    its column names, lower-cased ([] when the line is blank: such a list has no rows)."""
    if not line.strip():
        return ",", []
    delimiter = max(DELIMITERS, key=line.count)
    return delimiter, [h.strip().lower() for h in next(csv.reader([line], delimiter=delimiter))]


def _records(reader: Iterator[list[str]], names: list[str]) -> Iterator[dict[str, Any]]:
    """The rows ``reader`` yields, keyed by ``names``; blank lines are skipped, and a record
    the csv module refuses (a field over its size limit) becomes one bad row, after which
    reading goes on with the next line."""
    while True:
        try:
            for values in reader:
                if values and values != [""]:
                    yield {k: v.strip()[:MAX_VALUE] for k, v in zip(names, values, strict=False)
                           if k}
            return
        except csv.Error as exc:
            yield {"__error__": f"CSV: {str(exc)[:80]}"}
