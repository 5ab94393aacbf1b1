"""Campaign expansion rate: recipients/s accepted durably from a CSV upload through the real
HTTP server.

A real ``HttpServer`` with the v1 API on 127.0.0.1, a real LMDB store (``sync=True``: every
commit is an fsync) and the real ``Gateway.accept`` (its actors are not started, so the
figure is the campaign layer plus the durable accept, not the carriers). The client creates a
draft campaign with a template, uploads N recipients as CSV in ONE request whose body is
streamed (generated as it is sent, ``Content-Length`` declared, or chunked with
``--chunked``; the server streams it into the campaign, far past its 1 MiB body limit),
starts it, and the clock stops when the campaign runner has expanded every row into a durably
accepted message (the ``accepted`` counter equals N).

    python -m bench.campaign [--recipients 100000] [--chunked] [--expand-chunk 8000]

Last line: one JSON object with ``recipients_per_s`` (upload to last accept), plus
``upload_per_s`` (staging only) and ``expand_per_s`` (runner only) and the RSS growth.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import trio

import gateway.campaigns  # noqa: F401  (registers the campaign databases)
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import Gateway
from gateway.campaigns import COUNTERS, Campaigns, campaign_key, counters
from gateway.config import ApiConfig
from gateway.http import HttpServer, ServerLimits
from gateway.store import open_store


def csv_pieces(n: int, rows_per_piece: int = 2000) -> Iterator[bytes]:
    """The upload body, generated piece by piece (never whole in memory)."""
    yield b"mobile_phone,first_name,invoice\n"
    for start in range(0, n, rows_per_piece):
        yield "".join(f"9{12000000 + i:08d},Name{i % 997},INV-{i}\n"
                      for i in range(start, min(n, start + rows_per_piece))).encode()


async def csv_body(n: int) -> AsyncIterator[bytes]:
    for piece in csv_pieces(n):
        yield piece


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(n: int, chunked: bool, expand_chunk: int, sync: bool = True) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="septet-bench-campaign-")
    async with open_store(Path(tmp) / "db", sync=sync) as store, trio.open_nursery() as nursery:
        gw = Gateway(store, [])
        svc = Campaigns(store, gw, chunk=expand_chunk, poll=0.05)
        api = create_api(gw, ApiConfig(), campaigns=svc)
        key = await AccountBook(store).create(Account("bench", default_prefix="351"))
        server = HttpServer(api, ServerLimits(request_timeout=60))
        port = await nursery.start(server.serve, "127.0.0.1", 0)
        await nursery.start(svc.run)
        size = sum(len(p) for p in csv_pieces(n))
        headers = {"content-type": "text/csv"}
        if not chunked:
            headers["content-length"] = str(size)
        rss0 = rss_mb()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120,
                                     headers={"authorization": f"Bearer {key}"}) as c:
            r = await c.post("/v1/templates", json={
                "name": "invoice", "text": "Hi {first_name}, invoice {invoice} is due on Friday."})
            r.raise_for_status()
            t0 = time.perf_counter()
            r = await c.post("/v1/campaigns", json={"name": "bench", "from": "Septet",
                                                    "template": "invoice", "draft": True})
            r.raise_for_status()
            r = await c.post("/v1/campaigns/bench/recipients", content=csv_body(n),
                             headers=headers)
            r.raise_for_status()
            assert r.json()["staged"] == n, r.text
            t_upload = time.perf_counter()
            r = await c.post("/v1/campaigns/bench/start")
            r.raise_for_status()
            t_start = time.perf_counter()
            while True:
                with store.read() as txn:
                    accepted = counters(txn, store.db(COUNTERS),
                                        campaign_key("bench", "bench")).get("accepted", 0)
                if accepted >= n:
                    break
                await trio.sleep(0.01)
            t_end = time.perf_counter()
            r = await c.get("/v1/campaigns/bench")
            stats = r.json()["statistics"]
        nursery.cancel_scope.cancel()
    assert stats["accepted"] == n and stats["invalid"] == 0, stats
    return {"recipients": n, "body_bytes": size, "chunked": chunked,
            "recipients_per_s": round(n / (t_end - t0)),
            "upload_per_s": round(n / (t_upload - t0)),
            "expand_per_s": round(n / (t_end - t_start)),
            "seconds": round(t_end - t0, 2), "rss_growth_mb": round(rss_mb() - rss0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipients", type=int, default=100_000)
    p.add_argument("--chunked", action="store_true",
                   help="send the body chunked instead of with a Content-Length")
    p.add_argument("--expand-chunk", type=int, default=8000, help="rows per accept commit")
    p.add_argument("--no-sync", action="store_true", help="commits without fsync")
    args = p.parse_args(argv)
    figures = trio.run(run, args.recipients, args.chunked, args.expand_chunk, not args.no_sync)
    print(f"{figures['recipients']} recipients ({figures['body_bytes']} bytes, one request) "
          f"in {figures['seconds']} s: "
          f"{figures['recipients_per_s']}/s overall (upload {figures['upload_per_s']}/s, "
          f"expansion {figures['expand_per_s']}/s), RSS growth {figures['rss_growth_mb']} MB",
          file=sys.stderr)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
