"""MO end to end over real parts: the simulator's replies (single, concatenated GSM 7-bit and
UCS-2) through SmppCarrier into a real LMDB store, then read with GET /v1/inbound."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.messages import MsgId, SubmitPart
from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from adapters.smpp.client import SmppCarrier
from gateway.inbound import PARTS, InboundBook, Router
from gateway.store import open_store
from tests.gateway.http.conftest import start

OURS = "+351912000000"
HANDSET = "+351910000000"


async def no_receipts(_: Any) -> None:
    pass


@pytest.mark.parametrize(("reply", "concat", "packed", "parts", "encoding"), [
    ("echo", "udh", False, 1, "gsm7"),
    ("Long GSM reply {€} " * 12, "udh", True, 2, "gsm7"),
    ("Ответ на сообщение " * 5, "sar", False, 2, "ucs2"),
])
async def test_mo_reaches_the_store_and_the_api(tmp_path: Path, reply: str, concat: str,
                                                packed: bool, parts: int, encoding: str) -> None:
    stats = SimulatorStats()
    config = SimulatorConfig(mo_reply=reply, mo_concat=concat, mo_packed_gsm7=packed,  # type: ignore[arg-type]
                             receipts=False)
    async with open_store(tmp_path / "db", sync=False) as store, \
            trio.open_nursery() as nursery:
        served = await start(nursery, store)
        book = InboundBook(store, Router({OURS: "alpha"}))
        port = await nursery.start(partial(serve_simulator, config, stats=stats))
        carrier = SmppCarrier("sim", "127.0.0.1", port, "septet", "pw", packed_gsm7=packed,
                              inbound=book.sink, reconnect_min=0.01)
        await nursery.start(carrier.run, no_receipts)
        with trio.fail_after(10):
            while not carrier.ready:
                await trio.sleep(0.005)  # polling a flag, not timing logic
        part = SubmitPart(MsgId("m1"), 1, 1, HANDSET, OURS, 0, b"", b"hello", 0)
        assert (await carrier.submit_many([part]))[0].ok
        with trio.fail_after(10):
            while stats.mo_acked < parts:
                await trio.sleep(0.005)  # polling a counter, not timing logic
        async with served.client() as c:
            doc = (await c.get("/v1/inbound")).json()
        with store.read() as txn:
            left = txn.stat(store.db(PARTS))["entries"]
        nursery.cancel_scope.cancel()
    assert [(m["from"], m["to"], m["text"], m["parts"], m["encoding"])
            for m in doc["messages"]] == [(HANDSET, OURS, reply, parts, encoding)]
    assert left == 0 and stats.mo_redelivered == 0 and carrier.stats.inbound == parts
