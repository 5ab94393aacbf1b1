"""Gateway lifecycle: back-pressure (Saturated), graceful shutdown, restart recovery."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from actors import messages as m
from gateway.app import CoreSettings, Saturated, open_gateway
from gateway.errors import Saturated as ApiSaturated
from gateway.store import open_store
from tests.fakes import ScriptedCarrier, always


def _batch(n: int, send_at: float = 0.0) -> list[m.Message]:
    now = time.time()
    return [m.Message(m.MsgId(""), "acc", f"+1555{i:07d}", "S", "t", "transliterate", now,
                      send_at=send_at) for i in range(n)]


async def test_accept_raises_saturated_when_too_much_waits(tmp_path: Path) -> None:
    assert Saturated is ApiSaturated  # the HTTP layer catches gateway.errors.Saturated
    async with open_store(tmp_path / "db", sync=False) as store:
        carrier = ScriptedCarrier(now=time.time)
        settings = CoreSettings(max_outbox=100)
        async with open_gateway(store, [carrier], settings) as gw:
            ids = await gw.accept(_batch(100, send_at=time.time() + 3600))
            assert len(set(ids)) == 100
            with pytest.raises(Saturated) as info:
                await gw.accept(_batch(1))
            assert info.value.retry_after >= 1.0
            assert store.entries(b"messages") == 100  # nothing of the refused batch stored


async def test_graceful_shutdown_drains_in_flight_and_keeps_the_rest(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        carrier = ScriptedCarrier(now=time.time)
        async with open_gateway(store, [carrier], CoreSettings(grace=5.0)) as gw:
            assert gw.ready
            await gw.accept(_batch(200))
            await gw.accept(_batch(50, send_at=time.time() + 3600))
        assert not gw.ready
        # every message is either final or still waiting in the outbox for the next start
        waiting = store.entries(b"outbox")
        assert waiting >= 50
        assert store.entries(b"inflight") == 0


async def test_restart_recovers_what_was_waiting(tmp_path: Path) -> None:
    async with open_store(tmp_path / "db", sync=False) as store:
        quiet = ScriptedCarrier(now=time.time)
        quiet.ready_flag = False  # nothing can be submitted: everything stays in the store
        async with open_gateway(store, [quiet], CoreSettings(grace=0.5)) as gw:
            ids = await gw.accept(_batch(30))
            await trio.sleep(0.1)
        assert store.entries(b"outbox") == 30
    events: list[m.StatusEvent] = []
    done = trio.Event()

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                events.extend(m.decode_batch_of(m.StatusEvent, item))
                if sum(e.event == "SMS_DELIVERED" for e in events) == 30:
                    done.set()

    async with open_store(tmp_path / "db", sync=False) as store:
        carrier = ScriptedCarrier(now=time.time)
        async with open_gateway(store, [carrier], notifier=notifier) as gw:
            with trio.fail_after(20):
                await done.wait()
        assert {e.msg_id for e in events} == set(ids)
        assert store.entries(b"outbox") == 0


async def test_scripted_carrier_rejects(tmp_path: Path) -> None:
    events: list[m.StatusEvent] = []

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                events.extend(m.decode_batch_of(m.StatusEvent, item))

    async with open_store(tmp_path / "db", sync=False) as store:
        carrier = ScriptedCarrier(script=always("reject"), now=time.time)
        async with open_gateway(store, [carrier], notifier=notifier) as gw:
            (msg_id,) = await gw.accept(_batch(1))
            with trio.fail_after(10):
                while not events:
                    await trio.sleep(0.01)
    assert [(e.msg_id, e.event, e.error_code) for e in events] == [
        (msg_id, "SMS_NOT_SENT", "0x0000000B")]
