"""The generic HTTP provider connector: pure request/response/receipt mapping, then a real
socket against a small fake provider served on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial

import httpx
import pytest
import trio

from actors.messages import CarrierReceipt, MsgId, SubmitPart
from actors.ports import Carrier, SubmitResult
from adapters.errors import InvalidReceipt
from adapters.http_provider import (
    HttpCarrier,
    HttpProviderConfig,
    build_request,
    classify_response,
    json_path,
    parse_receipts,
)
from codec import Policy, split

CONFIG = HttpProviderConfig(
    name="acme",
    url="http://provider.test/sms",
    headers=(("Authorization", "Bearer t0k3n"),),
    fields=(("to", "to_digits"), ("from", "sender"), ("text", "text"), ("ref", "msg_id")),
    static_fields=(("channel", "sms"),),
    id_path="messages.0.id",
)


def part(text: str = "Hello €uro", i: int = 0) -> SubmitPart:
    [q] = split(text, Policy(), 0)
    return SubmitPart(MsgId(f"m{i}"), 1, 1, "+4915112345678", "Septet", q.data_coding, q.udh,
                      q.body, 0)


def test_request_fields_follow_the_mapping_and_text_is_decoded() -> None:
    assert build_request(CONFIG, part()) == {
        "channel": "sms", "to": "4915112345678", "from": "Septet", "text": "Hello €uro",
        "ref": "m0"}


def test_json_path_walks_objects_and_lists() -> None:
    doc = {"messages": [{"id": "abc"}], "n": 0}
    assert json_path(doc, "messages.0.id") == "abc"
    assert json_path(doc, "messages.1.id") is None and json_path(doc, "x.y") is None
    assert json_path(doc, "") == doc


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b'{"messages":[{"id":"0A1b"}]}', SubmitResult(carrier_id="0A1b")),
        (201, b'{"messages":[{"id":42}]}', SubmitResult(carrier_id="42")),
        (429, b"", SubmitResult(error="HTTP 429", code="http_429", transient=True)),
        (503, b"", SubmitResult(error="HTTP 503", code="http_503", transient=True)),
        (400, b"{}", SubmitResult(error="HTTP 400", code="http_400", transient=False)),
        (200, b"not json", SubmitResult(error="no carrier id in the answer",
                                        code="no_carrier_id", in_doubt=True)),
    ],
)
def test_answers_are_classified(status: int, body: bytes, expected: SubmitResult) -> None:
    assert classify_response(CONFIG, status, body) == expected


def test_error_path_refuses_a_2xx() -> None:
    config = HttpProviderConfig(name="x", url="u", error_path="error.code")
    result = classify_response(config, 200, b'{"error":{"code":"INVALID_NUMBER"}}')
    assert (result.code, result.transient) == ("INVALID_NUMBER", False)


def test_json_receipts_map_states_and_keep_ids_verbatim() -> None:
    body = json.dumps([
        {"id": "00FF", "status": "delivered", "error_code": 0, "done": "2024-11-24T22:11:00Z"},
        {"id": 7, "status": "FAILED", "error_code": "34"},
        {"id": "x", "status": "REJECTD"},
    ]).encode()
    config = HttpProviderConfig(name="acme", url="u", receipt_done_path="done")
    got = parse_receipts(config, body, "application/json; charset=utf-8", received_at=9.0)
    assert got == [
        CarrierReceipt("acme", "00FF", "DELIVRD", "", 9.0, 1732486260.0),
        CarrierReceipt("acme", "7", "UNDELIV", "34", 9.0, 0.0),
        CarrierReceipt("acme", "x", "REJECTD", "", 9.0, 0.0),
    ]


def test_form_receipt_and_nested_list() -> None:
    form = parse_receipts(CONFIG, b"id=abc&status=expired", "application/x-www-form-urlencoded",
                          received_at=1.0)
    assert [(r.carrier_id, r.state) for r in form] == [("abc", "EXPIRED")]
    config = HttpProviderConfig(name="n", url="u", receipt_list_path="data.items")
    nested = parse_receipts(config, b'{"data":{"items":[{"id":"1","status":"sent"}]}}',
                            "application/json", received_at=1.0)
    assert [(r.carrier_id, r.state) for r in nested] == [("1", "ENROUTE")]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"{", "application/json"), (b'{"status":"delivered"}', "application/json"),
     (b"[1]", "application/json"), (b"id=1", "text/plain"), (b"\xff=1", "application/x-www-form-urlencoded")],
)
def test_bad_receipts_raise_invalid_receipt(body: bytes, content_type: str) -> None:
    with pytest.raises(InvalidReceipt):
        parse_receipts(CONFIG, body, content_type)


async def test_mock_transport_errors_become_results() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ref = json.loads(request.content)["ref"]
        if ref == "m1":
            raise httpx.ConnectError("refused")
        if ref == "m2":
            raise httpx.ReadTimeout("slow")
        assert request.headers["authorization"] == "Bearer t0k3n"
        return httpx.Response(200, json={"messages": [{"id": f"id-{ref}"}]})

    carrier = HttpCarrier(CONFIG, transport=httpx.MockTransport(handler))
    assert (await carrier.submit_many([part()]))[0].code == "not_bound"
    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run, _no_receipts)
        results = await carrier.submit_many([part(i=i) for i in range(3)])
        nursery.cancel_scope.cancel()
    assert results[0] == SubmitResult(carrier_id="id-m0")
    assert (results[1].code, results[1].transient, results[1].in_doubt) == ("connect", True, False)
    assert (results[2].code, results[2].transient, results[2].in_doubt) == ("timeout", True, True)


async def _no_receipts(receipts: Sequence[CarrierReceipt]) -> None:
    raise AssertionError("HTTP receipts come through the route")


# -- a fake provider on a real socket ----------------------------------------------------------


async def _fake_provider(seen: list[dict[str, object]], stream: trio.SocketStream) -> None:
    """Just enough HTTP/1.1: read one request at a time, answer JSON, keep the connection."""
    buffer = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                buffer += await stream.receive_some(65536)
            body, buffer = buffer[:length], buffer[length:]
            fields = dict(x.split("=", 1) for x in body.decode().split("&"))
            seen.append({"line": lines[0], "auth": headers.get("x-api-key"), **fields})
            if fields["to"] == "4915100000003":
                answer, status = b'{"error":"busy"}', b"503 Service Unavailable"
            else:
                answer, status = json.dumps({"sid": f"SM{len(seen):04X}"}).encode(), b"200 OK"
            await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                                  b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer)


async def test_real_socket_form_provider() -> None:
    seen: list[dict[str, object]] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(_fake_provider, seen), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        config = HttpProviderConfig(
            name="form", url=f"http://127.0.0.1:{port}/send", body_format="form",
            headers=(("X-Api-Key", "k"),), fields=(("to", "to_digits"), ("text", "text")),
            id_path="sid", concurrency=2)
        carrier: Carrier = HttpCarrier(config)
        await nursery.start(carrier.run, _no_receipts)
        assert carrier.ready
        parts = [SubmitPart(MsgId(f"m{i}"), 1, 1, f"+4915100000{i:03d}", "S", 0, b"", b"hi", 0)
                 for i in range(5)]
        with trio.fail_after(10):
            results = await carrier.submit_many(parts)
        nursery.cancel_scope.cancel()
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert (results[3].code, results[3].transient) == ("http_503", True)
    assert len({r.carrier_id for r in results if r.ok}) == 4
    assert all(s["line"] == "POST /send HTTP/1.1" and s["auth"] == "k" and s["text"] == "hi"
               for s in seen)
