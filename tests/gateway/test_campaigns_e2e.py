"""Campaigns through the whole running pipeline (real actors, LMDB, scripted carriers) and the
real HTTP server: statistics equal a recount of the message records, re-contact is honoured
by the rate limiter, the CSV export parses back with every event; and a 20,000-recipient list
streamed in chunks keeps memory flat.
"""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from actors.messages import SubmitPart
from gateway.campaigns import COUNTERS, Campaigns, campaign_key, counters
from tests.fakes import Outcome, ScriptedCarrier
from tests.gateway._campaign_server import serve_campaigns


def fate(part: SubmitPart, _attempt: int) -> Outcome:
    digit = int(part.to[-1])
    return "fail" if digit in (6, 7) else "reject" if digit == 8 else "deliver"


def recount(svc: Campaigns, store: Any, name: str) -> dict[str, Any]:
    """The statistics, recomputed from every message record of the campaign."""
    c: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for _, _, ref in svc.rows("alpha", name):
        if ref.startswith("!"):
            c["invalid"] += 1
            reasons[ref[1:].partition(":")[0]] += 1
            continue
        view = store.get_message(ref)
        c["accepted"] += 1
        c["parts"] += view.message.parts
        events = [e.event for e in view.events]
        c["sent"] += "SMS_SENT" in events
        c["delivered"] += view.state == "DELIVERED"
        c["not_delivered"] += view.state == "NOT_DELIVERED"
        if view.state == "NOT_SENT":
            c["not_sent_messages"] += 1
            reasons[view.code] += 1
    return {"accepted": c["accepted"], "invalid": c["invalid"], "parts": c["parts"],
            "sent": c["sent"], "delivered": c["delivered"],
            "not_delivered": c["not_delivered"],
            "not_sent": c["not_sent_messages"] + c["invalid"],
            "not_sent_by_reason": dict(sorted(reasons.items())),
            "delivery_rate": round(c["delivered"] / c["sent"], 4) if c["sent"] else None}


async def wait_final(svc: Campaigns, store: Any, name: str, n: int) -> None:
    with trio.fail_after(60):
        while True:
            await svc.step()
            with store.read() as txn:
                k = counters(txn, store.db(COUNTERS), campaign_key("alpha", name))
            if sum(k.get(e, 0) for e in ("SMS_DELIVERED", "SMS_NOT_DELIVERED",
                                         "SMS_NOT_SENT")) + k.get("invalid", 0) >= n:
                return
            await trio.sleep(0.02)


async def test_statistics_equal_a_recount_and_the_export_parses_back(tmp_path: Path) -> None:
    carrier = ScriptedCarrier("pt", fate)
    async with serve_campaigns(tmp_path / "db", carriers=[carrier]) as s, s.client() as c:
        recipients: list[dict[str, Any]] = [
            {"phone": f"+3519123{i:05d}", "name": f"N{i}"} for i in range(300)]
        recipients[5]["name"] = ""  # missing field
        recipients[7]["phone"] = "12"  # invalid number
        recipients[9]["name"] = "x" * 170  # two parts
        recipients[11]["phone"] = recipients[10]["phone"]  # contacted just before
        r = await c.post("/v1/campaigns", json={"name": "stats", "from": "Septet",
                                                "text": "Hi {name}", "recontact_hours": 36,
                                                "recipients": recipients})
        assert r.status_code == 201
        await wait_final(s.campaigns, s.store, "stats", 300)
        await s.campaigns.step()
        doc = (await c.get("/v1/campaigns/stats")).json()
        st = doc["statistics"]
        expected = recount(s.campaigns, s.store, "stats")
        assert {k: st[k] for k in expected} == expected
        assert doc["state"] == "done"
        assert st["not_sent_by_reason"]["recently_contacted"] == 1  # re-contact honoured
        assert st["not_sent_by_reason"]["missing_field"] == 1
        assert st["not_sent_by_reason"]["invalid_number"] == 1
        assert st["delivered"] > 200 and st["not_delivered"] > 0 and st["parts"] == 299
        r = await c.get("/v1/campaigns/stats/messages.csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [int(row["row"]) for row in rows] == list(range(300))
        by_state = Counter(row["state"] for row in rows)
        assert by_state["DELIVERED"] == st["delivered"]
        assert by_state["REFUSED"] == st["invalid"]
        for row in rows:
            if row["state"] == "DELIVERED":
                events = row["events"].split("; ")
                assert [e.split(" ")[0] for e in events] == ["SMS_SENT", "SMS_DELIVERED"]
                assert row["carrier_ids"]
            if row["id"]:
                view = s.store.get_message(row["id"])
                assert (view.message.to, str(view.state)) == (row["to"], row["state"])


async def test_20000_recipients_stream_in_with_flat_memory(tmp_path: Path) -> None:
    """Memory does not grow with the list: the peak while 20,000 recipients are uploaded in
    chunks and expanded is about the peak for 4,000 (``bench.campaign`` runs 100,000)."""

    async def run(n: int) -> int:
        async with serve_campaigns(tmp_path / f"db{n}", chunk=1000) as s, s.client() as c:
            r = await c.post("/v1/campaigns", json={"name": f"big{n}", "from": "Septet",
                                                    "text": "Hi {first}", "draft": True})
            assert r.status_code == 201
            tracemalloc.start()
            try:
                for start in range(0, n, 2000):
                    body = "mobile_phone,first\n" + "".join(
                        f"9{12000000 + i:08d},F{i}\n" for i in range(start, start + 2000))
                    r = await c.post(f"/v1/campaigns/big{n}/recipients", content=body,
                                     headers={"content-type": "text/csv"})
                    assert r.status_code == 202
                assert (await c.post(f"/v1/campaigns/big{n}/start")).status_code == 200
                await s.campaigns.step()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            st = (await c.get(f"/v1/campaigns/big{n}")).json()["statistics"]
            assert st["accepted"] == n and s.store.entries(b"messages") == n
            return peak

    small, large = await run(4000), await run(20_000)
    assert large < small * 1.5 + 1_000_000, (small, large)
    assert large < 16_000_000  # the 20,000 messages themselves would take far more
