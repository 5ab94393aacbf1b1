"""The simulator keeps receipts across connections (store-and-forward, as an SMSC does for
an ESME that is away): a receipt not acknowledged when the connection ends is sent on the
next receiving bind of the same system_id. The crash loop (bench/torture.py) relies on it:
the gateway is killed between reading a receipt and acknowledging it."""

from __future__ import annotations

from adapters.simulator.config import SimulatorConfig, SimulatorState
from adapters.simulator.machine import SmscSession
from adapters.smpp import pdu as p


def _receipts(data: bytes) -> list[p.DeliverSm]:
    return [x for x in p.Framer().feed(data) if isinstance(x, p.DeliverSm)]


def _bound(shared: SimulatorState, mode: p.BindMode = "transceiver",
           system_id: str = "sys") -> SmscSession:
    s = SmscSession(shared, now=0.0)
    s.receive_data(p.encode(p.BindRequest(mode, 1, system_id, "pw")), 0.0)
    return s


def test_unacknowledged_receipts_go_to_the_next_bind() -> None:
    shared = SimulatorState(SimulatorConfig(receipt_delay_min=5.0, receipt_delay_max=5.0))
    first = _bound(shared)
    for i in range(3):
        first.receive_data(p.encode(p.SubmitSm(2 + i, "S", f"49{i}", b"hi",
                                               registered_delivery=1)), 0.0)
    first.poll(0.0)
    sent = _receipts(first.poll(5.0))  # all three sent, none acknowledged
    assert len(sent) == 3
    first.receive_data(p.encode(p.DeliverSmResp(sent[0].sequence)), 5.0)
    first.connection_lost()

    transmitter = _bound(shared, "transmitter")  # cannot receive: keeps nothing, gets nothing
    assert _receipts(transmitter.poll(6.0)) == []
    other = _bound(shared, system_id="other")
    assert _receipts(other.poll(6.0)) == []
    second = _bound(shared)
    again = _receipts(second.poll(6.0))
    assert sorted(r.receipted_message_id for r in again) == \
        sorted(r.receipted_message_id for r in sent[1:])
    assert shared.held == {}


def test_receipts_not_yet_due_also_survive_the_connection() -> None:
    shared = SimulatorState(SimulatorConfig(receipt_delay_min=60.0, receipt_delay_max=60.0))
    first = _bound(shared)
    first.receive_data(p.encode(p.SubmitSm(2, "S", "491", b"hi", registered_delivery=1)), 0.0)
    first.poll(0.0)
    first.connection_lost()
    assert len(_receipts(_bound(shared).poll(1.0))) == 1
