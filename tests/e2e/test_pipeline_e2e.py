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
from pathlib import Path

import trio

from actors import messages as m
from actors.dispatcher import RetryPolicy
from actors.ingress import MsgIdFactory
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
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


async def test_10000_messages_reach_their_final_state_with_their_event_history(
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
    async with open_store(tmp_path / "db", sync=True) as store:
        async with open_gateway(store, [hexa, dup], settings, notifier=notifier) as gw:
            for start in range(0, N, 500):
                batch = [make(i, ids, time.time()) for i in range(start, start + 500)]
                for i, msg_id in enumerate(await gw.accept(batch), start):
                    by_id[msg_id] = i
            with trio.fail_after(90):
                await all_final.wait()
        assert store.entries(b"outbox") == 0
        assert store.entries(b"inflight") == 0
        assert store.entries(b"orphans") == 0
        wrong = []
        for msg_id, i in by_id.items():
            state, history, code = EXPECTED[kind_of(i)]
            view = store.get_message(msg_id)
            assert view is not None
            got = (view.state, [e.event for e in view.events], view.code)
            if got != (state, history, code) or [e.event for e in events[msg_id]] != history:
                wrong.append((i, got))
            if kind_of(i) == 6:
                assert [p.status for p in view.parts] == ["D", "D"]
                assert all(p.carrier_id for p in view.parts)
        assert wrong == []
        assert [e.seq for e in events[next(iter(by_id))]] == [1, 2]
    assert hexa.duplicates() == 0 and dup.duplicates() == 0
    assert gw.correlator_stats.orphans_matched > 0  # the early receipts were parked, then matched
    assert gw.correlator_stats.duplicates > 0  # the doubled receipts were recognised
    assert gw.correlator_stats.unknown == 0 and gw.correlator_stats.illegal == 0
