"""The hand-written callback JSON and timestamps equal the json.dumps / datetime reference."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.messages import MsgId, StatusEvent
from gateway.callbacks import _rfc3339, _rfc3339_slow, build_body, build_body_slow

TEXT = st.text(max_size=12)  # any code point: quotes, backslashes, controls, surrogates, emoji
EVENTS = st.builds(
    StatusEvent, st.builds(MsgId, TEXT), TEXT, st.sampled_from(["SMS_SENT", "SMS_DELIVERED"]),
    st.integers(0, 2**32), st.one_of(st.floats(0, 2e9), st.integers(0, 2**31)), TEXT, TEXT,
    st.integers(0, 255), TEXT, TEXT, TEXT, TEXT)


@settings(max_examples=300)
@given(st.one_of(st.floats(0, 253402300799.0), st.integers(0, 2**33).map(lambda n: n / 1000)))
def test_rfc3339_equals_the_datetime_form(t: float) -> None:
    assert _rfc3339(t) == _rfc3339_slow(t)


def test_rfc3339_at_whole_seconds_and_rounding_edges() -> None:
    for t in (0.0, 0.0005, 0.9999995, 1795644001.25, 1795644001.9995, 1795644001.99999949,
              1795644001.9999995, 1795644002.0, 1795644000.9999999):
        assert _rfc3339(t) == _rfc3339_slow(t), t


@settings(max_examples=200)
@given(st.lists(EVENTS, min_size=1, max_size=4), st.sampled_from([None, True, False]))
def test_body_equals_json_dumps_of_the_payload(events: list[StatusEvent],
                                               batched: bool | None) -> None:
    if batched is False and len(events) > 1:
        events = events[:1]
    assert build_body(events, batched=batched) == build_body_slow(events, batched=batched)


def test_odd_field_types_fall_back_to_json_dumps() -> None:
    odd = [StatusEvent(MsgId("m"), "a", "SMS_SENT", True, 1.5),  # type: ignore[arg-type]
           StatusEvent(MsgId("m"), "a", "SMS_SENT", 1, 2.5, None),  # type: ignore[arg-type]
           StatusEvent(MsgId("m"), "a", "SMS_SENT", 1, 2.5, parts=False)]
    for e in odd:
        assert build_body([e]) == build_body_slow([e])
    assert json.loads(build_body([odd[1]]))["data"]["carrier_id"] is None
    for bad in (float("nan"), float("inf")):  # no timestamp for these, as before
        with pytest.raises((ValueError, OverflowError)):
            build_body([StatusEvent(MsgId("m"), "a", "SMS_SENT", 1, bad)])
