"""The pipeline against the real SMPP client and the simulated SMSC over 127.0.0.1.

Real sockets, a real LMDB file, the real SmppCarrier and simulator: the SMSC answers hex ids
in submit_sm_resp and decimal ids in its receipts, delivers most and fails some. Every
message must reach the final state its receipt says, with SMS_SENT first.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import trio

from actors import messages as m
from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from adapters.smpp import SmppCarrier
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store

N = 600


async def test_messages_through_smpp_reach_their_receipt_state(tmp_path: Path) -> None:
    finals: Counter[str] = Counter()
    histories: dict[str, list[str]] = {}
    done = trio.Event()

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    histories.setdefault(e.msg_id, []).append(e.event)
                    if e.event != "SMS_SENT":
                        finals[e.event] += 1
                if sum(finals.values()) >= N:
                    done.set()

    config = SimulatorConfig(id_format="hex-resp-decimal-receipt", outcomes=(("DELIVRD", 0.9), ("UNDELIV", 0.1)),
                             seed=3)
    stats = SimulatorStats()
    async with trio.open_nursery() as sim:
        port = await sim.start(lambda task_status: serve_simulator(
            config, stats=stats, task_status=task_status))
        carrier = SmppCarrier("smsc", "127.0.0.1", port, "septet", "secret", window=64)
        async with open_store(tmp_path / "db") as store:
            settings = CoreSettings(receipt_timeout=None,
                                    carrier_id_types={"smsc": "hex-submit"})
            async with open_gateway(store, [carrier], settings, notifier=notifier) as gw:
                with trio.fail_after(10):
                    while not carrier.ready:
                        await trio.sleep(0.01)
                now = time.time()
                for start in range(0, N, 100):
                    await gw.accept([m.Message(m.MsgId(""), "acc", f"+3519{i:08d}", "Septet",
                                               f"code {i}", "transliterate", now)
                                     for i in range(start, start + 100)])
                with trio.move_on_after(60):
                    await done.wait()
                assert done.is_set(), (dict(finals), stats, gw.correlator_stats)
            assert store.entries(b"outbox") == 0 and store.entries(b"orphans") == 0
        sim.cancel_scope.cancel()
    assert sum(finals.values()) == N
    assert set(finals) <= {"SMS_DELIVERED", "SMS_NOT_DELIVERED"} and finals["SMS_DELIVERED"] > 0
    assert all(h[0] == "SMS_SENT" and len(h) == 2 for h in histories.values())
    assert stats.submits_accepted == N  # nothing submitted twice
    assert gw.correlator_stats.unknown == 0
