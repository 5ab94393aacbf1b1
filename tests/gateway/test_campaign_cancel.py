"""Cancelling a campaign ends its queued messages like every other NOT_SENT inside Septet: each
gets a persisted ``SMS_NOT_SENT`` event (with its seq) and the notifier receives it, so upstream
learns the messages were not sent. Real running gateway, LMDB in tmp_path, real HTTP server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import trio

import gateway.campaigns  # noqa: F401  (registers the campaign databases before open_store)
from actors.messages import StatusEvent, decode_batch
from actors.shaping import ShapingRules
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import CoreSettings, open_gateway
from gateway.campaigns import Campaigns
from gateway.config import ApiConfig
from gateway.http import HttpServer, ServerLimits
from tests.fakes import ScriptedCarrier


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_cancel_sends_one_sms_not_sent_per_queued_message(tmp_path: Path) -> None:
    from gateway.store import open_store

    got: list[StatusEvent] = []

    async def notifier(inbox: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for batch in inbox:
                got.extend(e for e in decode_batch(batch) if isinstance(e, StatusEvent))

    start = time.time() + 86_400  # the slices open tomorrow: expanded messages wait queued
    clock = Clock(time.time())
    carrier = ScriptedCarrier("pt", lambda _p, _a: "deliver")
    async with open_store(tmp_path / "db") as store, trio.open_nursery() as nursery:
        svc = Campaigns(store, None, now=clock)
        settings = CoreSettings(shaping=ShapingRules(campaigns=svc.rules), receipt_timeout=None)
        async with open_gateway(store, [carrier], settings, notifier=notifier) as gw:
            svc.bind(gw)
            api = create_api(gw, ApiConfig(), campaigns=svc, check_callback=lambda u: u,
                             now=clock)
            key = await AccountBook(store).create(Account("alpha", default_prefix="351"))
            port = await nursery.start(HttpServer(api, ServerLimits()).serve, "127.0.0.1", 0)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         headers={"authorization": f"Bearer {key}"}) as c:
                r = await c.post("/v1/campaigns", json={
                    "name": "later", "from": "Septet", "text": "Hi {n}", "send_at": start,
                    "shaping": {"slice_percent": 20, "slice_every_minutes": 60},
                    "recipients": [{"phone": f"+3519123{i:05d}", "n": str(i)}
                                   for i in range(50)]})
                assert r.status_code == 201
                clock.t = start - svc.lead
                await svc.step()
                ids = [ref for _, _, ref in svc.rows("alpha", "later") if ref]
                assert len(ids) == 10  # slice 0 expanded, the rest never will be
                assert {str(store.get_message(i).state) for i in ids} == {"ACCEPTED"}
                assert got == []

                r = await c.post("/v1/campaigns/later/cancel")
                assert r.json()["state"] == "cancelled"
                with trio.fail_after(10):
                    while len(got) < len(ids):
                        await trio.sleep(0.01)
                await trio.sleep(0.05)  # nothing more arrives

                assert sorted(e.msg_id for e in got) == sorted(ids)  # one event per message
                for e in got:
                    assert (e.event, e.error_code, e.campaign, e.account) == (
                        "SMS_NOT_SENT", "cancelled", "later", "alpha")
                for i in ids:
                    view = store.get_message(i)
                    assert (str(view.state), view.code) == ("NOT_SENT", "cancelled")
                    assert [e.event for e in view.events] == ["SMS_NOT_SENT"]
                    doc = (await c.get(f"/v1/messages/{i}")).json()
                    assert "SMS_NOT_SENT" in str(doc)
                seqs = {e.msg_id: e.seq for e in got}
                assert all(seqs[i] == store.get_message(i).events[-1].seq for i in ids)
                st = (await c.get("/v1/campaigns/later")).json()["statistics"]
                assert st["not_sent_by_reason"] == {"cancelled": 50}
            nursery.cancel_scope.cancel()
