"""Pure decisions of the notifier: retry schedule, circuit breaker, per-endpoint concurrency.

Theory of operation. Every decision takes ``now`` (Unix seconds) and, where randomness is
involved, a number ``rand`` in [0, 1); nothing here reads a clock or does I/O, so plain pytest
drives it.

Retry schedule (``actors.backoff.delay``): attempt ``n`` (1 = the first retry) waits
``min(max_delay, initial_delay * factor ** (n - 1))``, scaled by a jitter factor drawn
uniformly from ``[1 - jitter, 1 + jitter]`` (so endpoints that failed together do not retry
together), never beyond ``max_delay``. Retrying stops when the next attempt would fall after
``first_attempt_at + max_age`` (24 h by default): the callback is dead-lettered.

Circuit breaker, one per endpoint (scheme://host:port)::

    state      event                         next state
    CLOSED     failure, consecutive < N      CLOSED
    CLOSED     failure, consecutive == N     OPEN      (until now + cooldown)
    OPEN       now >= open_until             HALF_OPEN (one probe allowed)
    HALF_OPEN  probe succeeds                CLOSED    (cooldown reset)
    HALF_OPEN  probe fails                   OPEN      (cooldown doubled, up to max_cooldown)
    any        success                       CLOSED

While a breaker is OPEN nothing is sent to that endpoint: callbacks that fall due are
postponed to the end of the cooldown instead of burning their retry attempts.

Concurrency: at most ``per_endpoint`` requests in flight to one endpoint (and ``max_in_flight``
overall, enforced by the notifier).

Must not import: gateway, adapters, lmdb, httpx, trio.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

from actors import backoff

DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the notifier retries, limits and batches callbacks. All times in seconds.

    Attributes:
        initial_delay: wait before the first retry.
        factor: growth of the wait per attempt.
        max_delay: cap on one wait.
        jitter: relative spread of each wait (0.2 = ±20 %).
        max_age: stop retrying this long after the first attempt (dead-letter).
        request_timeout: deadline of one HTTP request, applied at the call site.
        per_endpoint: requests in flight to one endpoint at most.
        max_in_flight: requests in flight overall at most.
        breaker_failures: consecutive failures that open an endpoint's breaker.
        breaker_cooldown: first open period; doubles on each failed probe.
        breaker_max_cooldown: cap on the open period.
        batch_size: events per request; 1 sends one JSON object, more sends a JSON array.
        scan_limit: outbox entries read per scheduling pass.
        drain_timeout: after the inbox closes, keep delivering what is due for this long.
        poll_interval: look at the outbox at least this often even when nothing is due, so
            entries written by someone else (a dead-letter replay, another worker) are seen.
    """

    initial_delay: float = 2.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.2
    max_age: float = DAY
    request_timeout: float = 10.0
    per_endpoint: int = 8
    max_in_flight: int = 256
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    breaker_max_cooldown: float = 600.0
    batch_size: int = 1
    scan_limit: int = 2000
    drain_timeout: float = 5.0
    poll_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.initial_delay <= 0 or self.factor < 1 or self.max_delay < self.initial_delay:
            raise ValueError("retry delays must be positive and non-decreasing")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if min(self.per_endpoint, self.max_in_flight, self.batch_size, self.breaker_failures) < 1:
            raise ValueError("limits must be at least 1")

    def delay(self, attempt: int, rand: float) -> float:
        """Wait before retry number ``attempt`` (1-based), jittered by ``rand`` in [0, 1)."""
        return backoff.delay(attempt, base=self.initial_delay, cap=self.max_delay,
                             factor=self.factor, jitter=self.jitter, rand=rand)

    def next_attempt_at(
        self, *, attempt: int, first_attempt_at: float, now: float, rand: float
    ) -> float | None:
        """When retry ``attempt`` should run, or None when the callback should be dead-lettered."""
        at = now + self.delay(attempt, rand)
        return None if at > first_attempt_at + self.max_age else at

    def expired(self, *, first_attempt_at: float, now: float) -> bool:
        """True once the retry window of a callback first tried at ``first_attempt_at`` is over."""
        return now > first_attempt_at + self.max_age


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class CircuitBreaker:
    """One endpoint's breaker (see the table in the module docstring). Mutable, single owner."""

    failures_to_open: int
    cooldown: float
    max_cooldown: float
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    open_until: float = 0.0
    current_cooldown: float = 0.0
    probe_in_flight: bool = False

    def allow(self, now: float) -> bool:
        """May a request start now? In HALF_OPEN, only one probe at a time."""
        if self.state is BreakerState.OPEN and now >= self.open_until:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.probe_in_flight:
            self.probe_in_flight = True
            return True
        return False

    def retry_at(self, now: float) -> float:
        """When a callback refused by :meth:`allow` should be looked at again."""
        return max(now, self.open_until) if self.state is BreakerState.OPEN else now

    def on_success(self, now: float) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.current_cooldown = 0.0
        self.probe_in_flight = False

    def on_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN:
            self.current_cooldown = min(self.max_cooldown, 2 * max(self.current_cooldown, self.cooldown))
            self._open(now)
        elif self.state is BreakerState.CLOSED and self.consecutive_failures >= self.failures_to_open:
            self.current_cooldown = self.cooldown
            self._open(now)
        self.probe_in_flight = False

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.open_until = now + self.current_cooldown


@dataclass(slots=True)
class Endpoint:
    """What the notifier knows about one endpoint: its breaker and requests in flight."""

    breaker: CircuitBreaker
    in_flight: int = 0


@dataclass(slots=True)
class Endpoints:
    """Per-endpoint gate: breaker plus concurrency cap. Mutable, owned by one notifier."""

    policy: RetryPolicy
    table: dict[str, Endpoint] = field(default_factory=dict)

    def get(self, endpoint: str) -> Endpoint:
        found = self.table.get(endpoint)
        if found is None:
            p = self.policy
            breaker = CircuitBreaker(p.breaker_failures, p.breaker_cooldown, p.breaker_max_cooldown)
            found = self.table[endpoint] = Endpoint(breaker)
        return found

    def acquire(self, endpoint: str, now: float) -> bool:
        """Start a request to ``endpoint`` if the cap and the breaker allow it."""
        ep = self.get(endpoint)
        if ep.in_flight >= self.policy.per_endpoint or not ep.breaker.allow(now):
            return False
        ep.in_flight += 1
        return True

    def release(self, endpoint: str, *, ok: bool, now: float) -> None:
        """A request to ``endpoint`` finished; ``ok`` feeds the breaker."""
        ep = self.get(endpoint)
        ep.in_flight -= 1
        if ok:
            ep.breaker.on_success(now)
        else:
            ep.breaker.on_failure(now)


@functools.lru_cache(maxsize=4096)
def endpoint_of(url: str) -> str:
    """The endpoint a URL belongs to for breaker and concurrency purposes: scheme://host:port.

    Cached: the notifier asks once per request, and callback URLs are few."""
    split = urlsplit(url)
    scheme = split.scheme.lower()
    try:
        port = split.port or (443 if scheme == "https" else 80)
    except ValueError:
        port = 0
    host = (split.hostname or "").lower()
    return f"{scheme}://{host}:{port}"
