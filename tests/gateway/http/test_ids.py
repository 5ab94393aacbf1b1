"""The API's fast ids have exactly the format of actors.ingress.MsgIdFactory."""

from __future__ import annotations

from actors.ingress import MsgIdFactory, id_floor, id_time
from gateway.api._ids import FastMsgIds


def test_same_ids_as_the_reference_factory() -> None:
    t = [1_700_000_000.0]
    fast, ref = FastMsgIds(lambda: t[0], node=7), MsgIdFactory(lambda: t[0], node=7)
    fast._counter = ref._counter = 123
    for step in range(2000):
        t[0] += 0.0003 * (step % 7)
        assert fast() == ref()


def test_ids_sort_in_time_order_and_decode() -> None:
    t = [1_700_000_000.0]
    ids = FastMsgIds(lambda: t[0])
    out = []
    for _ in range(100):
        out.append(ids())
        t[0] += 0.001
    assert out == sorted(out) and len(set(out)) == 100
    assert id_time(out[0]) == 1_700_000_000.0 and out[0] >= id_floor(1_700_000_000.0)


def test_counter_wrap_keeps_order() -> None:
    ids = FastMsgIds(lambda: 1_700_000_000.0)
    ids._counter = 0xFFFFFFFE
    a, b, c = ids(), ids(), ids()
    assert a < b < c
