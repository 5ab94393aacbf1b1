"""POST /v1/messages/{id}/cancel and POST /v1/messages/cancel over the whole stack: a running
gateway (actors, ScriptedCarrier, notifier with the callback outbox and the httpx sender), a
real LMDB in tmp_path, the real HTTP server and a callback receiver on 127.0.0.1.

Time is trio's MockClock (autojump): the gateway's wall clock is ``BASE + trio.current_time()``
and the store writes on the event loop (``threaded=False``), so a ``send_at`` an hour ahead
comes due when the test jumps the clock, with no real waiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgpack
import trio
import trio.testing

from actors import notifier
from actors.callbacks_policy import RetryPolicy
from actors.errors import StoreError
from bench.callbacks import Receiver, serve_receiver
from gateway.accounts import Account, AccountBook
from gateway.api import create_api
from gateway.app import CoreSettings, Gateway, open_gateway
from gateway.callback_outbox import CallbackOutbox
from gateway.callbacks import endpoint_resolver, open_callback_sender
from gateway.config import ApiConfig
from gateway.errors import Saturated
from gateway.http import HttpServer, ServerLimits
from gateway.store import open_store
from tests.fakes import ScriptedCarrier, always

BASE = 1_795_000_000.0  # 2026-11-18 (the keys' inactivity clock and send_at read this + trio time)
HOUR = 3600.0


@dataclass
class Stack:
    """What the tests talk to."""

    url: str
    keys: dict[str, str]
    gateway: Gateway
    carrier: ScriptedCarrier
    receiver: Receiver
    store: Any
    now: Callable[[], float]

    def client(self, account: str = "alpha") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers={"authorization": f"Bearer {self.keys[account]}"})

    def callbacks(self) -> list[dict[str, Any]]:
        """Every status callback the receiver answered, as their JSON objects."""
        out: list[dict[str, Any]] = []
        for request in self.receiver.requests:
            body = json.loads(request.body)
            out += body if isinstance(body, list) else [body]
        return out


@asynccontextmanager
async def open_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    def now() -> float:
        return BASE + trio.current_time()

    receiver = Receiver()
    async with trio.open_nursery() as outer:
        hook = await outer.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
                open_callback_sender(allow_loopback=True) as sender:
            book = AccountBook(store, now=now)
            keys = {"alpha": await book.create(Account(
                        "alpha", default_prefix="351", callback_url=f"http://127.0.0.1:{hook}/h",
                        callback_secret="whsec_cancel-tests")),
                    "beta": await book.create(Account("beta", default_prefix="351"))}

            def settings(name: str) -> tuple[str, str] | None:
                a = book.get(name)
                return None if a is None else (a.callback_url, a.callback_secret)

            run_notifier = partial(notifier.run, outbox=CallbackOutbox(store), sender=sender,
                                   policy=RetryPolicy(), endpoint_for=endpoint_resolver(settings),
                                   now=now)
            carrier = ScriptedCarrier("pt", always("deliver"), now=now)
            async with open_gateway(store, [carrier], CoreSettings(receipt_timeout=None),
                                    notifier=run_notifier, now=now) as gw, \
                    trio.open_nursery() as http:
                api = create_api(gw, ApiConfig(), check_callback=lambda u: u, now=now)
                # keep-alive outlives the clock jumps (a connection closed at the jump's
                # instant would race the client's next request on it)
                limits = ServerLimits(idle_timeout=10 * HOUR)
                port = await http.start(HttpServer(api, limits).serve, "127.0.0.1", 0)
                yield Stack(f"http://127.0.0.1:{port}", keys, gw, carrier, receiver, store, now)
                http.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def submit(c: httpx.AsyncClient, to: str, **extra: Any) -> str:
    r = await c.post("/v1/messages", json={"to": to, "from": "Clinic", "text": "See you", **extra})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def wait_state(c: httpx.AsyncClient, msg_id: str, state: str) -> dict[str, Any]:
    with trio.fail_after(120):
        while True:
            doc: dict[str, Any] = (await c.get(f"/v1/messages/{msg_id}")).json()
            if doc["state"] == state:
                return doc
            await trio.sleep(0.05)


async def test_a_scheduled_reminder_is_cancelled_never_sent_and_the_client_is_told(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client() as c:
        later = s.now() + HOUR
        reminder = await submit(c, "+351912000001", send_at=later, client_ref="appt-7")
        control = await submit(c, "+351912000002", send_at=later)
        await trio.sleep(1)  # both taken in by the pipeline, waiting for their send_at

        r = await c.post(f"/v1/messages/{reminder}/cancel")
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc == (await c.get(f"/v1/messages/{reminder}")).json()  # GET's document
        assert (doc["id"], doc["state"], doc["code"]) == (reminder, "NOT_SENT", "cancelled")
        assert [e["event"] for e in doc["events"]] == ["SMS_NOT_SENT"]
        assert doc["events"][-1]["code"] == "cancelled"

        again = await c.post(f"/v1/messages/{reminder}/cancel")  # idempotent: same answer
        assert again.status_code == 200 and again.json() == doc

        with trio.fail_after(60):  # the status callback goes upstream
            while not any(cb["data"]["message_id"] == reminder for cb in s.callbacks()):
                await trio.sleep(0.05)
        [cb] = [cb for cb in s.callbacks() if cb["data"]["message_id"] == reminder]
        assert (cb["type"], cb["data"]["error_code"], cb["data"]["client_ref"]) == (
            "SMS_NOT_SENT", "cancelled", "appt-7")
        assert cb["data"]["sequence"] == doc["events"][-1]["seq"]

        autojump_clock.jump(HOUR + 5)  # past both send_at: the control goes, the reminder not
        delivered = await wait_state(c, control, "DELIVERED")
        assert [e["event"] for e in delivered["events"]] == ["SMS_SENT", "SMS_DELIVERED"]
        await trio.sleep(60)
        assert (control, 1) in s.carrier.attempts
        assert not any(msg_id == reminder for msg_id, _ in s.carrier.attempts)
        assert (await c.get(f"/v1/messages/{reminder}")).json() == doc
        assert [cb["type"] for cb in s.callbacks() if cb["data"]["message_id"] == reminder] \
            == ["SMS_NOT_SENT"]  # cancelling twice sent one callback

        late = await c.post(f"/v1/messages/{control}/cancel")
        assert late.status_code == 409
        assert late.headers["content-type"] == "application/problem+json"
        problem = late.json()
        assert (problem["type"], problem["status"]) == ("urn:septet:problem:cancel-too-late", 409)
        assert (problem["id"], problem["state"], problem["code"]) == (control, "DELIVERED", None)
        assert "delivered" in problem["detail"]
        assert (await wait_state(c, control, "DELIVERED"))["events"] == delivered["events"]


async def test_another_accounts_message_is_not_found_and_left_alone(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client("beta") as beta, s.client() as alpha:
        theirs = await submit(beta, "+351912000003", send_at=s.now() + HOUR)
        r = await alpha.post(f"/v1/messages/{theirs}/cancel")
        read = await alpha.get(f"/v1/messages/{theirs}")
        assert r.status_code == read.status_code == 404
        assert r.json() == read.json()  # word for word what GET answers
        unknown = await alpha.post("/v1/messages/01ZZZZZZZZZZZZZZZZ/cancel")
        assert unknown.status_code == 404
        assert (await beta.get(f"/v1/messages/{theirs}")).json()["state"] in ("ACCEPTED",
                                                                               "QUEUED")
        no_key = await httpx.AsyncClient(base_url=s.url).post(f"/v1/messages/{theirs}/cancel")
        assert no_key.status_code == 401


async def test_a_message_not_sent_for_another_reason_is_too_late(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client() as c:
        assert (await c.put("/v1/optouts/+351912000009")).status_code == 201
        opted = await submit(c, "+351912000009")
        await wait_state(c, opted, "NOT_SENT")
        r = await c.post(f"/v1/messages/{opted}/cancel")
        assert r.status_code == 409
        assert (r.json()["state"], r.json()["code"]) == ("NOT_SENT", "opted_out")


async def test_bulk_cancel_answers_each_id_in_order_with_one_gateway_call(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client() as c, s.client("beta") as beta:
        later = s.now() + HOUR
        a1 = await submit(c, "+351912000011", send_at=later)
        a2 = await submit(c, "+351912000012", send_at=later)
        keep = await submit(c, "+351912000013", send_at=later)
        sent = await submit(c, "+351912000014")
        theirs = await submit(beta, "+351912000015", send_at=later)
        await wait_state(c, sent, "DELIVERED")

        calls: list[list[str]] = []
        real = s.gateway.cancel

        async def recording(msg_ids: Any, **kw: Any) -> None:
            calls.append(list(msg_ids))
            await real(msg_ids, **kw)

        s.gateway.cancel = recording  # type: ignore[method-assign]
        ids = [a1, sent, theirs, "nope", a2, a1, "x" * 100]
        r = await c.post("/v1/messages/cancel", json={"ids": ids})
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        assert [x["id"] for x in got] == ids
        assert [(x["outcome"], x["state"], x["code"]) for x in got] == [
            ("cancelled", "NOT_SENT", "cancelled"), ("too_late", "DELIVERED", None),
            ("not_found", None, None), ("not_found", None, None),
            ("cancelled", "NOT_SENT", "cancelled"), ("cancelled", "NOT_SENT", "cancelled"),
            ("not_found", None, None)]
        assert calls == [[a1, a2]]  # one call; the final and the foreign ids never passed on
        assert (await beta.get(f"/v1/messages/{theirs}")).json()["state"] != "NOT_SENT"
        assert (await c.get(f"/v1/messages/{keep}")).json()["state"] != "NOT_SENT"

        again = await c.post("/v1/messages/cancel", content=msgpack.packb({"ids": [a1, keep]}),
                             headers={"content-type": "application/msgpack"})
        assert again.headers["content-type"] == "application/msgpack"
        assert [x["outcome"] for x in msgpack.unpackb(again.content)["results"]] == [
            "cancelled", "cancelled"]
        assert calls[-1] == [keep]  # a1 is final: only keep was still open

        metrics = (await c.get("/metrics")).text
        assert 'septet_api_cancels_total{outcome="not_found"}' in metrics


async def test_bulk_cancel_refuses_bad_bodies_naming_the_field(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client() as c:
        async def refused(body: Any, status: int = 422) -> list[str]:
            if isinstance(body, bytes):
                r = await c.post("/v1/messages/cancel", content=body,
                                 headers={"content-type": "application/json"})
            else:
                r = await c.post("/v1/messages/cancel", json=body)
            assert r.status_code == status, (body, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            return [e["field"] for e in r.json()["errors"]]

        assert await refused(b'{"ids": [', 400) == ["body"]
        assert await refused(b'{"ids": [], "ids": ["a"]}', 400) == ["ids"]  # duplicate key
        assert await refused(["a"]) == ["body"]
        assert await refused({}) == ["ids"]
        assert await refused({"ids": "01M87TCGPE31F1ZG5D"}) == ["ids"]
        assert await refused({"ids": []}) == ["ids"]
        assert await refused({"ids": ["a"] * 1001}) == ["ids"]
        assert await refused({"ids": ["a", "b", "c", 3, None]}) == ["ids[3]", "ids[4]"]
        assert await refused({"ids": ["a"], "reason": "x"}) == ["reason"]
        r = await c.post("/v1/messages/cancel", content=b"ids=a",
                         headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert (await c.post("/v1/messages/cancel", json={"ids": ["a"] * 1000})).status_code == 200


async def test_a_store_that_cannot_commit_or_a_saturated_gateway_is_a_503(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    async with open_stack(tmp_path) as s, s.client() as c:
        msg_id = await submit(c, "+351912000021", send_at=s.now() + HOUR)
        failure: list[Exception] = [StoreError("disk full")]

        async def failing(msg_ids: Any, **kw: Any) -> None:
            raise failure[0]

        s.gateway.cancel = failing  # type: ignore[method-assign]
        for exc in (StoreError("disk full"), Saturated(7.0, "shutting down")):
            failure[0] = exc
            one = await c.post(f"/v1/messages/{msg_id}/cancel")
            many = await c.post("/v1/messages/cancel", json={"ids": [msg_id]})
            for r in (one, many):
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == ("7" if isinstance(exc, Saturated) else "1")
                assert r.headers["content-type"] == "application/problem+json"
        assert (await c.get(f"/v1/messages/{msg_id}")).json()["state"] != "NOT_SENT"
