"""The recipient body parsers (gateway.api._recipients): pure, so tested without trio.

The property that matters for streamed uploads: however the body is cut into chunks (inside
a quoted field, between ``\\r`` and ``\\n``, inside a UTF-8 character or the BOM), the
incremental parsers return the same rows as parsing it whole, and the streamed and
whole-body paths agree.
"""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.api._recipients import CsvStream, NdjsonStream, body_rows, csv_rows

# field text with what makes CSV hard: delimiters, quotes, both newlines, multi-byte UTF-8
_TEXT = st.text(alphabet=st.sampled_from(list('ab ,;"\r\n€é😀\t|')), max_size=8)
_CELL = st.one_of(st.text(alphabet="0123456789+abc ", max_size=6), _TEXT)
_NEWLINE = st.sampled_from(["\n", "\r\n", "\r"])


def _quote(cell: str) -> str:
    if any(ch in cell for ch in ',"\r\n') or cell != cell.strip():
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    newline = draw(_NEWLINE)
    names = ["phone", "first", "note"][:draw(st.integers(1, 3))]
    rows = draw(st.lists(st.lists(_CELL, min_size=len(names), max_size=len(names)),
                         max_size=6))
    lines = [",".join(names)] + [",".join(_quote(c) for c in row) for row in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()


@st.composite
def cuts(draw: st.DrawFn, body: bytes) -> list[bytes]:
    points = sorted(draw(st.sets(st.integers(0, len(body)), max_size=8)))
    return [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]


def _fed(parser: CsvStream | NdjsonStream, pieces: list[bytes]) -> list[dict[str, Any]]:
    rows = [r for piece in pieces for r in parser.feed(piece)]
    return rows + parser.feed(b"", final=True)


@settings(max_examples=300, deadline=None)
@given(st.data(), csv_bodies())
# data=None: cut at byte 17, between the \r and \n of a line end inside quotes
@example(None, b'phone,note\r\n1,"a\r\nb"\r\n2,x\r\n')
def test_csv_rows_do_not_depend_on_how_the_body_is_cut(data: Any, body: bytes) -> None:
    pieces = [body[:17], body[17:]] if data is None else data.draw(cuts(body))
    assert _fed(CsvStream(), pieces) == CsvStream().feed(body, final=True)


@settings(max_examples=300, deadline=None)
@given(csv_bodies())
@example(b"phone,name\r1,a\r2,b\r")  # old Mac line ends
def test_a_streamed_csv_gives_the_rows_of_the_whole_body_path(body: bytes) -> None:
    whole = list(csv_rows(io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig",
                                           newline="")))
    assert CsvStream().feed(body, final=True) == whole
    assert list(body_rows(body, "text/csv")) == whole


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | _TEXT,
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_TEXT, inner, max_size=3), max_leaves=6)


@st.composite
def ndjson_bodies(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.one_of(
        st.dictionaries(st.sampled_from(["phone", "first", "fields"]), _JSON, max_size=3)
        .map(lambda d: json.dumps(d, ensure_ascii=draw(st.booleans()))),
        _JSON.map(json.dumps), st.just(""), st.just("{not json")), max_size=6))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return (newline.join(lines) + draw(st.sampled_from(["", newline]))).encode()


@settings(max_examples=300, deadline=None)
@given(st.data(), ndjson_bodies())
def test_ndjson_rows_do_not_depend_on_how_the_body_is_cut(data: Any, body: bytes) -> None:
    whole = NdjsonStream().feed(body, final=True)
    assert _fed(NdjsonStream(), data.draw(cuts(body))) == whole
    assert list(body_rows(body, "application/x-ndjson")) == whole


def test_a_csv_with_old_mac_line_ends_streams_row_by_row() -> None:
    p = CsvStream()
    assert p.feed(b"phone;first\r351911\r") == [{"phone": "351911"}]
    assert p.feed(b"351912;Ana\r") == [{"phone": "351912", "first": "Ana"}]
    assert p.feed(b"", final=True) == []


def test_records_before_a_chunk_cut_inside_quotes_are_returned_at_once() -> None:
    """Only the record cut inside its quoted field waits, not the whole chunk: a list of
    multi-line notes whose chunks always end inside one still streams."""
    p = CsvStream()
    assert p.feed(b'phone,note\n1,"a\nb"\n2,"li\nn') == [{"phone": "1", "note": "a\nb"}]
    assert p.feed(b'e"\n3,"x\n') == [{"phone": "2", "note": "li\nne"}]
    assert p.feed(b'y"', final=True) == [{"phone": "3", "note": "x\ny"}]


def test_a_field_over_the_csv_size_limit_is_one_bad_row_and_the_rest_are_read() -> None:
    body = b"phone,note\n1,a\n2," + b"x" * 200_000 + b"\n3,c\n4,d\n"
    rows = CsvStream().feed(body, final=True)
    assert [r.get("phone") for r in rows] == ["1", None, "3", "4"]
    assert rows[1]["__error__"].startswith("CSV: field larger than field limit")
    assert list(csv_rows(io.StringIO(body.decode(), newline=""))) == rows


def test_a_csv_without_line_ends_is_cut_past_max_record() -> None:
    from gateway.api._recipients import MAX_RECORD

    p = CsvStream()
    assert p.feed(b"phone\n") == []
    assert p.feed(b"9" * 1000) == []  # waits for its line end
    rows = p.feed(b"9" * MAX_RECORD)  # too long to wait for: judged now, memory bounded
    assert len(rows) == 1 and p.feed(b"", final=True) == []


def test_a_json_line_over_max_record_is_one_bad_row_however_it_is_cut() -> None:
    """Row numbers must not depend on chunking (``?offset`` resumes count on them): a line
    too long to hold is one bad row, whether it arrives whole or in pieces."""
    from gateway.api._recipients import MAX_RECORD

    long_line = b'{"phone": "351911", "note": "' + b"x" * (MAX_RECORD + 10) + b'"}'
    body = b'{"phone": "1"}\n' + long_line + b'\n{"phone": "2"}\n'
    whole = NdjsonStream().feed(body, final=True)
    assert [r.get("phone") for r in whole] == ["1", None, "2"]
    assert whole[1] == {"__error__": f"line 2 is longer than {MAX_RECORD} bytes"}
    for size in (65536, MAX_RECORD // 3, MAX_RECORD + 1):
        pieces = [body[i:i + size] for i in range(0, len(body), size)]
        assert _fed(NdjsonStream(), pieces) == whole, size


def test_a_csv_record_over_max_record_is_one_row_however_it_is_cut() -> None:
    from gateway.api._recipients import MAX_RECORD

    head = b"phone,note\n1,a\n2,"
    body = head + b"x" * (MAX_RECORD + 10) + b"\n3,c\n"
    whole = CsvStream().feed(body, final=True)
    assert [r.get("phone") for r in whole] == ["1", None, "3"]
    for size in (65536, len(head) + MAX_RECORD + 5, MAX_RECORD // 3 + 7):
        pieces = [body[i:i + size] for i in range(0, len(body), size)]
        fed = _fed(CsvStream(), pieces)
        assert [r.get("phone") for r in fed] == ["1", None, "3"], size
        assert fed[1]["__error__"].startswith("CSV: ")
