"""Token bucket and adaptive-rate arithmetic, tested without trio (explicit ``now``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._shaping_bucket import HOLDER_FIRST
from actors.shaping import Adaptive, AdaptiveBucket, TokenBucket

rates = st.floats(min_value=0.01, max_value=10_000)
bursts = st.floats(min_value=0.5, max_value=1_000)
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=5), st.integers(min_value=1, max_value=10)),
    min_size=1,
    max_size=60,
)


def test_new_bucket_is_full_and_burst_goes_at_once() -> None:
    b = TokenBucket(rate=10, burst=20)
    assert b.tokens(0.0) == 20
    assert [b.take(1, 0.0) for _ in range(20)] == [0.0] * 20
    assert b.take(1, 0.0) == pytest.approx(0.1)
    assert b.take(1, 0.1) == 0.0


def test_wait_names_the_instant_the_tokens_are_there() -> None:
    b = TokenBucket(rate=4, burst=4)
    assert b.take(4, 0.0) == 0.0
    assert b.wait(3, 0.0) == pytest.approx(0.75)
    assert b.take(3, 0.75) == 0.0
    assert b.tokens(0.75) == pytest.approx(0.0)


def test_charge_above_burst_waits_for_a_full_bucket_then_delays_refill() -> None:
    b = TokenBucket(rate=1, burst=2)
    assert b.take(1, 0.0) == 0.0
    assert b.wait(5, 0.0) == pytest.approx(1.0)  # needs a full bucket, not 5 tokens
    assert b.take(5, 1.0) == 0.0
    assert b.tokens(1.0) == 0.0
    assert b.tokens(3.9) == 0.0  # owes 3 seconds before refilling
    assert b.tokens(5.0) == pytest.approx(1.0)


def test_set_rate_keeps_the_tokens_held() -> None:
    b = TokenBucket(rate=10, burst=10)
    b.take(6, 0.0)
    b.set_rate(2, 0.0)
    assert b.tokens(0.0) == pytest.approx(4)
    assert b.tokens(1.0) == pytest.approx(6)


@pytest.mark.parametrize("rate, burst", [(0, 1), (1, 0), (-1, 1)])
def test_bucket_refuses_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, steps=steps)
def test_tokens_stay_between_zero_and_burst(rate: float, burst: float,
                                            steps: list[tuple[float, int]]) -> None:
    b = TokenBucket(rate, burst)
    now = 0.0
    for dt, n in steps:
        now += dt
        b.take(n, now)
        assert 0.0 <= b.tokens(now) <= burst


@settings(max_examples=200, deadline=None)
@given(rate=rates, burst=bursts, steps=steps)
def test_long_run_rate_is_bounded(rate: float, burst: float,
                                  steps: list[tuple[float, int]]) -> None:
    """Taken over [0, t] <= burst + rate * t (+ the excess of one charge above burst)."""
    b = TokenBucket(rate, burst)
    now, taken, biggest = 0.0, 0, 0
    for dt, n in steps:
        now += dt
        # Greedy client: take as often as allowed, following the waits the bucket gives.
        while b.take(n, now) == 0.0:
            taken += n
            biggest = max(biggest, n)
        assert taken <= burst + rate * now + max(0, biggest - burst) + 1e-6 * (1 + taken)


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(min_value=0.5, max_value=500), burst=st.floats(min_value=1, max_value=50),
       n=st.integers(min_value=1, max_value=5))
def test_following_the_waits_gives_the_configured_rate(rate: float, burst: float, n: int) -> None:
    b = TokenBucket(rate, burst)
    now, taken = 0.0, 0
    horizon = 200.0 * n / rate + burst / rate
    while now < horizon:
        w = b.take(n, now)
        if w:
            now += w
        else:
            taken += n
    # Everything the bucket allowed in [0, horizon]: the burst plus rate * horizon (one charge).
    assert taken == pytest.approx(min(burst, n) + rate * horizon, abs=n + burst)


def test_adaptive_bucket_cuts_holds_then_recovers_linearly() -> None:
    a = Adaptive(decrease=0.5, floor=0.1, hold=5.0, recover=0.1, cooldown=1.0)
    b = AdaptiveBucket(100, 100, a)
    assert b.throttled(10.0)
    assert b.factor(10.0) == 0.5
    assert not b.throttled(10.5)  # the same window of throttled parts
    assert b.factor(15.0) == 0.5  # held
    assert b.factor(17.5) == pytest.approx(0.75)
    assert b.factor(20.0) == 1.0
    b.wait(1, 20.0)
    assert b.rate == pytest.approx(100)
    assert b.is_full(100.0)


def test_adaptive_floor_and_repeated_cuts() -> None:
    b = AdaptiveBucket(100, 10, Adaptive(decrease=0.5, floor=0.2, cooldown=0.0))
    for t in range(5):
        b.throttled(float(t) / 10)
    assert b.factor(0.5) == pytest.approx(0.2)
    assert b.rate == pytest.approx(20)
    assert not b.is_full(1000.0)  # still adapting until a decision re-reads the rate
    assert b.wait(1, 1000.0) == 0.0
    assert b.rate == pytest.approx(100) and b.is_full(1000.0)


def test_adaptive_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Adaptive(decrease=1.5)
    with pytest.raises(ValueError):
        Adaptive(recover=0)


@settings(max_examples=100, deadline=None)
@given(specs=st.lists(st.tuples(rates, bursts), min_size=1, max_size=4), steps=steps)
def test_take_all_is_all_or_none_and_matches_wait_then_charge(
        specs: list[tuple[float, float]], steps: list[tuple[float, int]]) -> None:
    from actors._shaping_bucket import take_all

    fast = tuple(TokenBucket(r, b) for r, b in specs)
    slow = tuple(TokenBucket(r, b) for r, b in specs)
    now = 0.0
    for dt, n in steps:
        now += dt
        before = [b.tokens(now) for b in fast]
        w, binding = take_all(fast, n, now)
        expected = max(b.wait(n, now) for b in slow)
        assert w == pytest.approx(expected)
        assert (binding is None) == (expected == 0.0)
        if expected == 0.0:
            for b in slow:
                b.charge(n, now)
        else:
            assert [b.tokens(now) for b in fast] == before  # nothing taken
        assert [b.tokens(now) for b in fast] == pytest.approx([b.tokens(now) for b in slow])


def test_a_reservation_makes_others_leave_the_tokens_for_the_holder() -> None:
    from actors._shaping_bucket import take_all

    b = TokenBucket(rate=10, burst=5)
    holder, other = object(), object()
    assert take_all((b,), 5, 0.0, holder) == (0.0, None)
    w, binding = take_all((b,), 5, 0.0, holder)
    assert binding is b and w == pytest.approx(0.5)
    b.holder, b.reserved = holder, 5  # the caller reserves the binding bucket
    assert take_all((b,), 1, 0.3, other)[0] > 0  # 3 tokens there, but 5 are owed
    assert take_all((b,), 1, 0.5, other)[0] == pytest.approx(HOLDER_FIRST)  # holder first
    assert take_all((b,), 5, 0.5, holder) == (0.0, None)
    assert take_all((b,), 1, 1.0 + HOLDER_FIRST, other) == (0.0, None)  # full: someone goes
