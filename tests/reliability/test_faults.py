"""Faults injected through the simulator and the OS, each with an asserted outcome, through
the whole gateway (tests/reliability/stack.py): HTTP in, SMPP out, LMDB underneath.

The callback receiver down for an hour of virtual time is covered exactly by
tests/actors/test_notifier.py::test_receiver_down_for_an_hour_gets_everything_after_recovery
(H6, MockClock) and is not repeated here.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from adapters.simulator import SimulatorConfig
from tests.reliability.stack import all_final, start_stack, submit

N = 300


async def test_smsc_disconnects_mid_window_lose_nothing(tmp_path: Path) -> None:
    # One submit in 400 cuts the connection before its answer, with the window in flight
    # (latency keeps up to 64 submits pending): the parts cut off are in doubt and resent
    # after the reconnect, and every message is DELIVERED.
    sim = SimulatorConfig(disconnect_rate=1 / 400, latency=0.02, seed=7)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, sim)
        async with stack.client() as c:
            ids = await submit(c, N)
            got = await all_final(c, ids, timeout=60)
        nursery.cancel_scope.cancel()
    assert stack.sim.disconnects_injected >= 1
    assert stack.sim.peak_pending_responses > 1  # the cut came with a window in flight
    assert Counter(got[i]["state"] for i in ids) == {"DELIVERED": N}
    assert len(stack.sim.accepted) == N
    # at-least-once: only parts cut off in doubt are resent, at most a window per cut
    assert stack.sim.duplicates() <= stack.sim.submits_unanswered
    assert stack.sim.duplicates() <= stack.sim.disconnects_injected * 64


async def test_receipts_before_submit_responses_all_match(tmp_path: Path) -> None:
    # The SMSC answers submits 20 ms late but sends each receipt at once, so receipts arrive
    # before the submit response they belong to, 64 at a time. Decimal ids share digits
    # ("130" read as hex is 0x130; its hex spelling "82" is another id): every receipt must
    # still reach its own message. Found by this suite: 96 of 300 stayed SENT (orphans were
    # deleted with a neighbour's match, and a later reading hit a settled message).
    sim = SimulatorConfig(latency=0.02, seed=3)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, sim)
        async with stack.client() as c:
            ids = await submit(c, N)
            got = await all_final(c, ids, timeout=30)
        nursery.cancel_scope.cancel()
    assert Counter(got[i]["state"] for i in ids) == {"DELIVERED": N}
    assert stack.sim.receipts_acked == N


async def test_a_disconnect_storm_ends_every_message_visibly(tmp_path: Path) -> None:
    # One submit in 40 cuts the connection: fewer submits than a window get through per
    # connection. The retry policy (5 attempts over ~7.5 s) then gives some parts up:
    # they must end NOT_SENT with the in-doubt reason, never stay pending or vanish.
    sim = SimulatorConfig(disconnect_rate=1 / 40, latency=0.02, seed=11)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, sim)
        async with stack.client() as c:
            ids = await submit(c, 200)
            got = await all_final(c, ids, timeout=60)
        nursery.cancel_scope.cancel()
    assert stack.sim.disconnects_injected >= 3
    by_state = Counter(got[i]["state"] for i in ids)
    assert set(by_state) <= {"DELIVERED", "NOT_SENT"}
    assert all(got[i]["code"] == "timeout" for i in ids if got[i]["state"] == "NOT_SENT")
    delivered = {got[i]["text"] for i in ids if got[i]["state"] == "DELIVERED"}
    assert delivered <= {key[1].decode() for key in stack.sim.accepted}


async def test_a_throttling_storm_slows_but_loses_nothing(tmp_path: Path) -> None:
    # The SMSC takes 150 submits/s and answers ESME_RTHROTTLED above it, to a gateway that
    # offers more: parts are slowed, not failed.
    sim = SimulatorConfig(max_submit_rate=150, burst=10, seed=5)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, sim)
        async with stack.client() as c:
            ids = await submit(c, N)
            got = await all_final(c, ids, timeout=60)
        nursery.cancel_scope.cancel()
    assert stack.sim.submits_throttled > 20
    assert Counter(got[i]["state"] for i in ids) == {"DELIVERED": N}
    assert stack.sim.duplicates() == 0  # a throttled submit was refused, so resending is safe


async def test_slow_and_failing_receipts_end_in_the_right_states(tmp_path: Path) -> None:
    # Receipts come 0.2-1.5 s after the submit, a third of them failures, and one submit in
    # ten is refused outright.
    sim = SimulatorConfig(receipt_delay_min=0.2, receipt_delay_max=1.5,
                          outcomes=(("DELIVRD", 2), ("UNDELIV", 1), ("EXPIRED", 0.5),
                                    ("REJECTD", 0.5)),
                          submit_error_rate=0.1, seed=9)
    async with trio.open_nursery() as nursery:
        stack = await start_stack(nursery, tmp_path, sim)
        async with stack.client() as c:
            ids = await submit(c, N)
            got = await all_final(c, ids, timeout=60)
        nursery.cancel_scope.cancel()
    by_state = Counter(got[i]["state"] for i in ids)
    assert by_state["NOT_SENT"] == stack.sim.submits_rejected
    assert by_state["DELIVERED"] + by_state["NOT_DELIVERED"] == stack.sim.submits_accepted == \
        stack.sim.receipts_acked
    assert by_state["NOT_DELIVERED"] > 30
    reasons = Counter(got[i]["reason"] for i in ids if got[i]["state"] == "NOT_DELIVERED")
    assert set(reasons) == {"UNDELIV", "EXPIRED", "REJECTD"}, reasons


def test_carrier_ids_of_any_length_have_a_key() -> None:
    # Found by the hostile table: a 10,000-digit receipt id (POST /v1/receipts) raised
    # ValueError (int() refuses > 4,300 digits) inside the correlator and took the gateway down.
    from actors.correlation import index_key, lookup_keys

    for carrier_id in ("9" * 10_000, "f" * 5_000, "0x" + "1" * 600, "12" * 40):
        keys = [index_key(carrier_id), *lookup_keys(carrier_id)]
        assert all(len(k) <= 401 for k in keys)
        assert index_key(carrier_id) in lookup_keys(carrier_id)
