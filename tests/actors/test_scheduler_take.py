"""Pump.take: ready messages go on in order, in batches of at most ``batch``, and whole
ingress batches keep their bytes (a WireBatch) so the next hop packs nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import messages as m
from actors._wire import WireBatch
from actors.scheduler import Pump


def _msgs(start: int, n: int) -> list[m.Message]:
    return [m.Message(m.MsgId(f"id{i:06d}"), "a", "+1", "S", "t", "ucs2", 1.0)
            for i in range(start, start + n)]


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 12), st.booleans()), max_size=8),
       batch=st.integers(1, 10), room=st.integers(0, 60))
def test_take_hands_on_everything_in_order_in_bounded_batches(
        sizes: list[tuple[int, bool]], batch: int, room: int) -> None:
    pump = Pump(max_inflight=room, caught_up=True)
    offered: list[m.Message] = []
    start = 0
    for n, from_store in sizes:
        msgs = _msgs(start, n)
        start += n
        if from_store:  # as read() adds what the store gave: a plain list
            pump.ready.append(msgs)
            pump.inflight.update(x.msg_id for x in msgs)
            offered.extend(msgs)
        else:  # as ingress' fast path: decoded keeping its bytes; only what fits is taken
            before = len(pump.inflight)
            pump.offered(m.decode_wire_batch_of(m.Message, m.encode_batch(msgs)), 2.0)
            offered.extend(msgs[:len(pump.inflight) - before])
    out: list[m.Message] = []
    while pump.ready:
        got = pump.take(batch)
        assert 0 < len(got) <= batch
        assert m.decode_batch_of(m.Message, m.encode_batch(got)) == list(got)
        if isinstance(got, WireBatch):
            assert m.decode_batch(got.wire) == list(got)
        out.extend(got)
    assert out == offered


def test_whole_ingress_batches_are_joined_without_packing() -> None:
    pump = Pump(max_inflight=100, caught_up=True)
    items = [m.encode_batch(_msgs(0, 3)), m.encode_batch(_msgs(3, 2))]
    for item in items:
        pump.offered(m.decode_wire_batch_of(m.Message, item), 2.0)
    got = pump.take(10)
    assert type(got) is WireBatch
    assert list(got) == _msgs(0, 5)
    assert got.wire == m.encode_batch(_msgs(0, 5))  # the same bytes a pack would give


def test_a_partly_taken_ingress_batch_goes_on_as_a_list() -> None:
    pump = Pump(max_inflight=2, caught_up=True)
    pump.offered(m.decode_wire_batch_of(m.Message, m.encode_batch(_msgs(0, 3))), 2.0)
    got = pump.take(10)
    assert type(got) is list
    assert got == _msgs(0, 2)
