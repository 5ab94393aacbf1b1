"""GET /v1/callbacks/dead-letters and POST /v1/callbacks/dead-letters/replay, over a real
server and store, scoped to the calling account."""

from __future__ import annotations

import trio

from actors.messages import MsgId, StatusEvent
from actors.ports import Settlement
from gateway.callback_outbox import CallbackOutbox, list_dead_letters
from tests.gateway.http.conftest import Served


async def _dead(served: Served, account: str, ids: list[str]) -> None:
    outbox = CallbackOutbox(served.store)
    events = [StatusEvent(MsgId(i), account, "SMS_DELIVERED", 1, 10.0, client_ref=f"r-{i}",
                          callback_url="https://hooks.example/x") for i in ids]
    await outbox.enqueue(events, now=10.0)
    due = outbox.due(10.0, limit=100)
    await outbox.settle([Settlement(e, "dead", error="http 410") for e in due
                         if e.event.account == account], now=11.0)


async def test_dead_letters_are_listed_in_pages_for_their_account_only(served: Served) -> None:
    await _dead(served, "alpha", ["A1", "A2", "A3"])
    await _dead(served, "beta", ["B1"])
    async with served.client("alpha") as c:
        r = await c.get("/v1/callbacks/dead-letters", params={"limit": "2"})
        assert r.status_code == 200, r.text
        doc = r.json()
        assert [d["id"] for d in doc["dead_letters"]] == ["A1:1", "A2:1"]
        first = doc["dead_letters"][0]
        assert (first["error"], first["attempts"], first["dead_at"]) == ("http 410", 1, 11.0)
        assert first["event"]["data"]["client_ref"] == "r-A1"
        assert first["event"]["type"] == "SMS_DELIVERED"
        r = await c.get("/v1/callbacks/dead-letters", params={"after": doc["next"]})
        assert [d["id"] for d in r.json()["dead_letters"]] == ["A3:1"]
        assert r.json()["next"] is None
        bad = await c.get("/v1/callbacks/dead-letters", params={"limit": "0", "x": "1"})
        assert bad.status_code == 422
        assert {e["field"] for e in bad.json()["errors"]} == {"query:limit", "query:x"}
    async with served.client("beta") as c:
        r = await c.get("/v1/callbacks/dead-letters")
        assert [d["id"] for d in r.json()["dead_letters"]] == ["B1:1"]
    async with served.client(None) as c:
        assert (await c.get("/v1/callbacks/dead-letters")).status_code == 401


async def test_replay_requeues_only_the_callers_dead_letters(served: Served) -> None:
    await _dead(served, "alpha", ["A1", "A2"])
    await _dead(served, "beta", ["B1"])
    async with served.client("alpha") as c:
        # beta's id is unknown to alpha: ignored, not replayed
        r = await c.post("/v1/callbacks/dead-letters/replay", json={"ids": ["A1:1", "B1:1"]})
        assert r.status_code == 200, r.text
        assert r.json() == {"replayed": 1}
        assert [d.id for d in list_dead_letters(served.store, "alpha")] == ["A2:1"]
        assert [d.id for d in list_dead_letters(served.store, "beta")] == ["B1:1"]
        r = await c.post("/v1/callbacks/dead-letters/replay", json={"ids": "all"})
        assert r.json() == {"replayed": 1}
        assert list_dead_letters(served.store, "alpha") == []
        for body in ({"ids": []}, {"ids": "some"}, {"ids": [1]}, {"idz": "all"}, [1]):
            r = await c.post("/v1/callbacks/dead-letters/replay", json=body)
            assert r.status_code == 422, body
    assert [d.id for d in list_dead_letters(served.store, "beta")] == ["B1:1"]
    pending = CallbackOutbox(served.store).due(trio.current_time() + 1e10, limit=10)
    assert sorted(e.event.msg_id for e in pending) == ["A1", "A2"]  # queued again
