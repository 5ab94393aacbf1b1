"""actors.backoff.delay: bounds, growth up to the cap, and the two users' exact schedules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors import backoff
from actors.callbacks_policy import RetryPolicy as CallbackRetry
from actors.dispatcher import RetryPolicy as SubmitRetry

attempts = st.integers(min_value=1, max_value=200)
bases = st.floats(min_value=0.001, max_value=100.0)
caps = st.floats(min_value=0.001, max_value=1e6)
factors = st.floats(min_value=1.0, max_value=4.0)
jitters = st.floats(min_value=0.0, max_value=0.99)
rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@settings(max_examples=300)
@given(attempts, bases, caps, factors, jitters, rands)
def test_a_wait_stays_within_its_spread_and_never_passes_the_cap(
        attempt: int, base: float, cap: float, factor: float, jitter: float, rand: float) -> None:
    wait = backoff.delay(attempt, base=base, cap=cap, factor=factor, jitter=jitter, rand=rand)
    nominal = backoff.delay(attempt, base=base, cap=cap, factor=factor)
    assert 0 < wait <= cap
    assert nominal == min(cap, base * factor ** min(attempt - 1, 64))
    assert nominal * (1 - jitter) * (1 - 1e-12) <= wait <= nominal * (1 + jitter) * (1 + 1e-12)


@settings(max_examples=300)
@given(attempts, bases, caps, factors, jitters, rands)
def test_waits_never_shrink_and_end_at_the_cap(
        attempt: int, base: float, cap: float, factor: float, jitter: float, rand: float) -> None:
    def wait(n: int) -> float:
        return backoff.delay(n, base=base, cap=cap, factor=factor, jitter=jitter, rand=rand)

    assert wait(attempt + 1) >= wait(attempt)  # same draw: the later attempt waits no less
    if factor >= 1.5:  # 1.5 ** 64 * 0.001 > 1e6: the cap is reached by attempt 65
        assert backoff.delay(attempt + 64, base=base, cap=cap, factor=factor) == cap


def test_the_dispatcher_and_the_notifier_keep_their_schedules() -> None:
    submit = SubmitRetry()  # 0.5 s doubling, capped at 30 s, no jitter
    assert [submit.delay(n) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    callbacks = CallbackRetry()  # 2 s doubling, capped at 1 h, ±20 %
    assert callbacks.delay(1, 0.5) == 2.0
    assert callbacks.delay(3, 0.0) == 8.0 * 0.8 and callbacks.delay(3, 0.99) <= 8.0 * 1.2
    assert callbacks.delay(40, 0.99) == 3600.0  # the jitter never lifts a wait past the cap
