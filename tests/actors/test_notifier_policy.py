"""Pure notifier decisions: back-off schedule, dead-letter window, circuit breaker, caps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.callbacks_policy import (
    DAY,
    BreakerState,
    CircuitBreaker,
    Endpoints,
    RetryPolicy,
    endpoint_of,
)
from actors.messages import MsgId, StatusEvent
from actors.notifier import decide
from actors.ports import CallbackEntry, CallbackResult


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=2, factor=2, max_delay=3600, jitter=0)
    assert [policy.delay(n, 0.5) for n in range(1, 8)] == [2, 4, 8, 16, 32, 64, 128]
    assert policy.delay(12, 0.5) == 3600
    assert policy.delay(10_000, 0.5) == 3600  # no overflow for absurd attempt numbers


@settings(max_examples=200)
@given(attempt=st.integers(1, 60), rand=st.floats(0, 1, exclude_max=True))
def test_jitter_stays_within_its_band_and_under_the_cap(attempt: int, rand: float) -> None:
    policy = RetryPolicy(initial_delay=1, factor=2, max_delay=600, jitter=0.2)
    base = min(600, 2.0 ** (attempt - 1))
    delay = policy.delay(attempt, rand)
    assert 0.8 * base - 1e-9 <= delay <= min(600, 1.2 * base) + 1e-9


def test_retrying_stops_after_the_retry_window() -> None:
    policy = RetryPolicy(initial_delay=60, max_delay=3600, jitter=0, max_age=DAY)
    assert policy.next_attempt_at(attempt=3, first_attempt_at=0, now=1000, rand=0) == 1240
    assert policy.next_attempt_at(attempt=30, first_attempt_at=0, now=DAY - 60, rand=0) is None
    assert not policy.expired(first_attempt_at=0, now=DAY)
    assert policy.expired(first_attempt_at=0, now=DAY + 1)


def test_a_24h_window_allows_about_thirty_attempts() -> None:
    policy = RetryPolicy(jitter=0)  # defaults: 2 s doubling, 1 h cap, 24 h
    t, attempts = 0.0, 0
    while (at := policy.next_attempt_at(attempt=attempts + 1, first_attempt_at=0, now=t, rand=0)) is not None:
        t, attempts = at, attempts + 1
    assert 25 <= attempts <= 35
    assert DAY - 3600 <= t <= DAY


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_delay": 0}, {"factor": 0.5}, {"jitter": 1.0}, {"per_endpoint": 0},
     {"max_delay": 1, "initial_delay": 2}, {"batch_size": 0}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_breaker_opens_after_n_failures_and_half_opens_after_the_cooldown() -> None:
    b = CircuitBreaker(failures_to_open=3, cooldown=30, max_cooldown=120)
    for t in (0, 1):
        assert b.allow(t)
        b.on_failure(t)
    assert b.state is BreakerState.CLOSED
    b.on_failure(2)
    assert b.state is BreakerState.OPEN
    assert not b.allow(31.9)
    assert b.retry_at(10) == 32
    assert b.allow(32)  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow(32)  # only one probe at a time
    b.on_failure(33)  # probe failed: open again, cooldown doubled
    assert b.state is BreakerState.OPEN and b.open_until == 93
    assert b.allow(93)
    b.on_failure(93)
    assert b.open_until == 93 + 120  # capped at max_cooldown
    assert b.allow(213)
    b.on_success(214)
    assert b.state is BreakerState.CLOSED and b.allow(214) and b.allow(214)


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(failures_to_open=2, cooldown=30, max_cooldown=60)
    b.on_failure(0)
    b.on_success(1)
    b.on_failure(2)
    assert b.state is BreakerState.CLOSED


def test_endpoints_cap_requests_in_flight_per_endpoint() -> None:
    eps = Endpoints(RetryPolicy(per_endpoint=2, breaker_failures=1))
    a, b = "http://a:80", "http://b:80"
    assert eps.acquire(a, 0) and eps.acquire(a, 0)
    assert not eps.acquire(a, 0)
    assert eps.acquire(b, 0)  # another endpoint is not affected
    eps.release(a, ok=True, now=1)
    assert eps.acquire(a, 1)
    eps.release(b, ok=False, now=1)  # one failure opens b's breaker here
    assert eps.get(b).breaker.state is BreakerState.OPEN
    assert not eps.acquire(b, 2)


def test_endpoint_is_scheme_host_and_port() -> None:
    assert endpoint_of("https://Hooks.Example.com/a?b") == "https://hooks.example.com:443"
    assert endpoint_of("http://h:8080/x") == "http://h:8080"


def _entry(attempt: int = 0) -> CallbackEntry:
    event = StatusEvent(MsgId("m1"), "acme", "SMS_SENT", 1, 0.0)
    return CallbackEntry(b"k", event, attempt, first_attempt_at=0.0, due=0.0)


def test_decide_maps_results_to_settlements() -> None:
    policy = RetryPolicy(initial_delay=10, jitter=0)
    assert decide(_entry(), CallbackResult(ok=True, status=200), policy=policy, now=5, rand=0).outcome == "delivered"
    gone = decide(_entry(), CallbackResult(ok=False, status=410, permanent=True), policy=policy, now=5, rand=0)
    assert gone.outcome == "dead" and gone.error == "http 410"
    retry = decide(_entry(2), CallbackResult(ok=False, status=503), policy=policy, now=5, rand=0)
    assert (retry.outcome, retry.at) == ("retry", 5 + 40)
    later = decide(_entry(), CallbackResult(ok=False, status=429, retry_after=120), policy=policy, now=5, rand=0)
    assert later.at == 125  # Retry-After wins when it is later than our back-off
    late = decide(_entry(5), CallbackResult(ok=False, error="timeout"), policy=policy, now=DAY - 1, rand=0)
    assert late.outcome == "dead" and "timeout" in late.error
