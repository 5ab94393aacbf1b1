"""Tenant isolation through the whole gateway: two accounts, ``alpha`` and ``beta``, each with
messages, a template, a campaign and a callback receiver. Every read endpoint, export and
callback is checked from both sides: the other account's ids answer 404 (never 403, which
would confirm they exist), and nothing of one account appears in the other's search, CSV
export, campaign list or export, or callbacks.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import trio

from tests.reliability.stack import all_final, start_stack, submit, until

MARK = {"alpha": "ALPHA-SECRET", "beta": "BETA-SECRET"}


async def test_every_read_endpoint_export_and_callback_keeps_accounts_apart(
        tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path)
        ids: dict[str, list[str]] = {}
        campaigns: dict[str, str] = {}
        for acct in ("alpha", "beta"):
            async with stack.client(acct) as c:
                ids[acct] = await submit(c, 20, tag=MARK[acct], client_ref=f"ref-{acct}",
                                         campaign=f"c-{acct}")
                r = await c.post("/v1/templates", json={"name": f"t-{acct}",
                                                        "text": f"{MARK[acct]} {{name}}"})
                assert r.status_code in (200, 201), r.text
                r = await c.post("/v1/campaigns", json={
                    "name": f"camp-{acct}", "from": "Septet", "template": f"t-{acct}",
                    "recipients": [{"phone": f"+3519130000{i:02d}", "name": acct}
                                   for i in range(5)]})
                assert r.status_code in (200, 201, 202), r.text
                campaigns[acct] = r.json().get("id") or r.json()["name"]
                await all_final(c, ids[acct], timeout=30)

        for me, other in (("alpha", "beta"), ("beta", "alpha")):
            async with stack.client(me) as c:
                # ids of the other account: 404 on every route that takes one
                for msg_id in ids[other][:3]:
                    r = await c.get(f"/v1/messages/{msg_id}")
                    assert r.status_code == 404, r.text
                    assert MARK[other] not in r.text
                for path in (f"/v1/templates/t-{other}", f"/v1/campaigns/{campaigns[other]}",
                             f"/v1/campaigns/{campaigns[other]}/messages.csv"):
                    r = await c.get(path)
                    assert r.status_code == 404, (path, r.status_code, r.text[:200])
                for action in ("start", "pause", "resume", "cancel"):
                    r = await c.post(f"/v1/campaigns/{campaigns[other]}/{action}")
                    assert r.status_code == 404, (action, r.status_code, r.text[:200])
                r = await c.post(f"/v1/campaigns/{campaigns[other]}/recipients",
                                 json=[{"phone": "+351913000099"}])
                assert r.status_code == 404, r.text[:200]
                r = await c.post(f"/v1/templates/t-{other}/preview", json={"fields": {}})
                assert r.status_code == 404, r.text[:200]
                r = await c.delete(f"/v1/templates/t-{other}")
                assert r.status_code == 404, r.text[:200]
                # a template of the other account cannot seed a campaign
                r = await c.post("/v1/campaigns", json={"from": "Septet",
                                                        "template": f"t-{other}"})
                assert r.status_code in (404, 422), r.text[:200]
                # own reads hold only own data
                r = await c.get("/v1/account")
                assert r.json()["name"] == me and other not in r.text
                search = await c.get("/v1/messages", params={"limit": "1000"})
                found = {m["id"] for m in search.json()["messages"]}
                assert set(ids[me]) <= found and not found & set(ids[other])
                assert MARK[other] not in search.text and f"ref-{other}" not in search.text
                for params in ({"campaign": f"c-{other}"}, {"q": MARK[other]},
                               {"to": "+351910000001"}, {"status": "DELIVERED"}):
                    r = await c.get("/v1/messages", params=params)
                    assert r.status_code == 200
                    assert not {m["id"] for m in r.json()["messages"]} & set(ids[other])
                exported = await c.get("/v1/messages", headers={"accept": "text/csv"})
                assert exported.status_code == 200
                rows = list(csv.DictReader(io.StringIO(exported.text)))
                assert {row["id"] for row in rows} >= set(ids[me])
                assert MARK[other] not in exported.text
                listed = await c.get("/v1/templates")
                assert f"t-{other}" not in listed.text and f"t-{me}" in listed.text
                listed = await c.get("/v1/campaigns")
                assert f"camp-{other}" not in listed.text and f"camp-{me}" in listed.text
                own = await c.get(f"/v1/campaigns/{campaigns[me]}/messages.csv")
                assert own.status_code == 200 and MARK[other] not in own.text

        # callbacks: each receiver gets its own account's events, every one of them
        for acct in ("alpha", "beta"):
            rx = stack.receivers[acct]
            await until(lambda rx=rx, acct=acct: {e["data"]["message_id"]
                                                  for e in rx.events()} >= set(ids[acct]),
                        timeout=30)
        nursery.cancel_scope.cancel()
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        bodies = b"".join(stack.receivers[me].bodies)
        assert MARK[other].encode() not in bodies
        assert not any(i.encode() in bodies for i in ids[other])
        assert f"ref-{other}".encode() not in bodies
