"""Bad submissions: each gets the right status and a problem document naming the field, and
nothing is written to the store (not even a part of a batch that was refused whole)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from tests.gateway.http.conftest import Served

OK: dict[str, Any] = {"to": "+351912345678", "from": "Septet", "text": "hello"}


def with_(**changes: Any) -> bytes:
    item = {**OK, **changes}
    return json.dumps({k: v for k, v in item.items() if v is not DROP}).encode()


DROP = object()
JSON = "application/json"

# (id, body bytes, content type, status, field named in the problem)
CASES: list[tuple[str, bytes, str, int, str]] = [
    # --- malformed bodies
    ("empty body", b"", JSON, 400, "body"),
    ("not json", b"hello", JSON, 400, "body"),
    ("truncated json", b'{"to": "+351912345678", "from"', JSON, 400, "body"),
    ("trailing garbage", with_() + b"}", JSON, 400, "body"),
    ("duplicate key", b'{"to":"+351912345678","to":"+351912345679","from":"S","text":"x"}',
     JSON, 400, "to"),
    ("duplicate nested key", b'{"messages":[{"to":"+351912345678","from":"S","from":"T","text":"x"}]}',
     JSON, 400, "from"),
    ("NaN", b'{"to":"+351912345678","from":"S","text":"x","send_at":NaN}', JSON, 400, "body"),
    ("Infinity", b'{"to":"+351912345678","from":"S","text":"x","max_parts":Infinity}', JSON, 400,
     "body"),
    ("-Infinity", b'{"to":"+351912345678","from":"S","text":"x","not_after":-Infinity}', JSON, 400,
     "body"),
    ("lone high surrogate", b'{"to":"+351912345678","from":"S","text":"a\\ud800b"}', JSON, 400,
     "text"),
    ("lone low surrogate", b'{"to":"+351912345678","from":"S","text":"\\udc00"}', JSON, 400, "text"),
    ("invalid utf-8", b'{"to":"+351912345678","from":"S","text":"\xff\xfe"}', JSON, 400, "body"),
    ("utf-8 encoded surrogate", b'{"to":"+351912345678","from":"S","text":"\xed\xa0\x80"}', JSON,
     400, "body"),
    ("byte order mark", b"\xef\xbb\xbf" + with_(), JSON, 400, "body"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON, 400, "body"),
    ("huge integer", b'{"to":"+351912345678","from":"S","text":"x","max_parts":' + b"9" * 5000 + b"}",
     JSON, 400, "body"),
    ("top-level array", b"[1,2]", JSON, 422, "body"),
    ("top-level string", b'"hi"', JSON, 422, "body"),
    # --- content types
    ("text/plain", with_(), "text/plain", 415, "header:Content-Type"),
    ("xml", b"<sms/>", "application/xml", 415, "header:Content-Type"),
    ("multipart", with_(), "multipart/form-data; boundary=x", 415, "header:Content-Type"),
    ("real form body", b"to=%2B351912345678&from=S&text=x", "application/x-www-form-urlencoded",
     415, "header:Content-Type"),
    ("latin-1 json", with_(), "application/json; charset=iso-8859-1", 415, "header:Content-Type"),
    ("msgpack garbage", b"\xc1\xc1", "application/msgpack", 400, "body"),
    ("msgpack ext type", msgpack.packb({"to": msgpack.ExtType(5, b"x")}), "application/msgpack",
     400, "body"),
    ("msgpack duplicate key", b"\x82\xa2to\xa1a\xa2to\xa1b", "application/msgpack", 400, "to"),
    # --- numbers
    ("number without prefix, no default", b"", JSON, 422, "to"),  # posted as beta below
    ("number with letters", with_(to="+35191234567a"), JSON, 422, "to"),
    ("vanity letters", with_(to="+1800FLOWERS"), JSON, 422, "to"),
    ("arabic-indic digits", with_(to="+\u0663\u0665\u0661\u0669\u0661\u0662\u0663\u0664\u0665"
                                     "\u0666\u0667\u0668"), JSON, 422, "to"),
    ("fullwidth digits", with_(to="+３５１９１２３４５６７８"), JSON, 422, "to"),
    ("too many digits", with_(to="+3519123456789012"), JSON, 422, "to"),
    ("invalid for country", with_(to="+351112"), JSON, 422, "to"),
    ("unknown calling code", with_(to="+999912345678"), JSON, 422, "to"),
    ("empty number", with_(to=""), JSON, 422, "to"),
    ("number as integer", with_(to=351912345678), JSON, 422, "to"),
    ("missing to", with_(to=DROP), JSON, 422, "to"),
    ("bad request prefix", with_(to="912345678", default_country_prefix="abc"), JSON, 422,
     "default_country_prefix"),
    # --- senders
    ("16-digit numeric sender", with_(**{"from": "1234567890123456"}), JSON, 422, "from"),
    ("12-char alphanumeric sender", with_(**{"from": "ABCDEFGHIJKL"}), JSON, 422, "from"),
    ("sender without letters", with_(**{"from": "12-34"}), JSON, 422, "from"),
    ("non-ascii sender", with_(**{"from": "Olá"}), JSON, 422, "from"),
    ("empty sender", with_(**{"from": ""}), JSON, 422, "from"),
    ("missing sender", with_(**{"from": DROP}), JSON, 422, "from"),
    # --- texts
    ("empty text", with_(text=""), JSON, 422, "text"),
    ("blank text", with_(text="   "), JSON, 422, "text"),
    ("missing text", with_(text=DROP), JSON, 422, "text"),
    ("over the parts limit", with_(text="x" * 766), JSON, 422, "text"),
    ("over a small max_parts", with_(text="x" * 200, max_parts=1), JSON, 422, "text"),
    ("unencodable in gsm7-strict", with_(text="日本", encoding="gsm7-strict"), JSON, 422, "text"),
    ("text as list", with_(text=["a"]), JSON, 422, "text"),
    ("template without value", with_(text="Hi {name}", fields={"other": "x"}), JSON, 422, "text"),
    # --- other fields
    ("unknown field", with_(colour="blue"), JSON, 422, "colour"),
    ("unknown encoding", with_(encoding="utf-8"), JSON, 422, "encoding"),
    ("max_parts negative", with_(max_parts=-1), JSON, 422, "max_parts"),
    ("max_parts huge", with_(max_parts=10**12), JSON, 422, "max_parts"),
    ("max_parts float", with_(max_parts=2.5), JSON, 422, "max_parts"),
    ("max_parts boolean", with_(max_parts=True), JSON, 422, "max_parts"),
    ("campaign too long", with_(campaign="c" * 65), JSON, 422, "campaign"),
    ("client_ref as object", with_(client_ref={"a": 1}), JSON, 422, "client_ref"),
    ("fields not an object", with_(fields=[1, 2]), JSON, 422, "fields"),
    ("field value an object", with_(fields={"a": {"b": 1}}), JSON, 422, "fields.a"),
    ("callback refused", with_(callback_url="http://forbidden.example/"), JSON, 422,
     "callback_url"),
    # --- times
    ("bad timestamp", with_(send_at="tomorrow"), JSON, 422, "send_at"),
    ("timestamp without offset", with_(send_at="2030-01-01T09:00:00"), JSON, 422, "send_at"),
    ("date only", with_(send_at="2030-01-01"), JSON, 422, "send_at"),
    ("impossible date", with_(send_at="2030-02-30T09:00:00Z"), JSON, 422, "send_at"),
    ("negative unix time", with_(send_at=-5), JSON, 422, "send_at"),
    ("huge unix time", with_(send_at=1e300), JSON, 422, "send_at"),
    ("send_at as boolean", with_(send_at=False), JSON, 422, "send_at"),
    ("send_at years ahead", with_(send_at="2099-01-01T00:00:00Z"), JSON, 422, "send_at"),
    ("not_after in the past", with_(not_after="2001-01-01T00:00:00Z"), JSON, 422, "not_after"),
    ("not_after before send_at", with_(send_at=4_000_000_000 - 1e8, not_after=4_000_000_000 - 2e8),
     JSON, 422, "not_after"),
    # --- batches
    ("messages not a list", b'{"messages": {"to": "x"}}', JSON, 422, "messages"),
    ("messages empty", b'{"messages": []}', JSON, 422, "messages"),
    ("messages too many", json.dumps({"messages": [OK] * 1001}).encode(), JSON, 422, "messages"),
    ("batch item not an object", b'{"messages": [1]}', JSON, 422, "messages[0]"),
    ("all items invalid", json.dumps({"messages": [{**OK, "to": "x"}, {**OK, "from": ""}]}).encode(),
     JSON, 422, "messages[1].from"),
    ("unknown batch default", json.dumps({"messages": [OK], "to": "+351912345678"}).encode(), JSON,
     422, "to"),
]


@pytest.mark.parametrize(("name", "body", "ctype", "status", "field"), CASES,
                         ids=[c[0] for c in CASES])
async def test_bad_submission_is_refused_with_a_problem(
        served: Served, name: str, body: bytes, ctype: str, status: int, field: str) -> None:
    account = "beta" if name == "number without prefix, no default" else "alpha"
    if account == "beta":
        body = with_(to="912345678")
    before = served.message_count()
    async with served.client(account) as c:
        r = await c.post("/v1/messages", content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc = r.json()
    assert doc["status"] == status
    assert doc["type"].startswith("urn:septet:problem:")
    assert doc["title"] and doc["detail"]
    assert field in [e["field"] for e in doc["errors"]], doc
    assert all(e["reason"] for e in doc["errors"])
    assert "Traceback" not in r.text
    assert served.message_count() == before  # nothing half-written
    assert served.gateway.accepted == []


async def test_there_are_at_least_forty_bad_inputs() -> None:
    assert len(CASES) >= 40


async def test_every_field_problem_of_an_item_is_reported_at_once(served: Served) -> None:
    body = {"to": "+35191234567x", "from": "ABCDEFGHIJKLM", "text": "", "colour": 1}
    async with served.client() as c:
        r = await c.post("/v1/messages", json=body)
    assert r.status_code == 422
    fields = sorted(e["field"] for e in r.json()["errors"])
    assert fields == ["colour", "from", "text", "to"]


async def test_a_batch_accepts_valid_items_and_reports_the_others(served: Served) -> None:
    items = [OK, {**OK, "to": "+35191"}, {**OK, "text": "second"}]
    async with served.client() as c:
        r = await c.post("/v1/messages", json={"messages": items})
    assert r.status_code == 202
    doc = r.json()
    assert (doc["accepted"], doc["rejected"]) == (2, 1)
    bad = doc["messages"][1]
    assert bad["status"] == 422 and bad["errors"][0]["field"] == "messages[1].to"
    assert [m.get("id") is not None for m in doc["messages"]] == [True, False, True]
    assert served.message_count() == 2


async def test_bad_query_parameters_are_named(served: Served) -> None:
    async with served.client() as c:
        r = await c.get("/v1/messages", params={"status": "LOST", "limit": "0", "since": "x",
                                                "colour": "red", "to": "+1abc"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"query:status", "query:limit", "query:since", "query:colour", "query:to"}


@pytest.mark.parametrize("key", ["x" * 256, "", "tab\there"])
async def test_bad_idempotency_key_is_named(served: Served, key: str) -> None:
    async with served.client() as c:
        r = await c.post("/v1/messages", json=OK, headers={"idempotency-key": key})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "header:Idempotency-Key"
    assert served.message_count() == 0
