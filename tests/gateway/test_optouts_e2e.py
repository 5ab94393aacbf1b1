"""Opt-outs through the whole running pipeline (real actors, LMDB, a scripted carrier, the
real HTTP server): a handset's STOP reply makes the account's next message to it end NOT_SENT
opted_out, START lets the next one go, another account is not affected, and a campaign's
statistics count the opted-out recipient under SMS_NOT_SENT:opted_out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import trio

from adapters.smpp.inbound import InboundPart
from gateway.campaigns import COUNTERS, campaign_key, counters
from gateway.inbound import InboundBook, Router
from tests.fakes import ScriptedCarrier
from tests.gateway._campaign_server import serve_campaigns
from tests.gateway.test_campaigns_e2e import wait_final

OURS = "+351912000000"
HANDSET = "+351910000001"
FINAL = ("DELIVERED", "NOT_DELIVERED", "NOT_SENT")


async def send(c: httpx.AsyncClient, to: str) -> dict[str, Any]:
    """Submit one message to ``to`` and wait until it is final; its view."""
    r = await c.post("/v1/messages", json={"to": to, "from": "Septet", "text": "Promo"})
    assert r.status_code == 202, r.text
    msg_id = r.json()["id"]
    with trio.fail_after(20):
        while True:
            doc: dict[str, Any] = (await c.get(f"/v1/messages/{msg_id}")).json()
            if doc["state"] in FINAL:
                return doc
            await trio.sleep(0.01)  # polling a state, not timing logic


async def test_stop_then_start_through_the_pipeline(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db", carriers=[ScriptedCarrier("pt")]) as s, \
            s.client() as alpha, s.client("beta") as beta:
        book = InboundBook(s.store, Router({OURS: "alpha"}))
        assert (await send(alpha, HANDSET))["state"] == "DELIVERED"
        await book.sink([InboundPart("pt", HANDSET[1:], OURS, "Stop.", 1.0, "gsm7")])
        doc = await send(alpha, HANDSET)
        assert (doc["state"], doc["code"], doc["reason"]) == (
            "NOT_SENT", "opted_out", "the recipient opted out")
        assert [e["event"] for e in doc["events"]] == ["SMS_NOT_SENT"]
        assert doc["part_status"] == [] or all(
            p["carrier_id"] is None for p in doc["part_status"])  # never handed to a carrier
        assert (await send(beta, HANDSET))["state"] == "DELIVERED"  # beta's list is its own
        assert (await send(alpha, "+351910000002"))["state"] == "DELIVERED"
        await book.sink([InboundPart("pt", HANDSET[1:], OURS, "START", 2.0, "gsm7")])
        assert (await send(alpha, HANDSET))["state"] == "DELIVERED"


async def test_campaign_statistics_count_opted_out_recipients(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db", carriers=[ScriptedCarrier("pt")]) as s, \
            s.client() as c:
        assert (await c.put(f"/v1/optouts/{HANDSET.replace('+', '%2B')}")).status_code == 201
        recipients = [{"phone": f"+35191000000{i}"} for i in range(1, 5)]
        r = await c.post("/v1/campaigns", json={"name": "promo", "from": "Septet",
                                                "text": "Promo", "recipients": recipients})
        assert r.status_code == 201, r.text
        await wait_final(s.campaigns, s.store, "promo", 4)
        await s.campaigns.step()
        st = (await c.get("/v1/campaigns/promo")).json()["statistics"]
        with s.store.read() as txn:
            k = counters(txn, s.store.db(COUNTERS), campaign_key("alpha", "promo"))
    assert st["not_sent_by_reason"] == {"opted_out": 1}
    assert (st["delivered"], st["not_sent"], st["sent"]) == (3, 1, 3)
    assert k["SMS_NOT_SENT:opted_out"] == 1 and k["SMS_NOT_SENT"] == 1
