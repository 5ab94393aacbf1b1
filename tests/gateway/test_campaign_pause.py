"""Pause stops sending (issue 8): after ``POST .../pause`` the carrier receives no further
message of the campaign, also after a restart while paused; ``resume`` lets the rest go. Real
running gateway (every actor) with a scripted carrier, LMDB in tmp_path, real HTTP server.

The campaign is paced (``per_minute``) so it is mid-way when paused; the rate limiter holds
a paused campaign's messages back (``CampaignRules.paused``, read live from the campaign
table, which is rebuilt from the durable campaign records on start) and hands them to the
durable schedule every ``pause_recheck`` seconds (0.2 here).
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from gateway.campaigns import COUNTERS, campaign_key, counters
from tests.fakes import ScriptedCarrier
from tests.gateway._campaign_server import serve_campaigns

N = 40


def sent(*carriers: ScriptedCarrier) -> set[str]:
    return {msg_id for c in carriers for msg_id, _ in c.submitted}


async def test_pause_stops_sending_across_a_restart_and_resume_sends_the_rest(
        tmp_path: Path) -> None:
    first = ScriptedCarrier("pt")
    recipients = [{"phone": f"+3519123{i:05d}", "n": str(i)} for i in range(N)]
    async with serve_campaigns(tmp_path / "db", carriers=[first], pause_recheck=0.2) as s, \
            s.client() as c:
        r = await c.post("/v1/campaigns", json={
            "name": "SPRING", "from": "Septet", "text": "Hi {n}",
            "shaping": {"per_minute": 1200}, "recipients": recipients})  # 20/s
        assert r.status_code == 201
        with trio.fail_after(20):
            while len(sent(first)) < 8:
                await s.campaigns.step()  # expands the list (the runner is not started here)
                await trio.sleep(0.02)
        r = await c.post("/v1/campaigns/SPRING/pause")
        assert r.json()["state"] == "paused"
        at_pause = len(sent(first))
        await trio.sleep(1.0)  # five re-checks: the paused messages keep coming back
        after = len(sent(first))
        # at most the one message the limiter had released as the pause answered
        assert after - at_pause <= 1
        assert after < N
        await trio.sleep(0.5)
        assert len(sent(first)) == after  # nothing more, however long it stays paused

    second = ScriptedCarrier("pt", first_id=0x0500_0000_0000_0000)
    async with serve_campaigns(tmp_path / "db", carriers=[second], pause_recheck=0.2) as s, \
            s.client() as c:
        await s.campaigns.step()
        await trio.sleep(1.0)  # restarted while paused: still paused (read from the store)
        assert (await c.get("/v1/campaigns/SPRING")).json()["state"] == "paused"
        assert not sent(second) - sent(first)

        r = await c.post("/v1/campaigns/SPRING/resume")
        assert r.json()["state"] == "scheduled"

        async def all_delivered() -> bool:
            await s.campaigns.step()
            st = (await c.get("/v1/campaigns/SPRING")).json()["statistics"]
            return bool(st["delivered"] == N)

        with trio.fail_after(20):
            while not await all_delivered():
                await trio.sleep(0.05)
    assert len(sent(first, second)) == N  # the rest went, each message once


async def test_two_accounts_run_campaigns_of_the_same_name_with_separate_statistics(
        tmp_path: Path) -> None:
    carrier = ScriptedCarrier("pt")
    async with serve_campaigns(tmp_path / "db", carriers=[carrier]) as s, \
            s.client() as a, s.client("beta") as b:
        for client, n in ((a, 3), (b, 5)):
            r = await client.post("/v1/campaigns", json={
                "name": "SPRING", "from": "Septet", "text": "Hi",
                "recipients": [{"phone": f"+3519123{i:05d}"} for i in range(n)]})
            assert r.status_code == 201, r.text
        # a message without a campaign: grouped per account and month, counted per account
        r = await a.post("/v1/messages", json={"to": "+351912399999", "from": "Septet",
                                              "text": "one-off"})
        assert r.status_code == 202, r.text
        month = time.strftime("API_SMS_%Y_%m", time.gmtime())

        async def delivered(client: object) -> int:
            await s.campaigns.step()
            doc = (await client.get("/v1/campaigns/SPRING")).json()  # type: ignore[attr-defined]
            return int(doc["statistics"]["delivered"])

        with trio.fail_after(20):
            while (await delivered(a), await delivered(b)) != (3, 5):
                await trio.sleep(0.05)
        with s.store.read() as txn:
            db = s.store.db(COUNTERS)
            assert counters(txn, db, campaign_key("alpha", "SPRING"))["accepted"] == 3
            assert counters(txn, db, campaign_key("beta", "SPRING"))["accepted"] == 5
            assert counters(txn, db, campaign_key("alpha", month))["accepted"] == 1
            assert counters(txn, db, campaign_key("beta", month)) == {}
