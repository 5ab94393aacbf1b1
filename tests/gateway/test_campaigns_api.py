"""Campaigns and templates through the real HTTP server, a real LMDB store and the real
Gateway.accept (actors not started: accepted messages stay ACCEPTED where the tests read them).

The runner is driven by ``Campaigns.step()`` with an injected clock, so schedules and slices
are asserted exactly, without sleeping.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import pytest

from actors.shaping import CampaignRules
from gateway.campaigns import MSGS, Campaigns
from tests.gateway._campaign_server import serve_campaigns

T0 = 1_795_000_000.0  # a fixed "now" (2026-11-18)


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def messages_of(svc: Campaigns, name: str, account: str = "alpha") -> list[tuple[int, str]]:
    return [(row, ref) for row, _, ref in svc.rows(account, name)
            if ref and not ref.startswith("!")]


async def test_template_crud_and_preview(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/templates", json={
            "name": "invoice", "text": "Olá {first}, fatura {inv} vence {due}",
            "on_missing": "default", "defaults": {"due": "amanhã"}})
        assert r.status_code == 201 and r.json()["fields"] == ["first", "inv", "due"]
        r = await c.post("/v1/templates/invoice/preview", json={"fields": {"first": "Ana",
                                                                           "inv": "7"}})
        assert r.status_code == 200
        doc = r.json()
        assert doc["parts"] == 1 and doc["encoding"] == "gsm7"
        assert doc["text"].endswith("vence amanha")  # transliterated as it will be sent
        r = await c.post("/v1/templates", json={"name": "invoice", "text": "{x"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "text"
        r = await c.post("/v1/templates", json={"name": "invoice", "text": "Hi {x}"})
        assert r.status_code == 200  # replaced
        r = await c.post("/v1/templates/invoice/preview", json={"fields": {}})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "fields.x"
        assert [t["name"] for t in (await c.get("/v1/templates")).json()["templates"]] == [
            "invoice"]
        async with s.client("beta") as other:
            assert (await other.get("/v1/templates/invoice")).status_code == 404
        assert (await c.delete("/v1/templates/invoice")).status_code == 204
        assert (await c.get("/v1/templates/invoice")).status_code == 404


async def test_campaign_recipients_phone_fields_prefix_and_per_row_refusals(
        tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        recipients = [
            {"mobile_phone": "912345678", "mobilephone": "+447700900001", "name": "A"},
            {"mobilephone": "7911123456", "mobile_prefix": "44", "name": "B"},
            {"phone": "+34612345678", "name": "C"},
            {"phone": "912 345 679"},  # lacks the field: fails that recipient only
            {"mobile_phone": "not a number", "name": "E"},
            {"email": "x@example.com", "name": "F"},
            "not an object",
        ]
        r = await c.post("/v1/campaigns", json={"name": "spring", "from": "Septet",
                                                "text": "Hi {name}", "recipients": recipients})
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "scheduled"
        await s.campaigns.step()
        doc = (await c.get("/v1/campaigns/spring")).json()
        assert doc["state"] == "running"
        st = doc["statistics"]
        assert (st["recipients"], st["accepted"], st["invalid"], st["parts"]) == (7, 3, 4, 3)
        assert st["not_sent_by_reason"] == {"bad_row": 1, "invalid_number": 1,
                                            "missing_field": 1, "no_number": 1}
        tos = [s.store.get_message(ref).message.to for _, ref in messages_of(s.campaigns,
                                                                               "spring")]
        assert tos == ["+351912345678", "+447911123456", "+34612345678"]
        r = await c.get("/v1/campaigns/spring/messages.csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["state"] for row in rows] == ["ACCEPTED"] * 3 + ["REFUSED"] * 4
        assert rows[3]["code"] == "missing_field" and "name" in rows[3]["reason"]
        assert rows[0]["to"] == "+351912345678" and rows[0]["id"]


async def test_campaigns_are_private_and_names_unique_per_account(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c, s.client("beta") as b:
        body = {"name": "x1", "from": "Septet", "text": "hi", "recipients": [], "draft": True}
        assert (await c.post("/v1/campaigns", json=body)).status_code == 201
        assert (await b.get("/v1/campaigns/x1")).status_code == 404
        assert (await b.get("/v1/campaigns")).json()["campaigns"] == []
        assert (await b.post("/v1/campaigns/x1/pause")).status_code == 404
        assert (await c.post("/v1/campaigns", json=body)).status_code == 409  # same account
        # another account may have its own x1: separate record, rows and state
        r = await b.post("/v1/campaigns", json={**body, "text": "beta's"})
        assert r.status_code == 201
        r = await b.post("/v1/campaigns/x1/recipients", content=b"phone\n+351912345678\n",
                         headers={"content-type": "text/csv"})
        assert r.json()["recipients"] == 1
        assert (await b.post("/v1/campaigns/x1/cancel")).json()["state"] == "cancelled"
        mine = (await c.get("/v1/campaigns/x1")).json()
        assert (mine["text"], mine["state"], mine["recipients"]) == ("hi", "draft", 0)
        assert [x["text"] for x in (await b.get("/v1/campaigns")).json()["campaigns"]] == [
            "beta's"]
        r = await c.post("/v1/campaigns", json={"from": "Septet!!!!!!!!", "text": "{x",
                                                "shaping": {"slice_percent": 150},
                                                "bogus": 1})
        assert r.status_code == 422
        fields = {e["field"] for e in r.json()["errors"]}
        assert fields >= {"bogus", "shaping.slice_percent"}


async def test_slices_are_expanded_on_schedule_paused_resumed_and_cancelled(
        tmp_path: Path) -> None:
    clock = Clock()
    async with serve_campaigns(tmp_path / "db", now=clock) as s, s.client() as c:
        start = T0 + 3600
        r = await c.post("/v1/campaigns", json={
            "name": "sliced", "from": "Septet", "text": "Hi {n}", "send_at": start,
            "shaping": {"slice_percent": 15, "slice_every_minutes": 20},
            "recipients": [{"phone": f"+3519123{i:05d}", "n": str(i)} for i in range(100)]})
        assert r.status_code == 201
        svc = s.campaigns
        assert await svc.step() == start - svc.lead  # nothing before the start
        assert messages_of(svc, "sliced") == []
        clock.t = start - svc.lead
        await svc.step()
        got = messages_of(svc, "sliced")
        assert len(got) == 15  # ceil(100 * 15 %)
        send_ats = {s.store.get_message(ref).message.send_at for _, ref in got}
        assert send_ats == {start}
        clock.t = start + 20 * 60 - svc.lead
        await svc.step()
        got = messages_of(svc, "sliced")
        assert len(got) == 30
        assert s.store.get_message(got[-1][1]).message.send_at == start + 1200
        assert (await c.post("/v1/campaigns/sliced/pause")).json()["state"] == "paused"
        clock.t = start + 3 * 3600
        await svc.step()
        assert len(messages_of(svc, "sliced")) == 30  # paused: nothing more expanded
        assert (await c.post("/v1/campaigns/sliced/resume")).status_code == 200
        await svc.step()
        # The pause (3 h - 40 min) shifted the remaining slices: slice 2 opens 20 min after
        # the resume would have... i.e. at the old time + pause length.
        shifted = start + 2 * 1200 + (start + 3 * 3600 - (start + 1200 - svc.lead))
        got = messages_of(svc, "sliced")
        assert len(got) == 30
        clock.t = shifted - svc.lead
        await svc.step()
        got = messages_of(svc, "sliced")
        assert len(got) == 45
        assert s.store.get_message(got[-1][1]).message.send_at == pytest.approx(shifted)
        r = await c.post("/v1/campaigns/sliced/cancel")
        assert r.json()["state"] == "cancelled"
        st = r.json()["statistics"]
        # 55 rows never expanded, and the 45 queued messages ended NOT_SENT/cancelled
        assert st["not_sent_by_reason"] == {"cancelled": 100}
        assert (st["accepted"], st["not_sent"], st["pending"]) == (45, 100, 0)
        view = s.store.get_message(got[0][1])
        assert (view.state, view.code) == ("NOT_SENT", "cancelled")
        assert (await c.post("/v1/campaigns/sliced/resume")).status_code == 409
        await svc.step()
        assert len(messages_of(svc, "sliced")) == 45


async def test_per_minute_and_recontact_are_handed_to_the_rate_limiter(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/campaigns", json={
            "name": "paced", "from": "Septet", "text": "x", "recontact_hours": 36,
            "shaping": {"per_minute": 300}, "recipients": [{"phone": "+351912345678"}]})
        assert r.status_code == 201
        assert s.campaigns.rules["alpha\x00paced"] == CampaignRules(per_minute=300,
                                                           no_recontact_hours=36)
        assert "alpha\x00paced" in s.campaigns.rules and len(s.campaigns.rules) == 1
        # A fresh service (a restart) rebuilds the same rules from the store.
        assert Campaigns(s.store).rules["alpha\x00paced"] == CampaignRules(per_minute=300,
                                                                 no_recontact_hours=36)


async def test_draft_takes_chunks_then_starts_and_seals(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/campaigns", json={"name": "d", "from": "Septet",
                                                "text": "Hi {first_name}", "draft": True})
        assert r.json()["state"] == "draft"
        csv_body = "phone;first_name\n+351912345678;Ana\n+351912345679;Bo\n"
        r = await c.post("/v1/campaigns/d/recipients", content=csv_body,
                         headers={"content-type": "text/csv"})
        assert r.status_code == 202 and r.json()["recipients"] == 2
        lines = '{"phone": "+351912345670", "first_name": "Cy"}\nnot json\n'
        r = await c.post("/v1/campaigns/d/recipients", content=lines,
                         headers={"content-type": "application/x-ndjson"})
        assert r.json()["recipients"] == 4
        await s.campaigns.step()
        assert messages_of(s.campaigns, "d") == []  # a draft is not expanded
        assert (await c.post("/v1/campaigns/d/start")).json()["state"] == "scheduled"
        r = await c.post("/v1/campaigns/d/recipients", content=csv_body,
                         headers={"content-type": "text/csv"})
        assert r.status_code == 409
        await s.campaigns.step()
        st = (await c.get("/v1/campaigns/d")).json()["statistics"]
        assert (st["accepted"], st["not_sent_by_reason"]) == (3, {"bad_row": 1})


async def test_csv_upload_creates_a_campaign_from_the_query(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        body = "mobile_phone,name\n912345678,Ana\n"
        r = await c.post("/v1/campaigns", params={"name": "q", "from": "Septet",
                                                  "text": "Hi {name}", "per_minute": "60"},
                         content=body, headers={"content-type": "text/csv"})
        assert r.status_code == 201, r.text
        assert r.json()["recipients"] == 1 and r.json()["shaping"]["per_minute"] == 60
        await s.campaigns.step()
        (ref,) = [r for _, r in messages_of(s.campaigns, "q")]
        assert s.store.get_message(ref).message.text == "Hi Ana"


def test_slice_arithmetic() -> None:
    from gateway.campaigns import Campaign

    c = Campaign("n", "a", "S", "t", rows=1000, slice_percent=15, slice_every=1200, anchor=100)
    assert c.slice_size() == 150
    assert c.allowed(99, 0) == (0, 100)
    assert c.allowed(100, 0)[0] == 150
    assert c.allowed(100 + 6 * 1200, 0)[0] == 1000  # the 7th slice holds the last 100
    assert c.slice_send_at(999) == 100 + 6 * 1200
    assert math.ceil(1000 * 0.15) == 150
    assert MSGS == b"campaign_msgs"


async def test_messages_without_a_campaign_are_grouped_per_month(tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/messages", json={"to": "+351912345678", "from": "Septet",
                                               "text": "hi"})
        assert r.status_code == 202, r.text
        msg_id = r.json()["id"]
        expected = time.strftime("API_SMS_%Y_%m", time.gmtime())
        assert s.store.get_message(msg_id).message.campaign == expected


async def test_a_pause_made_by_another_process_reaches_this_limiter_on_the_next_pass(
        tmp_path: Path) -> None:
    async with serve_campaigns(tmp_path / "db") as s, s.client() as c:
        r = await c.post("/v1/campaigns", json={"name": "p", "from": "Septet", "text": "x",
                                                "recipients": [{"phone": "+351912345678"}]})
        assert r.status_code == 201
        other = Campaigns(s.store, s.gateway)  # e.g. another worker over the same store
        assert "alpha\x00p" not in other.rules
        assert (await c.post("/v1/campaigns/p/pause")).status_code == 200
        assert s.campaigns.rules["alpha\x00p"].paused
        await other.step()
        assert other.rules["alpha\x00p"].paused
        assert (await c.post("/v1/campaigns/p/resume")).status_code == 200
        await other.step()
        assert "alpha\x00p" not in other.rules  # no pace, no re-contact, not paused
