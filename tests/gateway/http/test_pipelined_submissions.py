"""Pipelined submissions without Idempotency-Key are handled together: one accept, answers in
order, each answer what that request alone would get; others are handled one at a time."""
from __future__ import annotations

import json

import trio

from tests.gateway.http.conftest import served  # noqa: F401


def _post(key: str, body: dict, extra: str = "") -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: {len(raw)}\r\n\r\n"
            ).encode() + raw


async def _answers(stream, n):
    buf = b""
    out = []
    with trio.fail_after(5):
        while len(out) < n:
            buf += await stream.receive_some(65536)
            while b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) < length:
                    break
                out.append((int(head[9:12]), json.loads(rest[:length])))
                buf = rest[length:]
    return out


async def test_burst_is_one_accept_and_answers_in_order(served) -> None:  # noqa: F811
    key = served.keys["alpha"]
    good = {"to": "+351912345678", "from": "Septet", "text": "hi"}
    burst = (_post(key, good) + _post(key, {**good, "to": "12"}) + _post("sk_bad", good)
             + _post(key, {"messages": [good, good]}) + _post(key, good))
    calls = []
    real = served.gateway.accept

    async def accept(messages, *, also=None):
        calls.append(len(messages))
        await real(messages, also=also)
    served.gateway.accept = accept
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    await stream.send_all(burst)
    answers = await _answers(stream, 5)
    assert [a[0] for a in answers] == [202, 422, 401, 202, 202]
    assert calls == [4]
    ids = [answers[0][1]["id"], *(m["id"] for m in answers[3][1]["messages"]), answers[4][1]["id"]]
    assert ids == sorted(ids)
    assert served.message_count() == 4


async def test_saturation_refuses_the_whole_burst(served) -> None:  # noqa: F811
    key = served.keys["alpha"]
    good = {"to": "+351912345678", "from": "Septet", "text": "hi"}
    served.gateway.saturated = True
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    await stream.send_all(_post(key, good) * 3)
    answers = await _answers(stream, 3)
    assert [a[0] for a in answers] == [503] * 3
    assert served.message_count() == 0


async def test_idempotent_requests_are_handled_one_at_a_time(served) -> None:  # noqa: F811
    key = served.keys["alpha"]
    good = {"to": "+351912345678", "from": "Septet", "text": "hi"}
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    k = "Idempotency-Key: abc\r\n"
    await stream.send_all(_post(key, good, k) + _post(key, good, k) + _post(key, good))
    answers = await _answers(stream, 3)
    assert [a[0] for a in answers] == [202, 202, 202]
    assert answers[0][1]["id"] == answers[1][1]["id"] != answers[2][1]["id"]
    assert served.message_count() == 2


async def test_connection_close_in_a_burst_ends_it(served) -> None:  # noqa: F811
    key = served.keys["alpha"]
    good = {"to": "+351912345678", "from": "Septet", "text": "hi"}
    stream = await trio.open_tcp_stream("127.0.0.1", served.port)
    await stream.send_all(_post(key, good) + _post(key, good, "Connection: close\r\n"))
    answers = await _answers(stream, 2)
    assert [a[0] for a in answers] == [202, 202]
    with trio.fail_after(5):
        assert await stream.receive_some(100) == b""
    assert served.message_count() == 2
