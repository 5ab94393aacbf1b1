"""``Gateway.cancel``: a message no carrier has seen ends NOT_SENT ``cancelled`` once the call
returns, upstream hears it, and the message never reaches the carrier; one a carrier has (or
may have) seen is left to its receipts.

Real actors, a real LMDB file, the scripted carrier, virtual time.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio
import trio.testing

from actors import messages as m
from gateway import _store_pipeline as sp
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.e2e._sent import now
from tests.fakes import ScriptedCarrier


class Events:
    """A notifier keeping every StatusEvent it receives."""

    def __init__(self) -> None:
        self.got: list[m.StatusEvent] = []

    async def notifier(self, inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                self.got.extend(m.decode_batch_of(m.StatusEvent, item))

    def of(self, msg_id: str) -> list[tuple[str, str]]:
        return [(e.event, e.error_code) for e in self.got if e.msg_id == msg_id]


def _message(i: int, send_at: float = 0.0) -> m.Message:
    return m.Message(m.MsgId(""), "acme", f"+3519123{i:05d}", "Clinic",
                     "Reminder: your appointment is tomorrow at 10:00", "transliterate", now(),
                     send_at=send_at)


async def test_a_scheduled_reminder_is_cancelled_and_never_sent(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    events = Events()
    carrier = ScriptedCarrier("c1", now=now)
    settings = CoreSettings(receipt_timeout=None)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        async with open_gateway(store, [carrier], settings, notifier=events.notifier,
                                now=now) as gw:
            later, keep = await gw.accept([_message(1, now() + 3600), _message(2, now() + 3600)])
            await gw.cancel([later])
            # committed when cancel returns, and its event handed to the notifier
            view = store.get_message(later)
            assert (str(view.state), view.code) == ("NOT_SENT", "cancelled")
            await trio.testing.wait_all_tasks_blocked()  # the notifier takes what it was handed
            assert events.of(later) == [("SMS_NOT_SENT", "cancelled")]
            assert store.entries(b"outbox") == 1  # only the other reminder waits

            await gw.cancel([later])  # again: nothing changes, no second event
            assert events.of(later) == [("SMS_NOT_SENT", "cancelled")]

            await trio.sleep(3700)  # past send_at: the other one goes, the cancelled one not
            assert carrier.submitted == {(keep, 1): 1}
            assert str(store.get_message(keep).state) == "DELIVERED"
        assert str(store.get_message(later).state) == "NOT_SENT"
        assert store.entries(b"outbox") == 0


async def test_a_delivered_message_is_left_as_it_is(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    events = Events()
    carrier = ScriptedCarrier("c1", now=now)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            open_gateway(store, [carrier], CoreSettings(receipt_timeout=None),
                         notifier=events.notifier, now=now) as gw:
        [sent] = await gw.accept([_message(3)])
        with trio.fail_after(10):
            while str(store.get_message(sent).state) != "DELIVERED":
                await trio.sleep(0.05)
        await gw.cancel([sent, "no-such-id"])
        assert str(store.get_message(sent).state) == "DELIVERED"
        assert [e for e, _ in events.of(sent)] == ["SMS_SENT", "SMS_DELIVERED"]


async def test_cancel_on_a_stopped_gateway_writes_directly(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    carrier = ScriptedCarrier("c1", now=now)
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        async with open_gateway(store, [carrier], CoreSettings(receipt_timeout=None),
                                now=now) as gw:
            [later] = await gw.accept([_message(4, now() + 3600)])
        await gw.cancel([later])  # after shutdown: applied to the store, no notifier
        view = store.get_message(later)
        assert (str(view.state), view.code) == ("NOT_SENT", "cancelled")
        assert store.entries(b"outbox") == 0


async def test_not_sent_is_refused_once_a_part_was_handed_to_a_carrier(tmp_path: Path) -> None:
    """The store's rule behind cancel (and a campaign's cancel, and a late expiry): NOT_SENT
    means no part reached a carrier, so it is refused for a part SUBMITTING or further."""
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        t = now()
        msgs = [m.Message(m.MsgId(f"m{i}"), "acme", f"+35191234567{i}", "S", "hi",
                          "transliterate", t) for i in range(3)]
        await store.write(lambda txn: sp.op_accept(txn, store, msgs, None))
        # m0: untouched; m1: being submitted; m2: at the carrier
        await store.write(lambda txn: sp.op_mark_submitting(txn, store, [
            m.SubmitPart(m.MsgId(x), 1, 1, "+351912345670", "S", 0, b"", b"hi", 1, "acme")
            for x in ("m1", "m2")], t))
        await store.write(lambda txn: sp.op_apply(txn, store, [
            m.PartSubmitted(m.MsgId("m2"), 1, 1, "c1", "42", t)], t, None))
        cancel = [m.MessageFinished(m.MsgId(f"m{i}"), "NOT_SENT", "cancelled", "by client", t)
                  for i in range(3)]
        applied = await store.write(lambda txn: sp.op_apply(txn, store, cancel, t, None))
        assert [(e[2], e[4]) for e in applied.event_rows] == [("m0", "SMS_NOT_SENT")]
        assert applied.released == ["m0"]
        assert applied.ignored == 2
        assert [str(store.get_message(f"m{i}").state) for i in range(3)] == [
            "NOT_SENT", "SUBMITTING", "SENT"]


async def test_cancel_through_the_writer_process(tmp_path: Path) -> None:
    """The finishes and the CommitWaiter mark cross to the writer process like any batch."""
    from tests.gateway.test_store_process import process_pipeline

    events = Events()
    carrier = ScriptedCarrier("c1")
    async with process_pipeline(tmp_path / "db") as (store, pipe), \
            open_gateway(store, [carrier], CoreSettings(receipt_timeout=None),
                         notifier=events.notifier, pipeline=pipe) as gw:
        later = await gw.accept([_message(i, time.time() + 3600) for i in range(5)])
        with trio.fail_after(10):
            await gw.cancel(later[:3])
        assert [str(store.get_message(i).state) for i in later] == ["NOT_SENT"] * 3 + [
            "ACCEPTED"] * 2
        assert store.entries(b"outbox") == 2
        assert carrier.submitted == {}
