"""Recipient lists streamed in ONE request through the real server on 127.0.0.1 (issue 8):
100,000 CSV rows with flat memory (Content-Length and chunked), JSON lines, a slow client, a
connection dropped mid-body then finished by re-sending with ``?offset=0`` (no duplicates), and
the stream limit (413 naming it). Real LMDB in tmp_path.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgpack
import pytest
import trio

from gateway.api.campaigns import CsvStream, NdjsonStream
from gateway.campaigns import ROWS, campaign_key
from gateway.http import ServerLimits
from tests.gateway._campaign_server import Served, serve_campaigns

N = 100_000
NOTE = b"a note a CRM exports with every contact, forty-odd bytes"
PIECE = 64 * 1024


def csv_lines(n: int, start: int = 0) -> Iterator[bytes]:
    yield b"mobile_phone;first;invoice;due;note\r\n"
    for i in range(start, start + n):
        yield b"9%08d;Name%d;INV-%07d;2026-12-%02d;%s\r\n" % (
            12_000_000 + i, i, i, 1 + i % 28, NOTE)


def pieces(lines: Iterator[bytes]) -> Iterator[bytes]:
    buf: list[bytes] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= PIECE:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


async def body(n: int) -> AsyncIterator[bytes]:
    for piece in pieces(csv_lines(n)):
        yield piece
        await trio.lowlevel.checkpoint()


async def draft(s: Served, name: str = "big",
                text: str = "Hi {first}, invoice {invoice} is due {due}") -> None:
    async with s.client() as c:
        r = await c.post("/v1/campaigns", json={
            "name": name, "from": "Septet", "draft": True, "text": text})
        assert r.status_code == 201, r.text


def staged_numbers(s: Served, name: str = "big") -> list[str]:
    prefix = campaign_key("alpha", name).encode() + b"\x00"
    with s.store.read() as txn, txn.cursor(db=s.store.db(ROWS)) as cur:
        cur.set_range(prefix)
        return [msgpack.unpackb(v)["mobile_phone"] for k, v in cur if k.startswith(prefix)]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_100k_recipients_stream_in_one_request_with_flat_memory(
        tmp_path: Path, chunked: bool) -> None:
    size = sum(len(p) for p in csv_lines(N))
    headers = {"content-type": "text/csv"}
    if not chunked:
        headers["content-length"] = str(size)  # with an iterator body: no chunked coding
    async with serve_campaigns(tmp_path / "db") as s:
        await draft(s)
        async with s.client() as c:
            tracemalloc.start()
            try:
                r = await c.post("/v1/campaigns/big/recipients", content=body(N),
                                 headers=headers)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert r.status_code == 202, r.text
        assert r.request.headers.get("transfer-encoding") == ("chunked" if chunked else None)
        assert r.json() == {"staged": N, "skipped": 0, "recipients": N}
        numbers = staged_numbers(s)
    assert numbers == [f"9{12_000_000 + i:08d}" for i in range(N)]
    # The whole body (~10 MB, beyond max_body_bytes) never sits in memory: the peak of
    # everything Python allocated, client included, is a chunk of rows and a receive or two.
    print(f"body {size} bytes, traced peak {peak} bytes")
    assert size > 9 * 1024 * 1024
    assert peak < size / 3, (peak, size)


async def test_a_csv_body_creates_and_starts_a_campaign_in_one_streamed_request(
        tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/campaigns?name=one&from=Septet&text=Hi%20{first}",
                         content=body(3000), headers={"content-type": "text/csv"})
        assert r.status_code == 201, r.text
        assert (r.json()["state"], r.json()["recipients"]) == ("scheduled", 3000)


async def test_json_lines_stream_and_bad_lines_are_refused_per_row(tmp_path: Path) -> None:
    lines = [json.dumps({"phone": f"+35191{i:07d}", "first": f"n{i}"}).encode()
             for i in range(4000)]
    lines[10] = b"{not json"
    data = b"\n".join(lines) + b"\n"

    async def gen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 1000):  # records cut across chunk boundaries
            yield data[i:i + 1000]

    async with serve_campaigns(tmp_path / "db") as s:
        await draft(s, text="Hi {first}")
        async with s.client() as c:
            r = await c.post("/v1/campaigns/big/recipients", content=gen(),
                             headers={"content-type": "application/x-ndjson"})
            assert r.json()["staged"] == 4000
            await c.post("/v1/campaigns/big/start")
            await s.campaigns.step()
            stats = (await c.get("/v1/campaigns/big")).json()["statistics"]
    assert stats["accepted"] == 3999, stats
    assert stats["not_sent_by_reason"] == {"bad_row": 1}


async def test_a_slow_client_streams_past_the_request_deadline(tmp_path: Path) -> None:
    limits = ServerLimits(request_timeout=0.2, body_idle_timeout=2.0)
    async with serve_campaigns(tmp_path / "db", limits=limits) as s:
        await draft(s)
        data = b"".join(csv_lines(50))

        async def slow() -> AsyncIterator[bytes]:
            for i in range(0, len(data), len(data) // 5 + 1):
                await trio.sleep(0.1)  # 0.5 s in all: past request_timeout, within idle
                yield data[i:i + len(data) // 5 + 1]

        async with s.client() as c:
            r = await c.post("/v1/campaigns/big/recipients", content=slow(),
                             headers={"content-type": "text/csv"})
        assert r.status_code == 202, r.text
        assert r.json()["staged"] == 50


async def test_a_dropped_upload_is_finished_by_resending_from_offset_0(tmp_path: Path) -> None:
    n = 12_000
    whole = b"".join(csv_lines(n))
    cut = len(whole) * 2 // 3  # the body stops two thirds in
    sent = whole[:cut].count(b"\n") - 1  # whole rows sent (the header aside)
    async with serve_campaigns(tmp_path / "db") as s:
        await draft(s)
        port = int(s.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/campaigns/big/recipients?offset=0 HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer %s\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (s.keys["alpha"].encode(), len(whole)))
        for i in range(0, cut, PIECE):
            await stream.send_all(whole[i:min(cut, i + PIECE)])
        with trio.fail_after(10):
            while len(staged_numbers(s)) < 4_000:  # some chunks are durable
                await trio.sleep(0.01)
        await stream.aclose()  # the client dies mid-body
        await trio.sleep(0.2)  # let the server notice
        before = len(staged_numbers(s))
        assert 4_000 <= before <= sent  # what was durable stays; the chunk in progress not
        async with s.client() as c:
            r = await c.post("/v1/campaigns/big/recipients?offset=0", content=whole,
                             headers={"content-type": "text/csv"})
            assert r.json() == {"staged": n - before, "skipped": before, "recipients": n}
            # re-sending once more changes nothing; a gap is refused
            r = await c.post("/v1/campaigns/big/recipients?offset=0", content=whole,
                             headers={"content-type": "text/csv"})
            assert r.json() == {"staged": 0, "skipped": n, "recipients": n}
            r = await c.post(f"/v1/campaigns/big/recipients?offset={n + 1}",
                             content=b"phone\n+351912345678\n",
                             headers={"content-type": "text/csv"})
            assert r.status_code == 409
            assert r.json()["errors"][0]["field"] == "offset"
        assert staged_numbers(s) == [f"9{12_000_000 + i:08d}" for i in range(n)]


async def test_a_body_over_the_stream_limit_is_413_naming_it(tmp_path: Path) -> None:
    limits = ServerLimits(max_stream_bytes=200_000)
    async with serve_campaigns(tmp_path / "db", limits=limits) as s:
        await draft(s)
        async with s.client() as c:
            for content in (b"".join(csv_lines(10_000)), body(10_000)):
                r = await c.post("/v1/campaigns/big/recipients", content=content,
                                 headers={"content-type": "text/csv"})
                assert r.status_code == 413
                assert r.headers["content-type"] == "application/problem+json"
                assert "200000 bytes" in r.json()["detail"]
            # other routes keep max_body_bytes (1 MiB), not the stream limit
            r = await c.post("/v1/templates", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                             headers={"content-type": "application/json"})
            assert r.status_code == 413


def test_csv_stream_waits_for_a_record_cut_inside_quotes() -> None:
    p = CsvStream()
    assert p.feed(b"\xef\xbb\xbfphone,note\n+351912345678,\"line one\nline") == []
    assert p.feed(b" two\"\n+351912345679,x\n") == [
        {"phone": "+351912345678", "note": "line one\nline two"},
        {"phone": "+351912345679", "note": "x"}]
    assert p.feed(b"+35191234567", final=False) == []
    assert p.feed(b"0,y", final=True) == [{"phone": "+351912345670", "note": "y"}]


def test_csv_stream_joins_a_utf8_character_split_across_chunks() -> None:
    data = "phone;first\n+351912345678;Jo\u00e3o\n".encode()
    cut = data.index(b"\xc3") + 1
    p = CsvStream()
    rows = p.feed(data[:cut]) + p.feed(data[cut:]) + p.feed(b"", final=True)
    assert rows == [{"phone": "+351912345678", "first": "Jo\u00e3o"}]


def test_ndjson_stream_numbers_lines_across_chunks() -> None:
    p = NdjsonStream()
    out = p.feed(b'{"phone":"1"}\n{bad') + p.feed(b'\n\n{"phone":"2"}') + p.feed(b"", final=True)
    assert out == [{"phone": "1"}, {"__error__": "line 2 is not JSON"}, {"phone": "2"}]


@pytest.mark.parametrize(("method", "target", "content_type", "streams"), [
    (b"POST", b"/v1/campaigns/big/recipients", "text/csv", True),
    (b"POST", b"/v1/campaigns/big/recipients?offset=0", "application/json", True),
    (b"POST", b"/v1/campaigns?name=x&from=S&text=hi", "text/csv", True),
    (b"POST", b"/v1/campaigns", "application/x-ndjson; charset=utf-8", True),
    (b"POST", b"/v1/campaigns", "application/json", False),  # a definition: read whole
    (b"POST", b"/v1/campaigns/big/start", "", False),
    (b"POST", b"/v1/campaigns/a/b/recipients", "text/csv", False),
    (b"GET", b"/v1/campaigns/big/recipients", "", False),
    (b"POST", b"/v1/messages", "application/json", False),
    (b"POST", b"/v1/templates", "text/csv", False),
])
def test_only_recipient_uploads_are_streamed(method: bytes, target: bytes, content_type: str,
                                             streams: bool) -> None:
    from gateway.api.campaigns import CampaignRoutes
    from gateway.api.routes import Api

    class Wired:
        campaigns = CampaignRoutes(None)  # type: ignore[arg-type]

    headers = {"content-type": content_type} if content_type else {}
    assert Api.streaming(Wired, method, target, headers) is streams  # type: ignore[arg-type]


async def test_a_dropped_create_leaves_a_draft_that_offset_0_and_start_finish(
        tmp_path: Path) -> None:
    n = 9_000
    whole = b"".join(csv_lines(n))
    async with serve_campaigns(tmp_path / "db") as s:
        port = int(s.url.rsplit(":", 1)[1])
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/campaigns?name=big&from=Septet&text=Hi%%20{first} HTTP/1.1\r\n"
            b"Host: x\r\nAuthorization: Bearer %s\r\nContent-Type: text/csv\r\n"
            b"Content-Length: %d\r\n\r\n" % (s.keys["alpha"].encode(), len(whole)))
        await stream.send_all(whole[:len(whole) // 2])
        sent = whole[:len(whole) // 2].count(b"\n") - 1
        with trio.fail_after(10):
            while len(staged_numbers(s)) < 2_000:
                await trio.sleep(0.01)
        await stream.aclose()
        await trio.sleep(0.2)  # let the server notice
        async with s.client() as c:
            doc = (await c.get("/v1/campaigns/big")).json()
            assert doc["state"] == "draft" and 2_000 <= doc["recipients"] <= sent < n
            r = await c.post("/v1/campaigns/big/recipients?offset=0", content=whole,
                             headers={"content-type": "text/csv"})
            assert r.json()["recipients"] == n
            assert (await c.post("/v1/campaigns/big/start")).json()["state"] == "scheduled"
        assert staged_numbers(s) == [f"9{12_000_000 + i:08d}" for i in range(n)]
