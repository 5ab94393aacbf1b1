"""2,000 messages through the real actors with the pipeline's writes in the writer process
(``[store] writer = "process"``): the scripts, expectations and carriers of
test_pipeline_e2e, every final state and event history checked."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import trio

from actors import messages as m
from actors.dispatcher import RetryPolicy
from actors.ingress import MsgIdFactory
from gateway._store_process import PROCESS_MAP_SIZE, open_process_pipeline
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.e2e.test_pipeline_e2e import EXPECTED, kind_of, make, script
from tests.fakes import ScriptedCarrier

N = 2_000


async def test_2000_messages_reach_their_final_state_through_the_writer_process(
        tmp_path: Path) -> None:
    events: dict[str, list[m.StatusEvent]] = defaultdict(list)
    finals = 0
    all_final = trio.Event()

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal finals
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    events[e.msg_id].append(e)
                    finals += e.event != "SMS_SENT"
                if finals >= N:
                    all_final.set()

    hexa = ScriptedCarrier("pt", script, hex_ids=True, early=True, now=time.time)
    dup = ScriptedCarrier("uk", script, duplicate=True, now=time.time)
    settings = CoreSettings(routes={"+351": ["pt", "uk"], "+44": ["uk", "pt"]},
                            retry=RetryPolicy(max_attempts=3, base=0.001, cap=0.01),
                            receipt_timeout=None, max_inflight=2000)
    ids = MsgIdFactory()
    by_id: dict[str, int] = {}
    async with open_store(tmp_path / "db", sync=True, map_size=PROCESS_MAP_SIZE) as store:
        async with open_process_pipeline(store, receipt_timeout=None) as pipe, \
                open_gateway(store, [hexa, dup], settings, notifier=notifier,
                             pipeline=pipe) as gw:
            for start in range(0, N, 250):
                batch = [make(i, ids, time.time()) for i in range(start, start + 250)]
                for i, msg_id in enumerate(await gw.accept(batch), start):
                    by_id[msg_id] = i
            with trio.fail_after(60):
                await all_final.wait()
        assert pipe.statistics().writer.commits > 0
        assert store.stats.ops_cpu_seconds < pipe.statistics().writer.ops_cpu_seconds
        assert store.entries(b"outbox") == 0
        assert store.entries(b"inflight") == 0
        assert store.entries(b"orphans") == 0
        wrong = []
        for mid, i in by_id.items():
            state, history, code = EXPECTED[kind_of(i)]
            view = store.get_message(mid)
            assert view is not None
            got = (view.state, [e.event for e in view.events], view.code)
            if got != (state, history, code) or [e.event for e in events[mid]] != history:
                wrong.append((i, got))
        assert wrong == []
    assert hexa.duplicates() == 0 and dup.duplicates() == 0
    assert gw.correlator_stats.orphans_matched > 0
    assert gw.correlator_stats.unknown == 0 and gw.correlator_stats.illegal == 0
