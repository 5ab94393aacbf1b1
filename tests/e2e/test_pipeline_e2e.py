"""10,000 messages through the real actors, a real LMDB file and scripted carriers.

Every message's final state and event history is checked against what its script did:
delivered, failed after acceptance, rejected, throttled then accepted, transient failures
then accepted, transient until retries run out, two-part messages, expired before sending,
unencodable under gsm7-strict. One carrier answers hex ids and sends receipts before its
submit responses; the other sends every receipt twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from actors import messages as m
from actors.dispatcher import RetryPolicy
from actors.ingress import MsgIdFactory
from gateway._store_process import PROCESS_MAP_SIZE, open_process_pipeline
from gateway.app import CoreSettings, open_gateway
from gateway.store import DEFAULT_MAP_SIZE, Store, open_store
from tests.fakes import Outcome, ScriptedCarrier

N = 10_000
LONG = "x" * 200  # two GSM7 parts

EXPECTED: dict[int, tuple[str, list[str], str]] = {
    # kind: (final state, events, code)
    0: ("DELIVERED", ["SMS_SENT", "SMS_DELIVERED"], ""),
    1: ("NOT_DELIVERED", ["SMS_SENT", "SMS_NOT_DELIVERED"], "001"),
    2: ("NOT_SENT", ["SMS_NOT_SENT"], "0x0000000B"),
    3: ("DELIVERED", ["SMS_SENT", "SMS_DELIVERED"], ""),  # throttled once
    4: ("DELIVERED", ["SMS_SENT", "SMS_DELIVERED"], ""),  # two transient failures
    5: ("NOT_SENT", ["SMS_NOT_SENT"], "timeout"),  # transient until retries run out
    6: ("DELIVERED", ["SMS_SENT", "SMS_DELIVERED"], ""),  # two parts
    7: ("NOT_SENT", ["SMS_NOT_SENT"], "expired"),
    8: ("NOT_SENT", ["SMS_NOT_SENT"], "unencodable"),
}
KINDS = [0] * 8 + [1, 2, 3, 4, 5, 6, 7, 8]


def kind_of(i: int) -> int:
    return KINDS[i % len(KINDS)]


ATTEMPTS: dict[tuple[str, int], int] = defaultdict(int)


def script(part: m.SubmitPart, _per_carrier_attempt: int) -> Outcome:
    """Fate by message kind; attempts are counted across carriers (fail-over moves parts)."""
    ATTEMPTS[(part.msg_id, part.part)] += 1
    attempt = ATTEMPTS[(part.msg_id, part.part)]
    kind = kind_of(int(part.to[-7:]))
    match kind:
        case 1:
            return "fail"
        case 2:
            return "reject"
        case 3:
            return "throttle" if attempt == 1 else "deliver"
        case 4:
            return "transient" if attempt <= 2 else "deliver"
        case 5:
            return "transient"
        case _:
            return "deliver"


def make(i: int, ids: MsgIdFactory, now: float) -> m.Message:
    kind = kind_of(i)
    to = ("+3519" if i % 2 else "+4479") + f"{i:07d}"
    return m.Message(
        ids(), f"acc{i % 3}", to, "Septet", LONG if kind == 6 else ("hi 😀" if kind == 8 else "hi"),
        "gsm7-strict" if kind == 8 else "transliterate", now, campaign="e2e",
        not_after=now - 1 if kind == 7 else 0.0, parts=2 if kind == 6 else 1)


@dataclass
class ScriptedRun:
    """One run of :func:`scripted_run`: what the tests check, the store still open."""

    store: Store
    gw: Any
    pipe: Any  # the writer process's pipeline, or None on the thread writer
    carriers: tuple[ScriptedCarrier, ScriptedCarrier]
    events: dict[str, list[m.StatusEvent]] = field(default_factory=lambda: defaultdict(list))
    by_id: dict[str, int] = field(default_factory=dict)

    def wrong_histories(self) -> list[tuple[int, tuple[str, list[str], str]]]:
        """Messages whose final state, stored history or notified events differ from
        ``EXPECTED`` for their kind, as (index, what they had)."""
        wrong = []
        for msg_id, i in self.by_id.items():
            state, history, code = EXPECTED[kind_of(i)]
            view = self.store.get_message(msg_id)
            assert view is not None
            got = (view.state, [e.event for e in view.events], view.code)
            if got != (state, history, code) or [e.event for e in self.events[msg_id]] != history:
                wrong.append((i, got))
        return wrong


@asynccontextmanager
async def scripted_run(tmp_path: Path, n: int, chunk: int, *, writer: str,
                       deadline: float) -> AsyncIterator[ScriptedRun]:
    """Accept ``n`` scripted messages (``chunk`` a batch) through the real actors and two
    scripted carriers (one answering hex ids with receipts before its responses, one sending
    every receipt twice), with the pipeline's writes on ``writer`` ("thread" or "process");
    yields once every message has a final event, inside the open store and gateway."""
    finals = 0
    all_final = trio.Event()
    hexa = ScriptedCarrier("pt", script, hex_ids=True, early=True, now=time.time)
    dup = ScriptedCarrier("uk", script, duplicate=True, now=time.time)

    async def notifier(inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal finals
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    run.events[e.msg_id].append(e)
                    finals += e.event != "SMS_SENT"
                if finals >= n:
                    all_final.set()

    settings = CoreSettings(routes={"+351": ["pt", "uk"], "+44": ["uk", "pt"]},
                            retry=RetryPolicy(max_attempts=3, base=0.001, cap=0.01),
                            receipt_timeout=None, max_inflight=2000)
    ids = MsgIdFactory()
    map_size = PROCESS_MAP_SIZE if writer == "process" else DEFAULT_MAP_SIZE
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_store(tmp_path / "db", sync=True,
                                                           map_size=map_size))
        pipe = (await stack.enter_async_context(open_process_pipeline(store, receipt_timeout=None))
                if writer == "process" else None)
        gw = await stack.enter_async_context(open_gateway(store, [hexa, dup], settings,
                                                          notifier=notifier, pipeline=pipe))
        run = ScriptedRun(store, gw, pipe, (hexa, dup))
        for start in range(0, n, chunk):
            batch = [make(i, ids, time.time()) for i in range(start, start + chunk)]
            for i, msg_id in enumerate(await gw.accept(batch), start):
                run.by_id[msg_id] = i
        with trio.fail_after(deadline):
            await all_final.wait()
        yield run


async def test_10000_messages_reach_their_final_state_with_their_event_history(
        tmp_path: Path) -> None:
    async with scripted_run(tmp_path, N, 500, writer="thread", deadline=90) as run:
        store, events, by_id = run.store, run.events, run.by_id
        assert store.entries(b"outbox") == 0
        assert store.entries(b"inflight") == 0
        assert store.entries(b"orphans") == 0
        assert run.wrong_histories() == []
        for msg_id, i in by_id.items():
            if kind_of(i) == 6:
                view = store.get_message(msg_id)
                assert view is not None
                assert [p.status for p in view.parts] == ["D", "D"]
                assert all(p.carrier_id for p in view.parts)
        assert [e.seq for e in events[next(iter(by_id))]] == [1, 2]
    hexa, dup = run.carriers
    gw = run.gw
    assert hexa.duplicates() == 0 and dup.duplicates() == 0
    assert gw.correlator_stats.orphans_matched > 0  # the early receipts were parked, then matched
    assert gw.correlator_stats.duplicates > 0  # the doubled receipts were recognised
    assert gw.correlator_stats.unknown == 0 and gw.correlator_stats.illegal == 0
