"""adapters.http_inbound.parse_inbound: an HTTP provider's inbound (MO) webhook body, read with
the connector's configured paths, into ``InboundPart`` values; faults name their field."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.errors import InvalidInbound
from adapters.http_inbound import ENCODING, HttpInbound, parse_inbound
from adapters.http_provider import HttpProviderConfig
from adapters.smpp.inbound import InboundPart

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NOW = 1_700_000_000.0
PLAIN = HttpProviderConfig(name="acme", url="https://acme.example/send")
NESTED = replace(PLAIN, inbound_list_path="data.messages", inbound_from_path="msisdn",
                 inbound_to_path="recipient.number", inbound_text_path="content.body",
                 inbound_id_path="message-id", inbound_time_path="received")


def parse(config: HttpProviderConfig, doc: Any, content_type: str = JSON) -> list[HttpInbound]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_inbound(config, body, content_type, received_at=NOW)


def fault(config: HttpProviderConfig, doc: Any, content_type: str = JSON) -> InvalidInbound:
    with pytest.raises(InvalidInbound) as caught:
        parse(config, doc, content_type)
    return caught.value


def test_one_json_message_becomes_one_whole_part_with_our_clock() -> None:
    [got] = parse(PLAIN, {"from": "+351910000000", "to": "351912000000", "text": "Olá 😀"})
    assert got == HttpInbound(InboundPart("acme", "+351910000000", "351912000000", "Olá 😀",
                                          NOW, ENCODING, None), "")
    assert ENCODING == "utf-8"  # decoded text: the over-the-air coding is not known


def test_a_list_at_the_list_path_with_nested_paths_ids_and_times() -> None:
    doc = {"data": {"messages": [
        {"msisdn": 351910000001, "recipient": {"number": "4000"}, "content": {"body": "a"},
         "message-id": "p-1", "received": "2024-01-02T03:04:05Z"},
        {"msisdn": "351910000002", "recipient": {"number": 4000}, "content": {"body": ""},
         "message-id": 77, "received": 1_704_164_645_500},  # milliseconds
    ]}}
    first, second = parse(NESTED, doc)
    assert (first.part.source, first.part.destination, first.part.text) == (
        "351910000001", "4000", "a")
    assert first.provider_id == "p-1" and first.part.received_at == 1_704_164_645.0
    assert second.provider_id == "77" and second.part.received_at == 1_704_164_645.5
    assert second.part.text == "" and second.part.concat is None


def test_a_bare_list_and_an_empty_list() -> None:
    msgs = [{"from": "1234", "to": "4000", "text": str(i)} for i in range(3)]
    assert [m.part.text for m in parse(PLAIN, msgs)] == ["0", "1", "2"]
    assert parse(PLAIN, []) == []


def test_a_form_body_is_one_message() -> None:
    body = urlencode({"from": "+351910000000", "to": "4000", "text": "olá & bye",
                      "id": "x"}).encode()
    [got] = parse(replace(PLAIN, inbound_id_path="id"), body, FORM + "; charset=utf-8")
    assert (got.part.text, got.provider_id) == ("olá & bye", "x")


def test_an_absent_or_empty_provider_id_means_no_duplicate_detection() -> None:
    config = replace(PLAIN, inbound_id_path="id")
    base = {"from": "1234", "to": "4000", "text": "t"}
    assert [m.provider_id for m in parse(config, [base, {**base, "id": ""}])] == ["", ""]
    assert parse(PLAIN, {**base, "id": "ignored"})[0].provider_id == ""  # no id path set


@pytest.mark.parametrize(("doc", "field", "reason"), [
    ({"to": "4000", "text": "t"}, "from", "missing"),
    ({"from": "1", "text": "t"}, "to", "missing"),
    ({"from": "1", "to": "4000"}, "text", "missing"),
    ({"from": "1", "to": "4000", "text": None}, "text", "missing"),
    ({"from": "1", "to": "4000", "text": 5}, "text", "must be a string"),
    ({"from": True, "to": "4000", "text": "t"}, "from", "must be a string or an integer"),
    ({"from": "", "to": "4000", "text": "t"}, "from", "must be 1 to 32"),
    ({"from": "1" * 33, "to": "4000", "text": "t"}, "from", "must be 1 to 32"),
    ({"from": "1", "to": {"n": 1}, "text": "t"}, "to", "must be a string or an integer"),
    ([{"from": "1", "to": "4000", "text": "t"}, {"from": "1", "text": "t"}], "body[1].to",
     "missing"),
    ([{"from": "1", "to": "4000", "text": "t"}, "x"], "body[1]", "must be an object"),
    (7, "body", "must be an object"),
])
def test_a_missing_or_bad_field_is_named(doc: Any, field: str, reason: str) -> None:
    exc = fault(PLAIN, doc)
    assert exc.field == field and reason in exc.reason


def test_faults_in_nested_lists_ids_and_times_are_named() -> None:
    good = {"msisdn": "1", "recipient": {"number": "4000"}, "content": {"body": "t"},
            "received": 1.0e9}
    assert fault(NESTED, {"data": {}}).field == "data.messages"
    assert fault(NESTED, {"data": {"messages": [good, {**good, "content": {}}]}}).field == \
        "data.messages[1].content.body"
    assert fault(NESTED, {"data": {"messages": {**good, "received": "yesterday"}}}).field == \
        "data.messages.received"
    for bad_time in (-5, 5e15, "nan", float("inf"), True, [1]):
        exc = fault(NESTED, {"data": {"messages": [{**good, "received": bad_time}]}})
        assert exc.field == "data.messages[0].received"
    exc = fault(NESTED, {"data": {"messages": [{**good, "message-id": "x" * 257}]}})
    assert (exc.field, exc.reason) == ("data.messages[0].message-id", "longer than 256 bytes")
    assert fault(NESTED, {"data": {"messages": [{**good, "message-id": 1.5}]}}).field == \
        "data.messages[0].message-id"


def test_an_unreadable_body_or_type_is_refused() -> None:
    assert fault(PLAIN, b"{").field == "body"
    assert fault(PLAIN, b"\xff\xfe", JSON).field == "body"
    assert fault(PLAIN, b"a=%zz&&", FORM).field == "body"
    assert fault(PLAIN, b"", FORM).field == "from"  # an empty form: the first field missing
    assert fault(PLAIN, b"{}", "text/plain").field == "header:Content-Type"
    assert parse(PLAIN, {"from": "1", "to": "2", "text": "t"}, "application/vnd.x+json")


def test_an_iso_time_without_an_offset_is_utc() -> None:
    config = replace(PLAIN, inbound_time_path="at")
    [got] = parse(config, {"from": "1", "to": "2", "text": "t", "at": "2024-01-02T03:04:05"})
    assert got.part.received_at == 1_704_164_645.0
    [got] = parse(config, {"from": "1", "to": "2", "text": "t", "at": "1704164645"})
    assert got.part.received_at == 1_704_164_645.0


def test_a_fault_never_quotes_the_value() -> None:
    exc = fault(PLAIN, {"from": "+351919999999", "to": "4000", "text": 12345678})
    assert "351919999999" not in str(exc) and "12345678" not in str(exc)


# ------------------------------------------------------------------------------ properties

KEY = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
PATH = st.lists(KEY, min_size=1, max_size=3).map(".".join)
NUMBER = st.one_of(st.from_regex(r"\A\+?[0-9]{1,20}\Z"), st.integers(0, 10**20))
JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(KEY, inner, max_size=3), max_leaves=6)


def put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc.setdefault(key, {})
    doc[last] = value


def distinct_prefixes(paths: list[str]) -> bool:
    """No path is another's prefix (else one value would overwrite the other's parent)."""
    return len(set(paths)) == len(paths) and all(p == q or not (p + ".").startswith(q + ".") and not (q + ".").startswith(p + ".")
               for p in paths for q in paths)


@settings(max_examples=150, deadline=None)
@given(paths=st.lists(PATH, min_size=3, max_size=3).filter(distinct_prefixes),
       source=NUMBER, destination=NUMBER, text=st.text(max_size=50),
       extra=st.dictionaries(st.text(max_size=4).map(lambda k: "x-" + k), JSON_VALUE,
                             max_size=4), missing=st.sampled_from([None, 0, 1, 2]))
@example(paths=["from", "to", "text"], source="+1", destination=4000, text="", extra={},
         missing=None)
def test_any_object_with_the_configured_fields_parses_and_a_missing_one_is_named(
        paths: list[str], source: str | int, destination: str | int, text: str,
        extra: dict[str, Any], missing: int | None) -> None:
    config = replace(PLAIN, inbound_from_path=paths[0], inbound_to_path=paths[1],
                     inbound_text_path=paths[2])
    doc: dict[str, Any] = dict(extra)  # unrelated fields ("x-" keys never clash with paths)
    for index, (path, value) in enumerate(zip(paths, (source, destination, text), strict=True)):
        if index != missing:
            put(doc, path, value)
    if missing is not None:
        assert fault(config, doc).field == paths[missing]
        return
    [got] = parse(config, doc)
    assert got.part == InboundPart("acme", str(source), str(destination), text, NOW, ENCODING,
                                   None)
    [as_list] = parse(config, [doc])  # the same record in a list reads the same
    assert as_list == got


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=64), kind=st.sampled_from([JSON, FORM, "text/plain", ""]))
def test_any_body_parses_or_raises_invalid_inbound(body: bytes, kind: str) -> None:
    try:
        got = parse_inbound(PLAIN, body, kind, received_at=NOW)
    except InvalidInbound as exc:
        assert exc.field and exc.reason
    else:
        assert all(isinstance(m, HttpInbound) for m in got)
