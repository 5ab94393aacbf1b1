"""Decoded batches that keep their bytes (WireBatch) and msgpack arrays joined unpacked."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import messages as m
from actors._wire import WireBatch, array_header, join_arrays
from tests.actors.test_messages import any_message

_batches = st.lists(st.lists(any_message, max_size=20), min_size=1, max_size=4)


@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1) | st.text(max_size=3), max_size=20),
                max_size=5))
def test_join_arrays_is_the_concatenation(arrays: list[list[object]]) -> None:
    items = [msgpack.packb(a) for a in arrays]
    assert msgpack.unpackb(join_arrays(items)) == [x for a in arrays for x in a]


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_join_arrays_writes_every_header_size(n: int) -> None:
    items = [msgpack.packb([1] * (n // 2)), msgpack.packb([2] * (n - n // 2))]
    joined = join_arrays(items)
    assert array_header(joined)[0] == n
    assert msgpack.unpackb(joined) == [1] * (n // 2) + [2] * (n - n // 2)


@pytest.mark.parametrize("data", [b"", b"\x80", msgpack.packb(5), msgpack.packb("x")])
def test_join_arrays_refuses_what_is_not_an_array(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a msgpack array"):
        join_arrays([msgpack.packb([1]), data])
    with pytest.raises(ValueError, match="not a msgpack array"):
        join_arrays([data])


@given(_batches)
def test_decode_batches_keeps_the_bytes_of_what_it_decoded(batches: list[list[m.Kind]]) -> None:
    items = [m.encode_batch(b) for b in batches]
    decoded = m.decode_batches(items)
    assert list(decoded) == [x for b in batches for x in b]
    assert type(decoded) is WireBatch
    # encoding it again packs nothing, and gives what packing would give
    assert m.encode_batch(decoded) == m.encode_batch(list(decoded))


@given(st.lists(any_message, max_size=20))
def test_decode_wire_batch_of_keeps_the_bytes(batch: list[m.Kind]) -> None:
    receipts = [x for x in batch if type(x) is m.CarrierReceipt]
    item = m.encode_batch(receipts)
    decoded = m.decode_wire_batch_of(m.CarrierReceipt, item)
    assert list(decoded) == receipts == m.decode_batch_of(m.CarrierReceipt, item)
    assert m.encode_batch(decoded) is item


@given(st.lists(st.lists(any_message, max_size=8), min_size=1, max_size=4))
def test_decode_wire_batches_of_joins_the_items(batches: list[list[m.Kind]]) -> None:
    receipts = [[x for x in b if type(x) is m.CarrierReceipt] for b in batches]
    items = [m.encode_batch(b) for b in receipts]
    decoded = m.decode_wire_batches_of(m.CarrierReceipt, items)
    assert list(decoded) == [x for b in receipts for x in b]
    assert type(decoded) is WireBatch
    assert m.encode_batch(decoded) == m.encode_batch(list(decoded))
    other = [m.encode_batch([m.Released(m.MsgId("a"), 1.0)])]
    with pytest.raises(m.DecodeError):
        m.decode_wire_batches_of(m.CarrierReceipt, items + other)


def test_an_upgraded_or_short_row_gives_a_plain_list() -> None:
    # a Message row without its defaulted fields decodes (defaults) but is not encode_batch's
    # form of it: the result must not claim those bytes
    short = msgpack.packb([[1, 1, "01J", "acc", "+351912345678", "S", "hi", "ucs2", 1.0]])
    full = m.encode_batch([m.CarrierReceipt("c", "1", "DELIVRD", "000", 1.0)])
    for decoded in (m.decode_batches([full, short]), m.decode_wire_batch_of(m.Message, short)):
        assert type(decoded) is list
        assert m.encode_batch(decoded) == m.encode_batch(list(decoded))
    assert m.decode_batches([short])[0] == m.Message(
        m.MsgId("01J"), "acc", "+351912345678", "S", "hi", "ucs2", 1.0)


def test_a_wire_batch_is_read_only() -> None:
    batch = m.decode_batches([m.encode_batch([m.Released(m.MsgId("a"), 1.0)])])
    assert isinstance(batch, tuple)
    with pytest.raises(AttributeError):
        batch.append(m.Released(m.MsgId("b"), 2.0))  # type: ignore[attr-defined]


@given(st.lists(any_message, max_size=20))
def test_with_wire_packs_once_what_encode_batch_would(batch: list[m.Kind]) -> None:
    kept = m.with_wire(batch)
    assert list(kept) == batch
    assert kept.wire == m.encode_batch(batch)
    assert m.encode_batch(kept) is kept.wire
