"""The notifier's batched histogram observe gives the samples observing one by one gives."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as s
from prometheus_client import CollectorRegistry, Histogram

from actors.notifier import observe_many

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


def _samples(h: Histogram) -> dict[tuple[str, str], float]:
    return {(x.name, x.labels.get("le", "")): x.value
            for metric in h.collect() for x in metric.samples if not x.name.endswith("_created")}


lags = s.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(s.lists(lags, max_size=120), s.lists(lags, max_size=5))
@example([0.01, 0.025, 3600.0, 3600.5, 0.0], [])  # on the bounds and past the last finite one
def test_observe_many_equals_observe_one_by_one(values: list[float], before: list[float]) -> None:
    one, many = (Histogram("lag_seconds", "x", buckets=BUCKETS, registry=CollectorRegistry())
                 for _ in range(2))
    for v in before:  # on top of what was there
        one.observe(v)
        many.observe(v)
    for v in values:
        one.observe(v)
    observe_many(many, values)
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_nan_and_foreign_histograms_fall_back_to_observe() -> None:
    seen: list[float] = []

    class Plain:
        def observe(self, amount: float) -> None:
            seen.append(amount)

    observe_many(Plain(), [1.0, 2.0])
    assert seen == [1.0, 2.0]
    h = Histogram("lag_seconds", "x", buckets=BUCKETS, registry=CollectorRegistry())
    observe_many(h, [0.5, math.nan])
    samples = _samples(h)
    assert samples[("lag_seconds_count", "")] == 1  # observe() puts NaN in no bucket
    assert math.isnan(samples[("lag_seconds_sum", "")])
