"""The simulator's receipt window: receipts due while it is full wait in order for acks (no
timer, no re-sorting), unacknowledged ones are resent oldest first, and a lost connection
keeps every receipt not acknowledged, sent or not."""

from __future__ import annotations

import math

from adapters.simulator.config import SimulatorConfig, SimulatorState
from adapters.simulator.machine import SmscSession
from adapters.smpp import pdu as p


def _receipts(data: bytes) -> list[p.DeliverSm]:
    return [x for x in p.Framer().feed(data) if isinstance(x, p.DeliverSm)]


def _session(window: int, n: int, **kw: float) -> tuple[SimulatorState, SmscSession]:
    shared = SimulatorState(SimulatorConfig(window=window, **kw))  # type: ignore[arg-type]
    s = SmscSession(shared, now=0.0)
    s.receive_data(p.encode(p.BindRequest("transceiver", 1, "sys", "pw")), 0.0)
    for i in range(n):
        s.receive_data(p.encode(p.SubmitSm(2 + i, "S", f"49{i:03d}", b"hi",
                                           registered_delivery=1)), 0.0)
    return shared, s


def test_a_full_window_waits_for_acks_and_sends_in_due_order() -> None:
    _, s = _session(window=3, n=8, redeliver_after=30.0)
    first = _receipts(s.poll(0.0))
    assert len(first) == 3
    assert s.next_deadline() == 30.0  # full: nothing to do until an ack (or the resend time)
    assert _receipts(s.poll(1.0)) == []
    for r in first[:2]:
        s.receive_data(p.encode(p.DeliverSmResp(r.sequence)), 1.0)
    assert s.next_deadline() == -math.inf  # two slots free, receipts ready: now
    more = _receipts(s.poll(1.0))
    assert len(more) == 2
    ids = [int(r.receipted_message_id) for r in first + more]
    assert ids == sorted(ids)  # due order kept across the wait


def test_unacknowledged_receipts_are_resent_oldest_first_once_overdue() -> None:
    shared, s = _session(window=10, n=3, redeliver_after=5.0)
    sent = _receipts(s.poll(0.0))
    s.receive_data(p.encode(p.DeliverSmResp(sent[0].sequence)), 1.0)  # the oldest is acked
    assert s.next_deadline() == 5.0
    assert _receipts(s.poll(4.9)) == []
    again = _receipts(s.poll(5.0))
    assert [r.receipted_message_id for r in again] == [r.receipted_message_id for r in sent[1:]]
    assert shared.stats.receipts_redelivered == 2
    assert s.next_deadline() == 10.0


def test_a_lost_connection_keeps_sent_ready_and_future_receipts() -> None:
    shared, s = _session(window=2, n=5, receipt_delay_min=0.0, receipt_delay_max=0.0)
    sent = _receipts(s.poll(0.0))  # 2 sent, 3 ready behind the full window
    s.receive_data(p.encode(p.DeliverSmResp(sent[0].sequence)), 0.0)
    s.receive_data(p.encode(p.SubmitSm(99, "S", "49999", b"hi", registered_delivery=1)), 0.0)
    s.connection_lost()  # without polling again: 1 unacked, 4 ready or due
    assert len(shared.held["sys"]) == 5
    again = SmscSession(shared, now=1.0)
    again.receive_data(p.encode(p.BindRequest("transceiver", 1, "sys", "pw")), 1.0)
    got = _receipts(again.poll(1.0))
    assert len(got) == 2  # the window again
    assert got[0].receipted_message_id == sent[1].receipted_message_id  # oldest first
