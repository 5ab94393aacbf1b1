"""The receipt sink hands PendingReceipts to the correlator (rows built directly) and returns
only once the batch holding them has been applied."""

from __future__ import annotations

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors import receipt_correlator

_RECEIPT = st.builds(m.CarrierReceipt, st.text(max_size=10), st.text(max_size=20),
                     st.sampled_from(list(m.ReceiptState)).map(str), st.text(max_size=5),
                     st.floats(allow_nan=False), st.floats(allow_nan=False))


def test_pending_receipt_is_a_ticket_then_the_carrier_receipt_fields() -> None:
    # the sink builds its rows as (tag, version, ticket) + receipt: the field orders must agree
    assert m.PendingReceipt._fields == ("ticket", *m.CarrierReceipt._fields)


@settings(max_examples=50, deadline=None)
@given(receipts=st.lists(_RECEIPT, min_size=1, max_size=5))
def test_sink_sends_pending_receipts_and_waits_for_their_commit(
        receipts: list[m.CarrierReceipt]) -> None:
    async def main() -> None:
        send, recv = trio.open_memory_channel[bytes](1)
        sink = receipt_correlator.receipt_sink(None, send)  # type: ignore[arg-type]
        returned = trio.Event()

        async def call() -> None:
            await sink(receipts)
            returned.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            item = await recv.receive()
            pending = m.decode_batch_of(m.PendingReceipt, item)
            ticket = pending[0].ticket
            assert pending == [m.PendingReceipt(ticket, *r) for r in receipts]
            assert item == m.encode_batch(pending)
            await trio.testing.wait_all_tasks_blocked()
            assert not returned.is_set()  # not applied yet: no acknowledgement
            receipt_correlator._wake_sinks(pending)
            await returned.wait()

    trio.run(main)


def test_status_events_are_counted_per_event_name() -> None:
    from prometheus_client import REGISTRY

    from actors.ports import Applied

    def value(event: str) -> float:
        return REGISTRY.get_sample_value("septet_correlator_events_total", {"event": event}) or 0.0

    names = ["SMS_SENT", "SMS_DELIVERED", "SMS_SENT", "SMS_NOT_SENT", "SMS_SENT"]
    rows = [m.to_wire(m.StatusEvent(m.MsgId(f"id{i}"), "acc", name, 1, 1.0))
            for i, name in enumerate(names)]
    before = {n: value(n) for n in set(names)}
    corr = receipt_correlator._Correlator(None, None, None, lambda: 0.0,  # type: ignore[arg-type]
                                          receipt_correlator.CorrelatorStats())
    corr._count(Applied(event_rows=rows), len(rows))
    assert {n: value(n) - before[n] for n in before} == {
        "SMS_SENT": 3, "SMS_DELIVERED": 1, "SMS_NOT_SENT": 1}
    assert corr.stats.events == 5
