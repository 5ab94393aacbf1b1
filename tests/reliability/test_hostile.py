"""Hostile input: a table of cases, each with its expected answer, against the whole gateway
(``gateway.cli.serve`` on 127.0.0.1, real LMDB, real SMPP client) and 0 server errors.

Kinds of case:
  * ``Raw``: bytes written on a raw socket (HTTP framing: request lines, Content-Length,
    Transfer-Encoding, header sizes, slowloris); the expected status, or ``CLOSE`` when the
    server must hang up without an answer;
  * ``Api``: an HTTP request as a client library sends it (JSON, auth and tenancy, numbers,
    senders, texts and encodings, types and times, idempotency, callback URLs / SSRF,
    receipts at POST /v1/receipts/{connector});
  * ``Smpp``: raw frames from a misbehaving SMSC (tests/reliability/_smsc.py) to the
    gateway's SMPP client: deliver_sm receipts and broken PDUs, with the answer expected.

tests/gateway/http/test_bad_inputs.py already checks ~80 bad submission bodies field by
field against the HTTP layer alone; the JSON/number/sender cases here are different ones and
run through the whole gateway. The table runs in one test (one gateway), collecting every
mismatch, so that a failure lists them all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from adapters.smpp import pdu as p
from adapters.smpp import status as st
from gateway import config as cfg
from tests.reliability._smsc import (
    Outcome,
    ScriptedSmsc,
    cstr,
    deliver_sm,
    frame,
    receipt_text,
    tlv,
)
from tests.reliability.stack import OK, RECEIPT_TOKEN, Stack, start_stack

CLOSE = "close"
REQUEST_TIMEOUT = 1.0


@dataclass(frozen=True)
class Raw:
    name: str
    data: bytes
    expect: int | str
    trickle: float = 0.0  # seconds between bytes (slowloris)


@dataclass(frozen=True)
class Api:
    name: str
    method: str
    path: str
    expect: int
    body: Any = None  # dict/list: JSON; bytes: as is
    headers: tuple[tuple[str, str], ...] = ()
    account: str | None = "alpha"  # None: no Authorization header
    field: str = ""  # a problem document must name this field


@dataclass(frozen=True)
class Smpp:
    name: str
    frames: bytes
    expect: Callable[[Outcome], bool]
    answer: str  # the expected answer, in words


def _req(method: str, path: str, headers: str = "", body: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


def _post(body: bytes, extra: str = "") -> bytes:
    return _req("POST", "/v1/messages", f"Content-Type: application/json\r\n{extra}", body)


BODY = json.dumps(OK).encode()

RAW: list[Raw] = [
    Raw("garbage request line", b"HELLO\r\n\r\n", 400),
    Raw("binary noise", bytes(range(256)) * 4, 400),
    Raw("TLS hello on plain port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        400),
    Raw("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    Raw("HTTP/0.9 request", b"GET /healthz\r\n\r\n", 200),  # read as 1.x: harmless
    Raw("unknown version", b"GET /healthz HTTP/3.7\r\nHost: x\r\n\r\n", 400),
    Raw("lowercase method", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    Raw("unknown method", _req("BREW", "/healthz"), 400),
    Raw("absolute-form target", _req("GET", "http://evil.example/healthz"), 404),
    Raw("asterisk target", _req("OPTIONS", "*"), 404),
    Raw("path traversal", _req("GET", "/../../etc/passwd"), 404),
    Raw("NUL in path", b"GET /heal\x00thz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    Raw("space in header name", b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    Raw("header without colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n", 400),
    Raw("obsolete line folding", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    Raw("bare LF line endings", b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
    Raw("duplicate Content-Length, differing", _post(BODY, "Content-Length: 5\r\nContent-Length: "
                                                         f"{len(BODY)}\r\n"), 400),
    Raw("Content-Length and Transfer-Encoding", _post(
        f"{len(BODY):x}\r\n".encode() + BODY + b"\r\n0\r\n\r\n",
        f"Content-Length: {len(BODY)}\r\nTransfer-Encoding: chunked\r\n"), 400),
    Raw("negative Content-Length", _post(BODY, "Content-Length: -1\r\n"), 400),
    Raw("Content-Length not a number", _post(BODY, "Content-Length: 1e3\r\n"), 400),
    Raw("Content-Length beyond the limit", _post(b"", "Content-Length: 99999999999\r\n"), 413),
    Raw("unknown Transfer-Encoding", _post(BODY, "Transfer-Encoding: gzip\r\n"), 400),
    Raw("bad chunk size", _post(b"zz\r\nabc\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n"), 400),
    Raw("chunks beyond the body limit", _post(
        b"".join(b"100000\r\n" + b"x" * 0x100000 + b"\r\n" for _ in range(2)) + b"0\r\n\r\n",
        "Transfer-Encoding: chunked\r\n"), 413),
    Raw("huge header value", _req("GET", "/healthz", "X-Big: " + "a" * 40_000 + "\r\n"), 431),
    Raw("too many headers", _req("GET", "/healthz", "".join(f"X-{i}: v\r\n" for i in range(200))),
        431),
    Raw("huge request line", _req("GET", "/healthz?" + "a" * 40_000), 431),
    Raw("Expect: 100-continue with a too large body",
        _post(b"", "Content-Length: 5000000\r\nExpect: 100-continue\r\n"), 413),
    Raw("upgrade to websocket", _req("GET", "/healthz", "Connection: Upgrade\r\n"
                                                        "Upgrade: websocket\r\n"), 200),
    Raw("slowloris headers", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40, 408,
        trickle=0.05),
    Raw("body shorter than Content-Length", _post(b"{", "Content-Length: 500\r\n"), 408),
    # the good request is answered first (200), then 400 for the garbage, then close; the first
    # answer is what is checked (tests/gateway/http/test_pipelined_refusals.py checks both)
    Raw("pipelined good then garbage", _req("GET", "/healthz") + b"JUNK\r\n\r\n", 200),
    Raw("empty bearer", _req("GET", "/v1/account", "Authorization: Bearer \r\n"), 401),
    Raw("two Authorization headers", _req("GET", "/v1/account", "Authorization: Bearer a\r\n"
                                                               "Authorization: Bearer b\r\n"),
        401),
]

REFUSED = {"to": "+351912345678", "from": "Septet", "text": "x"}


def _ssrf(url: str) -> dict[str, Any]:
    return {**OK, "callback_url": url}


API: list[Api] = [
    # --- JSON
    Api("JSON null", "POST", "/v1/messages", 422, b"null", field="body"),
    Api("JSON number", "POST", "/v1/messages", 422, b"12", field="body"),
    Api("nested messages", "POST", "/v1/messages", 422,
        {"messages": [{"messages": [OK]}]}, field="messages[0].messages"),
    Api("1,000 keys object", "POST", "/v1/messages", 422,
        {**OK, **{f"k{i}": i for i in range(1000)}}),
    Api("unicode escapes in keys", "POST", "/v1/messages", 202,
        b'{"\\u0074o":"+351912345678","from":"Septet","text":"hi"}'),
    Api("text with every control character", "POST", "/v1/messages", 202,
        {**OK, "text": "".join(chr(i) for i in range(1, 32))}),
    Api("body of 2 MiB", "POST", "/v1/messages", 413, b"{" + b" " * (2 << 20) + b"}"),
    Api("empty JSON object", "POST", "/v1/messages", 422, {}),
    Api("string with NUL", "POST", "/v1/messages", 202, {**OK, "text": "a\u0000b"}),
    Api("msgpack body", "POST", "/v1/messages", 202,
        b"\x83\xa2to\xad+351912345678\xa4from\xa6Septet\xa4text\xa2hi",
        headers=(("content-type", "application/msgpack"),)),
    # --- auth and tenancy
    Api("no Authorization", "POST", "/v1/messages", 401, OK, account=None),
    Api("Basic instead of Bearer", "GET", "/v1/account", 401,
        headers=(("authorization", "Basic YWxwaGE6eA=="),), account=None),
    Api("bearer without a key", "GET", "/v1/account", 401, headers=(("authorization", "Bearer"),),
        account=None),
    Api("random key", "GET", "/v1/account", 401,
        headers=(("authorization", "Bearer sk_" + "A" * 43),), account=None),
    Api("key with trailing junk", "GET", "/v1/account", 401, account=None,
        headers=(("authorization", "Bearer {alpha}x"),)),
    Api("key of 10 kB", "GET", "/v1/account", 401, account=None,
        headers=(("authorization", "Bearer " + "k" * 10_000),)),
    Api("key with SQL", "GET", "/v1/account", 401, account=None,
        headers=(("authorization", "Bearer ' OR 1=1 --"),)),
    Api("other account's message id", "GET", "/v1/messages/{beta_id}", 404),
    Api("unknown message id", "GET", "/v1/messages/01M87AAAAAAAAAAAAA", 404),
    Api("message id with traversal", "GET", "/v1/messages/..%2f..%2faccounts", 404),
    Api("message id of 5,000 chars", "GET", "/v1/messages/" + "A" * 5000, 404),
    Api("account in a query parameter", "GET", "/v1/messages?account=beta", 422,
        field="query:account"),
    Api("metrics needs no key but says nothing of tenants", "GET", "/metrics", 200, account=None),
    # --- numbers
    Api("number with spaces and dashes", "POST", "/v1/messages", 202,
        {**OK, "to": "+351 91-234 5678"}),
    Api("national number with the account prefix", "POST", "/v1/messages", 202,
        {**OK, "to": "912345678"}),
    Api("00 international prefix", "POST", "/v1/messages", 202, {**OK, "to": "00351912345678"}),
    Api("number with a newline", "POST", "/v1/messages", 422, {**OK, "to": "+351912345678\n1"},
        field="to"),
    Api("number of 1,000 digits", "POST", "/v1/messages", 422, {**OK, "to": "+" + "9" * 1000},
        field="to"),
    Api("number with a plus in the middle", "POST", "/v1/messages", 422,
        {**OK, "to": "+3519+12345678"}, field="to"),
    Api("number as a list", "POST", "/v1/messages", 422, {**OK, "to": ["+351912345678"]},
        field="to"),
    Api("premium-rate number", "POST", "/v1/messages", 202, {**OK, "to": "+351760200200"}),
    # --- senders
    Api("sender with a newline", "POST", "/v1/messages", 422, {**OK, "from": "Sep\ntet"},
        field="from"),
    Api("sender with emoji", "POST", "/v1/messages", 422, {**OK, "from": "Sep😀"}, field="from"),
    Api("sender of 11 characters", "POST", "/v1/messages", 202, {**OK, "from": "ABCDEFGHIJK"}),
    Api("numeric sender of 15 digits", "POST", "/v1/messages", 202,
        {**OK, "from": "351912345678901"}),
    Api("sender as a number", "POST", "/v1/messages", 422, {**OK, "from": 12345}, field="from"),
    Api("sender with a leading space", "POST", "/v1/messages", 422, {**OK, "from": " Septet"},
        field="from"),
    # --- texts and encodings
    Api("text of 5 GSM parts", "POST", "/v1/messages", 202, {**OK, "text": "x" * 765}),
    Api("UCS-2 text with astral emoji", "POST", "/v1/messages", 202,
        {**OK, "text": "hi 😀 𝄞", "encoding": "ucs2"}),
    Api("right-to-left override", "POST", "/v1/messages", 202,
        {**OK, "text": "abc\u202edcba", "encoding": "ucs2"}),
    Api("zalgo text", "POST", "/v1/messages", 202,
        {**OK, "text": "Z" + "\u0336" * 60, "encoding": "ucs2"}),
    Api("40,000 characters", "POST", "/v1/messages", 422, {**OK, "text": "x" * 40_000},
        field="text"),
    Api("GSM escape characters only", "POST", "/v1/messages", 202, {**OK, "text": "{}[]~^|€\\"}),
    Api("national policy", "POST", "/v1/messages", 202,
        {**OK, "text": "Ğüşçö", "encoding": "national"}),
    Api("template with braces", "POST", "/v1/messages", 202,
        {**OK, "text": "Hi {{name}} {n}", "fields": {"n": 3}}),
    Api("template format spec stays literal", "POST", "/v1/messages", 202,
        {**OK, "text": "{n.__class__}", "fields": {"n": 1}}),
    Api("preview of a hostile text", "POST", "/v1/preview", 200, {"text": "\u0000\uffff😀"}),
    # --- types and times
    Api("send_at as a string number", "POST", "/v1/messages", 422, {**OK, "send_at": "1e10"},
        field="send_at"),
    Api("send_at with leap second", "POST", "/v1/messages", 422,
        {**OK, "send_at": "2030-06-30T23:59:60Z"}, field="send_at"),
    Api("send_at far in the past", "POST", "/v1/messages", 202, {**OK, "send_at": 0.001}),
    Api("not_after NaN as string", "POST", "/v1/messages", 422, {**OK, "not_after": "NaN"},
        field="not_after"),
    Api("max_parts as string", "POST", "/v1/messages", 422, {**OK, "max_parts": "3"},
        field="max_parts"),
    Api("max_parts zero", "POST", "/v1/messages", 422, {**OK, "max_parts": 0}, field="max_parts"),
    Api("client_ref with control characters", "POST", "/v1/messages", 422,
        {**OK, "client_ref": "a\u0007b"}, field="client_ref"),
    Api("campaign as null", "POST", "/v1/messages", 202, {**OK, "campaign": None}),
    Api("search since after until", "GET", "/v1/messages?since=2030-01-01T00:00:00Z&"
        "until=2020-01-01T00:00:00Z", 422, field="query:until"),
    Api("search with a forged cursor", "GET", "/v1/messages?cursor=%00%FF", 422, field="query"),
    Api("search with a cursor past every id", "GET", "/v1/messages?cursor=zzz", 200),
    Api("search limit huge", "GET", "/v1/messages?limit=99999999999999999999", 422,
        field="query:limit"),
    Api("search repeated parameter", "GET", "/v1/messages?limit=1&limit=2", 422,
        field="query:limit"),
    # --- idempotency
    Api("idempotency key with a newline escape", "POST", "/v1/messages", 422, OK,
        headers=(("idempotency-key", "a\tb"),), field="header:Idempotency-Key"),
    Api("idempotency key first use", "POST", "/v1/messages", 202, OK,
        headers=(("idempotency-key", "hostile-1"),)),
    Api("idempotency key replay", "POST", "/v1/messages", 202, OK,
        headers=(("idempotency-key", "hostile-1"),)),
    Api("idempotency key, other body", "POST", "/v1/messages", 422, {**OK, "text": "other"},
        headers=(("idempotency-key", "hostile-1"),)),
    Api("idempotency key of another account", "POST", "/v1/messages", 202,
        {**OK, "to": "+351912345679"}, headers=(("idempotency-key", "hostile-1"),),
        account="beta"),
    Api("empty idempotency key (refused: docs/api.md says 1-255)", "POST", "/v1/messages", 422, OK,
        headers=(("idempotency-key", ""),), field="header:Idempotency-Key"),
    # --- callback URLs (SSRF)
    Api("callback to loopback", "POST", "/v1/messages", 422, _ssrf("http://127.0.0.1:8080/"),
        field="callback_url"),
    Api("callback to localhost name", "POST", "/v1/messages", 422, _ssrf("http://localhost/"),
        field="callback_url"),
    Api("callback to metadata", "POST", "/v1/messages", 422,
        _ssrf("http://169.254.169.254/latest/meta-data/"), field="callback_url"),
    Api("callback to private range", "POST", "/v1/messages", 422, _ssrf("http://10.0.0.1/"),
        field="callback_url"),
    Api("callback to IPv6 loopback", "POST", "/v1/messages", 422, _ssrf("http://[::1]/"),
        field="callback_url"),
    Api("callback to IPv4-mapped IPv6", "POST", "/v1/messages", 422,
        _ssrf("http://[::ffff:127.0.0.1]/"), field="callback_url"),
    Api("callback as decimal IP", "POST", "/v1/messages", 422, _ssrf("http://2130706433/"),
        field="callback_url"),
    Api("callback as octal IP", "POST", "/v1/messages", 422, _ssrf("http://0177.0.0.1/"),
        field="callback_url"),
    Api("callback with credentials", "POST", "/v1/messages", 422,
        _ssrf("http://user:pw@127.0.0.1/"), field="callback_url"),
    Api("callback file scheme", "POST", "/v1/messages", 422, _ssrf("file:///etc/passwd"),
        field="callback_url"),
    Api("callback gopher scheme", "POST", "/v1/messages", 422, _ssrf("gopher://x/"),
        field="callback_url"),
    Api("callback 0.0.0.0", "POST", "/v1/messages", 422, _ssrf("http://0.0.0.0/"),
        field="callback_url"),
    Api("callback CGNAT", "POST", "/v1/messages", 422, _ssrf("http://100.64.0.1/"),
        field="callback_url"),
    # --- receipts over HTTP
    Api("receipt without token", "POST", "/v1/receipts/acme", 401, {"id": "1", "status": "DELIVRD"},
        account=None),
    Api("receipt with an API key as token", "POST", "/v1/receipts/acme", 401,
        {"id": "1", "status": "DELIVRD"}),
    Api("receipt for an unknown connector", "POST", "/v1/receipts/nope", 404, {"id": "1"},
        account=None, headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),)),
    Api("receipt for the SMPP connector", "POST", "/v1/receipts/smsc", 404, {"id": "1"},
        account=None, headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),)),
    Api("receipt not JSON", "POST", "/v1/receipts/acme", 400, b"\xff\x00",
        account=None, headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),
                               ("content-type", "application/json"))),
    Api("receipt for an unknown id", "POST", "/v1/receipts/acme", 200,
        {"id": "no-such-id", "status": "DELIVRD"}, account=None,
        headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),)),
    Api("receipt with an id of 10 kB", "POST", "/v1/receipts/acme", 200,
        {"id": "9" * 10_000, "status": "DELIVRD"}, account=None,
        headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),)),
    Api("receipt with an odd status", "POST", "/v1/receipts/acme", 200,
        {"id": "7", "status": "☃"}, account=None,
        headers=(("authorization", f"Bearer {RECEIPT_TOKEN}"),)),
    Api("receipt GET", "GET", "/v1/receipts/acme", 405, account=None),
]


def _answered(kind: type, status: int | None = None) -> Callable[[Outcome], bool]:
    def check(o: Outcome) -> bool:
        got = [x for x in o.pdus if isinstance(x, kind)]
        return len(got) == 1 and (status is None or got[0].status == status)
    return check


def _closed(o: Outcome) -> bool:
    return o.closed


def _silent(o: Outcome) -> bool:
    return not o.pdus and not o.closed


SMPP: list[Smpp] = [
    Smpp("receipt for an unknown id", deliver_sm(receipt_text("424242")),
         _answered(p.DeliverSmResp, 0), "deliver_sm_resp OK (parked as an orphan)"),
    Smpp("receipt text garbage", deliver_sm(b"\xff\xfe garbage"), _answered(p.DeliverSmResp),
         "deliver_sm_resp"),
    Smpp("receipt with an id of 200 chars", deliver_sm(receipt_text("9" * 200)[:254]),
         _answered(p.DeliverSmResp), "deliver_sm_resp"),
    Smpp("receipt with an unknown stat", deliver_sm(receipt_text("77", stat="BOGUS")),
         _answered(p.DeliverSmResp), "deliver_sm_resp"),
    Smpp("receipt TLVs with a bad message_state", deliver_sm(
        b"", tlvs=tlv(p.TAG_RECEIPTED_MESSAGE_ID, cstr("55")) + tlv(p.TAG_MESSAGE_STATE, b"\x63")),
        _answered(p.DeliverSmResp), "deliver_sm_resp"),
    Smpp("receipt TLV id unterminated", deliver_sm(
        b"", tlvs=tlv(p.TAG_RECEIPTED_MESSAGE_ID, b"55")), _answered(p.DeliverSmResp),
        "deliver_sm_resp (or nack): never a crash"),
    Smpp("mobile-originated message", deliver_sm(b"hello", esm_class=0),
         _answered(p.DeliverSmResp, 0), "deliver_sm_resp OK"),
    Smpp("UCS-2 MO with an odd length", deliver_sm(b"\x00h\x00", esm_class=0, data_coding=8),
         _answered(p.DeliverSmResp), "deliver_sm_resp"),
    Smpp("same receipt twice", deliver_sm(receipt_text("31337"), sequence=8)
         + deliver_sm(receipt_text("31337"), sequence=9),
         lambda o: [x.status for x in o.pdus if isinstance(x, p.DeliverSmResp)] == [0, 0],
         "two deliver_sm_resp OK"),
    Smpp("sm_length beyond the body", deliver_sm(b"abc", sm_length=200),
         lambda o: _answered(p.GenericNack)(o) or _answered(p.DeliverSmResp)(o),
         "generic_nack or a refusing deliver_sm_resp"),
    Smpp("unterminated C-string", frame(p.DELIVER_SM, b"\x00\x01\x01" + b"A" * 30),
         lambda o: _answered(p.GenericNack)(o) or _answered(p.DeliverSmResp)(o),
         "generic_nack or a refusing deliver_sm_resp"),
    Smpp("TLV length overrunning the PDU", deliver_sm(b"x", tlvs=tlv(0x1E, b"1\x00", length=900)),
         lambda o: _answered(p.GenericNack)(o) or _answered(p.DeliverSmResp)(o),
         "generic_nack or a refusing deliver_sm_resp"),
    Smpp("unknown command id", frame(0x00000099), _answered(p.GenericNack, st.ESME_RINVCMDID),
         "generic_nack ESME_RINVCMDID"),
    Smpp("bind request sent to the ESME", frame(p.BIND_TRANSMITTER, cstr("a") + cstr("b")
                                               + cstr("") + bytes((0x34, 0, 0)) + cstr("")),
         _answered(p.GenericNack), "generic_nack"),
    Smpp("outbind on a bound session", frame(p.OUTBIND, cstr("x") + cstr("y")), _silent,
         "no answer (outbind has no response PDU, §4.1.7), the session stays up"),
    Smpp("submit_sm_resp for a sequence never sent", frame(p.SUBMIT_SM_RESP, cstr("1"),
                                                          sequence=999_999), _silent,
         "ignored"),
    Smpp("generic_nack out of the blue", frame(p.GENERIC_NACK, sequence=123_456), _silent,
         "ignored"),
    Smpp("enquire_link", frame(p.ENQUIRE_LINK), _answered(p.EnquireLinkResp, 0),
         "enquire_link_resp"),
    Smpp("deliver_sm with a status set", frame(p.DELIVER_SM, b"", status=0x45),
         lambda o: _answered(p.GenericNack)(o) or _answered(p.DeliverSmResp)(o),
         "generic_nack or deliver_sm_resp"),
    Smpp("command_length below the header", frame(p.ENQUIRE_LINK, length=8), _closed,
         "connection closed (framing is lost), then a new bind"),
    Smpp("command_length of 1 GB", frame(p.DELIVER_SM, length=1 << 30), _closed,
         "connection closed, then a new bind"),
    Smpp("unbind from the SMSC", frame(p.UNBIND),
         lambda o: _answered(p.UnbindResp)(o) and o.closed, "unbind_resp, then close"),
]


async def _raw(stack: Stack, case: Raw) -> int | str:
    host, port = "127.0.0.1", int(stack.url.rsplit(":", 1)[1])
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        try:
            if case.trickle:
                with trio.move_on_after(REQUEST_TIMEOUT + 2):
                    for i in range(len(case.data)):
                        await stream.send_all(case.data[i:i + 1])
                        await trio.sleep(case.trickle)
            else:
                await stream.send_all(case.data)
        except trio.BrokenResourceError:
            pass  # the server hung up while we were still sending
        got = b""
        with trio.move_on_after(REQUEST_TIMEOUT + 3):
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    break
                if not data:
                    break
                got += data
                if b"\r\n\r\n" in got and not case.name.startswith("pipelined"):
                    break
        if not got:
            return CLOSE
        line = got.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else f"garbled: {got[:40]!r}"


async def _api(stack: Stack, case: Api, ids: dict[str, str]) -> tuple[int, str]:
    headers = {k: v.format(alpha=stack.keys["alpha"]) for k, v in case.headers}
    if case.account is not None:
        headers.setdefault("authorization", f"Bearer {stack.keys[case.account]}")
    content = case.body if isinstance(case.body, bytes) else None
    if case.body is not None and content is None:
        content = json.dumps(case.body).encode()
        headers.setdefault("content-type", "application/json")
    elif content is not None:
        headers.setdefault("content-type", "application/json")
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as c:
        r = await c.request(case.method, case.path.format(**ids), content=content,
                            headers=headers)
    return r.status_code, r.text


async def test_hostile_inputs_get_their_expected_answers_and_no_server_error(
        tmp_path: Path) -> None:
    assert len(RAW) + len(API) + len(SMPP) >= 100
    smsc = ScriptedSmsc()
    mismatches: list[str] = []
    server_errors: list[str] = []
    http = cfg.HttpConfig(port=0, request_timeout=REQUEST_TIMEOUT, idle_timeout=5.0)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(smsc.serve)
        stack = await start_stack(nursery, tmp_path, smsc_port=port, http=http,
                                  http_provider=True, allow_loopback=False)
        async with stack.client("beta") as c:
            r = await c.post("/v1/messages", json={**OK, "to": "+351912345670"})
            ids = {"beta_id": r.json()["id"]}

        async def raw_case(case: Raw) -> None:
            got = await _raw(stack, case)
            if got != case.expect:
                mismatches.append(f"raw {case.name!r}: expected {case.expect}, got {got}")
            if isinstance(got, int) and got >= 500:
                server_errors.append(f"raw {case.name!r}: {got}")

        async with trio.open_nursery() as cases:  # framing cases in parallel (timeouts)
            for case in RAW:
                cases.start_soon(raw_case, case)

        for case in API:
            status, text = await _api(stack, case, ids)
            if status != case.expect:
                mismatches.append(f"api {case.name!r}: expected {case.expect}, got {status} "
                                  f"{text[:160]}")
            elif case.field and case.field not in [e.get("field") for e in
                                                   json.loads(text).get("errors", [])]:
                mismatches.append(f"api {case.name!r}: problem does not name {case.field}: "
                                  f"{text[:160]}")
            if status >= 500:
                server_errors.append(f"api {case.name!r}: {status}")
            assert "Traceback" not in text

        for case in SMPP:
            deadline = time.monotonic() + 5
            while smsc.connections == 0 or not await _bound(stack):
                assert time.monotonic() < deadline, "the SMPP client did not bind again"
                await trio.sleep(0.05)
            outcome = await smsc.play(case.frames)
            if not case.expect(outcome):
                mismatches.append(f"smpp {case.name!r}: expected {case.answer}, got "
                                  f"{outcome.kinds()} closed={outcome.closed}")

        async with httpx.AsyncClient(base_url=stack.url) as c:
            assert (await c.get("/healthz")).status_code == 200
            metrics = (await c.get("/metrics")).text
        nursery.cancel_scope.cancel()
    errors_5xx = [line for line in metrics.splitlines()
                  if line.startswith("septet_http_requests_total") and 'status="5' in line
                  and 'status="503"' not in line and not line.endswith(" 0.0")]
    assert not server_errors and not errors_5xx, (server_errors, errors_5xx)
    assert not mismatches, "\n".join(mismatches)


async def _bound(stack: Stack) -> bool:
    async with httpx.AsyncClient(base_url=stack.url) as c:
        return (await c.get("/readyz")).status_code == 200
