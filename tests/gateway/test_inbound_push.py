"""MO pushed to the account's webhook (``SMS_RECEIVED``) through the status callbacks' outbox,
notifier and sender: simulator MO -> SmppCarrier -> LMDB (message and push in one write) ->
signed POST to a receiver on 127.0.0.1; retries then a dead letter; a restart delivers once.
Real sockets, real LMDB files, real (short) time."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from actors import notifier
from actors.callbacks_policy import RetryPolicy
from actors.messages import SubmitPart
from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from adapters.smpp.client import SmppCarrier
from adapters.smpp.inbound import InboundPart
from bench.callbacks import Receiver, serve_receiver
from gateway.accounts import DB as ACCOUNTS
from gateway.accounts import Account, AccountBook
from gateway.api.inbound import received_reader
from gateway.callback_outbox import CallbackOutbox, list_dead_letters, replay_dead_letters
from gateway.callbacks import RECEIVED, endpoint_resolver, open_callback_sender, verify
from gateway.cli import _account_endpoints
from gateway.inbound import InboundBook, Router
from gateway.store import Store, open_store

OURS = "+351912000000"
HANDSET = "+351910000000"
SECRET = "mo-secret"
FAST = RetryPolicy(initial_delay=0.02, max_delay=0.05, max_age=0.4, request_timeout=1.0,
                   breaker_failures=1000, poll_interval=0.02, drain_timeout=0.1)


def part(text: str = "hi", *, to: str = OURS) -> InboundPart:
    return InboundPart("sim", HANDSET, to, text, time.time(), "gsm7")


def inbound_book(store: Store) -> tuple[InboundBook, CallbackOutbox, Any]:
    accounts = AccountBook(store)
    endpoint_for = endpoint_resolver(partial(_account_endpoints, accounts),
                                     version=lambda: accounts.version)
    outbox = CallbackOutbox(store)
    book = InboundBook(store, Router({OURS: "alpha", "4000": "quiet"}), outbox=outbox,
                       endpoint_for=endpoint_for)
    return book, outbox, endpoint_for


@asynccontextmanager
async def running_notifier(store: Store, book: InboundBook, outbox: CallbackOutbox,
                           endpoint_for: Any, policy: RetryPolicy = FAST
                           ) -> AsyncIterator[notifier.NotifierStats]:
    stats = notifier.NotifierStats()
    async with open_callback_sender(allow_loopback=True, received=received_reader(book)) \
            as sender, trio.open_nursery() as nursery:
        send, recv = trio.open_memory_channel[bytes](0)
        await nursery.start(partial(notifier.run, recv, outbox=outbox, sender=sender,
                                    policy=policy, endpoint_for=endpoint_for, stats=stats,
                                    doorbell=outbox.doorbell))  # as gateway.cli wires it
        async with send:
            yield stats
        nursery.cancel_scope.cancel()


async def until(check: Callable[[], bool], timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.005)  # polling a counter, not timing logic


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.requests]


async def test_simulator_mo_is_pushed_signed_to_the_account_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    sim = SimulatorStats()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False) as store:
            await AccountBook(store).create(Account(
                "alpha", callback_url=f"http://127.0.0.1:{port}/status",
                callback_secret=SECRET, inbound_url=f"http://127.0.0.1:{port}/mo"))
            book, outbox, endpoint_for = inbound_book(store)
            async with running_notifier(store, book, outbox, endpoint_for) as stats:
                smsc = await nursery.start(partial(serve_simulator, SimulatorConfig(
                    mo_reply="Olá {€}", receipts=False), stats=sim))
                carrier = SmppCarrier("sim", "127.0.0.1", smsc, "septet", "pw",
                                      inbound=book.sink, reconnect_min=0.01)
                await nursery.start(carrier.run, _no_receipts)
                await until(lambda: carrier.ready)
                hello = SubmitPart("m1", 1, 1, HANDSET, OURS, 0, b"", b"hello", 0)  # type: ignore[arg-type]
                assert (await carrier.submit_many([hello]))[0].ok
                await until(lambda: stats.delivered >= 1)
            assert outbox.pending_count() == 0
        nursery.cancel_scope.cancel()
    [request] = receiver.requests
    assert request.path == "/mo"  # inbound_url wins over callback_url for MO
    assert verify(SECRET.encode(), request.headers, request.body, now=time.time())
    assert request.headers["webhook-id"] == "msg_mo-0000000000000001_1"
    body = json.loads(request.body)
    assert body["type"] == RECEIVED and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "id": "0000000000000001", "account": "alpha", "from": HANDSET, "to": OURS,
        "text": "Olá {€}", "received_at": body["data"]["received_at"], "connector": "sim",
        "encoding": body["data"]["encoding"], "parts": 1}
    assert sim.mo_acked == 1


async def _no_receipts(_: Any) -> None:
    pass


async def test_a_receiver_down_is_retried_then_dead_lettered_and_replayed(tmp_path: Path
                                                                          ) -> None:
    answers = [503]
    receiver = Receiver(respond=lambda n: answers[0])
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False) as store:
            await AccountBook(store).create(Account(
                "alpha", callback_url=f"http://127.0.0.1:{port}/hook", callback_secret=SECRET))
            book, outbox, endpoint_for = inbound_book(store)
            # retries for 1.5 s (not FAST's 0.4): a loaded CI machine still fits several in
            async with running_notifier(store, book, outbox, endpoint_for,
                                        replace(FAST, max_age=1.5)) as stats:
                await book.sink([part("call me")])
                await until(lambda: stats.dead == 1)
                dead = list_dead_letters(store, "alpha")
                assert outbox.pending_count() == 0
                failed = len(receiver.requests)
                answers[0] = 200  # the receiver is back; the operator replays
                assert await replay_dead_letters(store, "alpha", "all") == 1
                await until(lambda: stats.delivered == 1)
            assert list_dead_letters(store, "alpha") == [] and outbox.pending_count() == 0
        nursery.cancel_scope.cancel()
    assert stats.retried >= 2 and failed == stats.retried + 1, (stats.retried, failed)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {"msg_mo-0000000000000001_1"}
    assert json.loads(receiver.requests[-1].body)["data"]["text"] == "call me"
    [letter] = dead
    assert letter.id == "mo-0000000000000001:1" and letter.event.event == RECEIVED
    assert "retries exhausted" in letter.error


async def test_a_push_goes_out_at_once_not_at_the_next_poll(tmp_path: Path) -> None:
    receiver = Receiver()
    idle = RetryPolicy(poll_interval=30.0, request_timeout=1.0, drain_timeout=0.1)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False) as store:
            await AccountBook(store).create(Account(
                "alpha", callback_url=f"http://127.0.0.1:{port}/hook", callback_secret=SECRET))
            book, outbox, endpoint_for = inbound_book(store)
            async with running_notifier(store, book, outbox, endpoint_for, idle) as stats:
                await trio.sleep(0.05)  # the notifier has read the empty outbox and sleeps 30 s
                await book.sink([part("now")])
                await until(lambda: stats.delivered == 1, timeout=5)  # the doorbell woke it
        nursery.cancel_scope.cancel()
    assert [b["data"]["text"] for b in bodies(receiver)] == ["now"]


async def test_a_push_stored_before_a_restart_is_delivered_once_after_it(tmp_path: Path) -> None:
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_receiver, receiver)
        async with open_store(tmp_path / "db", sync=False) as store:
            await AccountBook(store).create(Account(
                "alpha", callback_url=f"http://127.0.0.1:{port}/hook", callback_secret=SECRET))
            book, outbox, _ = inbound_book(store)
            await book.sink([part("one"), part("two"), part("nobody", to="4000")])
            assert outbox.pending_count() == 2 and book.pushed == 2  # "quiet" has no URL
        for _run in range(2):  # the process restarts, twice
            async with open_store(tmp_path / "db", sync=False) as store:
                book, outbox, endpoint_for = inbound_book(store)
                async with running_notifier(store, book, outbox, endpoint_for) as stats:
                    await until(partial(lambda o: o.pending_count() == 0, outbox))
                    # the run polls every 20 ms: 5 polls would have sent anything left twice
                    await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    # two requests in flight at once: no order between messages, each exactly once
    assert sorted(b["data"]["text"] for b in bodies(receiver)) == ["one", "two"]
    assert stats.delivered == 0  # the second run found nothing left


async def test_no_url_no_push_and_an_old_account_record_reads(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        old = msgpack.packb([1, "", "transliterate", 5, "", "", 1.0])  # before inbound_url
        await store.write(lambda txn: txn.put(b"a:alpha", old, db=store.db(ACCOUNTS)))
        assert AccountBook(store).get("alpha") == Account("alpha", created_at=1.0)
        book, outbox, _ = inbound_book(store)
        await book.sink([part()])
        assert outbox.pending_count() == 0 and book.pushed == 0 and book.stored == 1


def test_the_inbound_url_applies_to_mo_only() -> None:
    from gateway.callbacks import inbound_event

    def settings(name: str) -> tuple[str, str, str]:
        return ("https://a.example/status", "s", "https://a.example/mo" if name == "a" else "")

    endpoint_for = endpoint_resolver(settings)
    status = inbound_event("mo-1", "a", 1.0, "sim")._replace(event="SMS_SENT")
    assert endpoint_for(inbound_event("mo-1", "a", 1.0, "sim")) == ("https://a.example/mo", b"s")
    assert endpoint_for(status) == ("https://a.example/status", b"s")
    assert endpoint_for(inbound_event("mo-1", "b", 1.0, "sim")) == ("https://a.example/status",
                                                                    b"s")


async def test_a_push_whose_message_is_gone_is_a_permanent_failure(tmp_path: Path) -> None:
    from gateway.callbacks import inbound_event

    async with open_store(tmp_path / "db", sync=False) as store, \
            open_callback_sender(allow_loopback=True,
                                 received=received_reader(InboundBook(store))) as sender:
        result = await sender.send("http://127.0.0.1:9/x", b"k",
                                   [inbound_event("mo-0000000000000009", "alpha", 1.0, "sim")])
    assert not result.ok and result.permanent and "no longer stored" in result.error


@pytest.mark.parametrize("url", ["ftp://x.example/", "not a url"])
async def test_an_invalid_inbound_url_is_refused(tmp_path: Path, url: str) -> None:
    from gateway.errors import AccountError

    async with open_store(tmp_path / "db", sync=False) as store:
        with pytest.raises(AccountError, match="inbound_url"):
            await AccountBook(store).create(Account("alpha", inbound_url=url))


def test_septet_accounts_set_inbound_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from gateway import cli

    monkeypatch.setenv("SEPTET_STORE__PATH", str(tmp_path / "db"))
    assert cli.main(["accounts", "create", "shop"]) == 0
    capsys.readouterr()
    assert cli.main(["accounts", "set", "shop", "--inbound-url", "https://crm.example/mo"]) == 0
    assert json.loads(capsys.readouterr().out)["inbound_url"] == "https://crm.example/mo"
    assert cli.main(["accounts", "set", "shop", "--inbound-url", "gopher://x"]) == 1
    assert "inbound_url" in capsys.readouterr().err
    assert cli.main(["accounts", "set", "shop", "--inbound-url", ""]) == 0
    assert json.loads(capsys.readouterr().out)["inbound_url"] == ""


async def test_get_inbound_takes_the_api_page_settings_and_is_documented(tmp_path: Path) -> None:
    from gateway.api._factory import create_api
    from gateway.api.openapi import document
    from gateway.api.problems import Problem
    from gateway.api.routes import ROUTES
    from gateway.config import ApiConfig
    from gateway.http import Request

    async with open_store(tmp_path / "db", sync=False) as store:
        book = InboundBook(store, Router({OURS: "alpha"}))
        await book.sink([part(str(i)) for i in range(5)])

        class Gateway:
            pass

        gw = Gateway()
        gw.store = store  # type: ignore[attr-defined]
        api = create_api(gw, ApiConfig(page_size=2, max_page_size=3, max_scan=4))
        assert api.inbound is not None
        alpha = Account("alpha")

        async def get(query: str) -> Any:
            answer = await api.inbound.list(  # type: ignore[union-attr]
                Request("GET", "/v1/inbound", {}, b"", True, query=query), alpha)
            assert answer.status == 200
            return json.loads(answer.body)

        doc = await get("")
        assert [m["text"] for m in doc["messages"]] == ["0", "1"]  # page_size
        doc = await get("limit=3&cursor=" + doc["next_cursor"])
        assert [m["text"] for m in doc["messages"]] == ["2", "3", "4"]
        with pytest.raises(Problem, match="from 1 to 3"):  # over max_page_size
            await get("limit=4")
    op = document(ROUTES)["paths"]["/v1/inbound"]["get"]
    assert {p["name"] for p in op["parameters"]} == {"cursor", "limit", "since", "to", "from"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InboundPage")
