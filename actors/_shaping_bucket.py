"""Token buckets in their GCRA form, and the adaptive (throttle-driven) rate of a connector.

Theory of operation. A bucket of ``burst`` tokens refilled at ``rate`` tokens a second is kept
as one number, the *theoretical arrival time* ``tat`` of GCRA (ITU-T I.371): the bucket is
full at any time >= ``tat``, and at time ``now`` it holds ``burst - (tat - now) * rate`` tokens.
Taking ``n`` tokens moves ``tat`` forward by ``n / rate``. This is the same arithmetic as a
token counter and a refill stamp, with one float of state and no refill step.

A charge larger than the whole burst (a 5-part message on a bucket of burst 2) is allowed
once the bucket is full; the bucket is then empty and starts refilling ``(n - burst) / rate``
seconds later. The token count never goes negative and the long-run rate stays exact.

Must not import: trio, lmdb, httpx, gateway, adapters. Pure; time is an argument.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final

NEVER: Final = math.inf
# Waits shorter than this are rounding noise of repeated ``tat += 1/rate`` additions.
EPSILON: Final = 1e-9
# How much later than a reservation's holder another owner may take from a full bucket.
HOLDER_FIRST: Final = 1e-6


class TokenBucket:
    """A token bucket of ``burst`` tokens refilled at ``rate`` tokens per second; starts full."""

    __slots__ = ("_interval", "_tat", "_tau", "burst", "holder", "rate", "reserved", "waiters")
    _next_step: float = NEVER  # when an adaptive rate must be re-read (never, for this class)

    def __init__(self, rate: float, burst: float) -> None:
        if not (rate > 0 and burst > 0):
            raise ValueError("a bucket needs rate > 0 and burst > 0")
        self.rate = rate
        self.burst = burst
        self._interval = 1.0 / rate
        self._tau = burst / rate
        self._tat = -NEVER
        # A reservation (see take_all): the first in line this bucket held back, what it needs,
        # and who is in line after it (kept by the caller).
        self.holder: object = None
        self.reserved = 0.0
        self.waiters: deque[object] = deque()

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (0 <= tokens <= burst)."""
        return max(0.0, self.burst - max(0.0, self._tat - now) * self.rate)

    def wait(self, n: float, now: float) -> float:
        """Seconds from ``now`` until ``n`` tokens can be taken (0.0: now). Takes nothing."""
        need = n * self._interval
        if need > self._tau:  # noqa: PLR1730 - not min(): no builtin call per message
            need = self._tau
        w = self._tat - now - self._tau + need
        return w if w > EPSILON else 0.0

    def charge(self, n: float, now: float) -> None:
        """Take ``n`` tokens; call only when :meth:`wait` said 0."""
        tat = self._tat  # not max(tat, now) below: a builtin call costs more, once a message
        self._tat = (tat if tat > now else now) + n * self._interval  # noqa: FURB136 - hot path

    def take(self, n: float, now: float) -> float:
        """Take ``n`` tokens if they are there and return 0.0, else return the wait (seconds)."""
        w = self.wait(n, now)
        if w == 0.0:
            self.charge(n, now)
        return w

    def set_rate(self, rate: float, now: float) -> None:
        """Change the refill rate, keeping the tokens the bucket holds at ``now``."""
        deficit = max(0.0, self._tat - now) * self.rate  # tokens missing (or owed)
        self.rate = rate
        self._interval = 1.0 / rate
        self._tau = self.burst / rate
        self._tat = now + deficit / rate if deficit else -NEVER

    def is_full(self, now: float) -> bool:
        """True when the bucket is as a new one would be (so it may be forgotten)."""
        return self._tat <= now

    def step(self, now: float) -> None:
        """Re-read a changing rate (``take_all`` calls it once ``_next_step`` is due): none here."""


@dataclass(frozen=True, slots=True)
class Adaptive:
    """How a connector's rate answers throttling (multiplicative decrease, linear recovery).

    Attributes:
        decrease: factor applied to the current rate on a throttle answer.
        floor: the rate never goes below this fraction of the configured rate.
        hold: seconds after the last decrease before recovery starts.
        recover: fraction of the configured rate regained per second once recovering.
        cooldown: throttle answers within this many seconds of the last decrease count once
            (a full window of parts comes back throttled together).
    """

    decrease: float = 0.5
    floor: float = 0.05
    hold: float = 5.0
    recover: float = 0.02
    cooldown: float = 1.0

    def __post_init__(self) -> None:
        if not (0 < self.decrease < 1 and 0 < self.floor <= 1):
            raise ValueError("Adaptive needs 0 < decrease < 1 and 0 < floor <= 1")
        if self.hold < 0 or self.recover <= 0 or self.cooldown < 0:
            raise ValueError("Adaptive needs hold >= 0, recover > 0, cooldown >= 0")


