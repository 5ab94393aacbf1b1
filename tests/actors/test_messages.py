from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import messages as m

_FIELD_STRATEGIES = {
    str: st.text(max_size=40),
    int: st.integers(min_value=-(2**63), max_value=2**64 - 1),
    float: st.floats(allow_nan=False),
    bytes: st.binary(max_size=40),
    bool: st.booleans(),
}


def _strategy_for(kind: type) -> st.SearchStrategy:
    hints = {name: getattr(h, "__forward_arg__", h) for name, h in kind.__annotations__.items()}
    args = {}
    for name, hint in hints.items():
        base = {"MsgId": str, "CarrierId": str, "str": str, "int": int, "float": float,
                "bytes": bytes, "bool": bool}[hint]
        args[name] = _FIELD_STRATEGIES[base]
    return st.builds(kind, **args)


any_message = st.one_of(*(_strategy_for(k) for k in m.KINDS))


@given(st.lists(any_message, max_size=20))
def test_batch_round_trip(batch: list[m.Kind]) -> None:
    assert m.decode_batch(m.encode_batch(batch)) == batch


@given(st.lists(any_message, max_size=20))
def test_encode_batch_is_the_packed_wire_rows(batch: list[m.Kind]) -> None:
    # encode_batch builds (tag, version) + message tuples: the bytes of to_wire's lists
    assert m.encode_batch(batch) == msgpack.packb([m.to_wire(x) for x in batch],
                                                  use_bin_type=True)


@given(any_message)
def test_single_round_trip(message: m.Kind) -> None:
    assert m.decode(m.encode(message)) == message


def test_tags_are_unique() -> None:
    assert len({k.TAG for k in m.KINDS}) == len(m.KINDS)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb(5), msgpack.packb([[99, 1]]), msgpack.packb([[1, 99, "x"]]),
     msgpack.packb([[1, 1, "too", "few"]])],
)
def test_garbage_is_refused_with_decode_error(data: bytes) -> None:
    with pytest.raises(m.DecodeError):
        m.decode_batch(data)


def test_decode_batch_of_checks_kind() -> None:
    receipt = m.CarrierReceipt("sim", "1", "DELIVRD", "000", 1.0)
    with pytest.raises(m.DecodeError):
        m.decode_batch_of(m.Message, m.encode_batch([receipt]))
    assert m.decode_batch_of(m.CarrierReceipt, m.encode_batch([receipt])) == [receipt]


def test_version_1_message_fixture_still_decodes() -> None:
    # Bytes written by schema version 1; a later version must keep decoding them.
    fixture = msgpack.packb([1, 1, "01J", "acc", "+351912345678", "Septet", "Olá", "transliterate",
                             1700000000.0, "", "", "", 0.0, 0.0, 5, 1, "gsm7"])
    assert m.decode(fixture) == m.Message(
        m.MsgId("01J"), "acc", "+351912345678", "Septet", "Olá", "transliterate", 1700000000.0
    )