class AdaptiveBucket(TokenBucket):
    """A connector's bucket whose rate drops on throttling and climbs back by itself.

    The effective rate is ``base * factor(now)``; the factor is re-read at most every
    ``STEP`` seconds while it is below 1, so the common (unthrottled) path costs one compare.
    """

    __slots__ = ("_cut_at", "_cut_factor", "_next_step", "adaptive", "base")
    STEP: Final = 0.1

    def __init__(self, rate: float, burst: float, adaptive: Adaptive) -> None:
        super().__init__(rate, burst)
        self.base = rate
        self.adaptive = adaptive
        self._cut_factor = 1.0
        self._cut_at = -NEVER
        self._next_step = NEVER

    def factor(self, now: float) -> float:
        """The fraction of the configured rate in force at ``now``."""
        a = self.adaptive
        if self._cut_factor >= 1.0:
            return 1.0
        climbing = max(0.0, now - self._cut_at - a.hold)
        return min(1.0, self._cut_factor + a.recover * climbing)

    def throttled(self, now: float) -> bool:
        """Apply one throttle answer received at ``now``; False when inside the cooldown."""
        a = self.adaptive
        if now - self._cut_at < a.cooldown:
            return False
        self._cut_factor = max(a.floor, self.factor(now) * a.decrease)
        self._cut_at = now
        self.set_rate(self.base * self._cut_factor, now)
        self._next_step = now + a.hold
        return True

    def step(self, now: float) -> None:
        """Re-read the adaptive rate at ``now`` (``take_all`` calls it when it is due)."""
        f = self.factor(now)
        self.set_rate(self.base * f, now)
        if f >= 1.0:
            self._cut_factor = 1.0
            self._next_step = NEVER
        else:
            self._next_step = now + self.STEP

    def wait(self, n: float, now: float) -> float:
        if now >= self._next_step:
            self.step(now)
        need = n * self._interval  # TokenBucket.wait inlined: this runs for every message
        if need > self._tau:  # noqa: PLR1730 - not min(): no builtin call per message
            need = self._tau
        w = self._tat - now - self._tau + need
        return w if w > EPSILON else 0.0

    def is_full(self, now: float) -> bool:
        return self._next_step == NEVER and TokenBucket.is_full(self, now)


def take_all(buckets: tuple[TokenBucket, ...], n: float, now: float,
             owner: object = None) -> tuple[float, TokenBucket | None]:
    """Take ``n`` tokens from every bucket, or from none.

    Returns ``(0.0, None)`` when taken, else ``(wait, binding)``: the longest wait in seconds
    and the bucket that imposes it. The same arithmetic as ``wait`` then ``charge`` on each
    bucket, inlined: the rate limiter runs this for every message.

    Reservations keep a message of many segments from being starved by single-segment ones
    sharing a bucket: a bucket's ``holder`` (the caller's business: the first in line of
    those the bucket held back) is owed ``reserved`` tokens, so other owners must leave them
    there. They need ``n + reserved``, at most a full bucket, so a full bucket always lets
    someone through (two holders can never block each other), and the holder, which needs
    no more than a full bucket, is due ``HOLDER_FIRST`` earlier.
    """
    w = 0.0
    binding = None
    for b in buckets:
        if now >= b._next_step:
            b.step(now)
        holder = b.holder
        tau = b._tau
        if holder is None or holder is owner:
            need = n * b._interval
            if need > tau:  # noqa: PLR1730 - not min(): no builtin call per message
                need = tau
        else:
            need = (n + b.reserved) * b._interval
            if need > tau:  # only a full bucket will do: let the holder's wake come first
                need = tau + HOLDER_FIRST
        x = b._tat - now - tau + need
        if x > w:
            w = x
            binding = b
    if w > EPSILON:
        return w, binding
    for b in buckets:
        tat = b._tat  # not max(tat, now) below: a builtin call costs more, once a message
        b._tat = (tat if tat > now else now) + n * b._interval  # noqa: FURB136 - hot path
    return _TAKEN


_TAKEN: Final[tuple[float, TokenBucket | None]] = (0.0, None)
