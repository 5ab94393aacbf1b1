"""Per-key state the shaper builds on first sight: accounts, connectors, campaigns and lanes.

Lanes held back by a shared bucket stand in line for it (:func:`reserve`): its first in line
is the bucket's ``holder``, owed its segments (``take_all`` makes other lanes leave them).

A connector without a configured limit may still answer throttling (``adapt_without_limit``):
it counts the segments it releases, and a throttle answer installs a temporary adaptive
bucket whose base is the rate measured just before (cut at once, recovering by itself);
once recovered, the temporary bucket is removed and the connector is unlimited again.

Must not import: trio, lmdb, httpx, gateway, adapters. Pure; time is an argument.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

from actors._shaping_bucket import AdaptiveBucket, TokenBucket
from actors._shaping_rules import AccountRules, CampaignRules, ConnectorRules, Limit
from actors._shaping_window import WindowGate

MEASURE_EVERY: Final = 1.0  # seconds per window of a connector's measured rate
MIN_MEASURED_RATE: Final = 1.0  # segments/s assumed when a throttle comes before any traffic
MIN_SPAN: Final = 0.05  # seconds: the shortest window a rate is estimated over


def longest_prefix(to: str, lengths: tuple[int, ...], table: dict[str, Limit]) -> str:
    """The longest key of ``table`` that ``to`` starts with ("" when none)."""
    for n in lengths:
        if to[:n] in table:
            return to[:n]
    return ""


def _lengths(prefixes: dict[str, Limit]) -> tuple[int, ...]:
    return tuple(sorted({len(p) for p in prefixes}, reverse=True))


class Account:
    """An account's rules resolved: its bucket, window gate, validity and re-contact window."""

    __slots__ = ("bucket", "gate", "lengths", "name", "prefixes", "recontact", "rules", "validity")

    def __init__(self, name: str, rules: AccountRules) -> None:
        self.name = name
        self.rules = rules
        self.bucket = TokenBucket(rules.limit.rate, rules.limit.burst) if rules.limit else None
        self.gate = WindowGate(rules.window) if rules.window else None
        self.validity = rules.validity
        self.recontact = rules.no_recontact_hours * 3600.0
        self.prefixes = dict(rules.prefixes)
        self.lengths = _lengths(self.prefixes)


class Connector:
    """A connector's bucket (configured, or temporary after a throttle) and its measured rate."""

    __slots__ = ("_mark_at", "_mark_released", "_measured", "bucket", "lengths", "name",
                 "prefixes", "released", "rules", "temporary")

    def __init__(self, name: str, rules: ConnectorRules, now: float) -> None:
        self.name = name
        self.rules = rules
        lim = rules.limit
        self.bucket = AdaptiveBucket(lim.rate, lim.burst, rules.adaptive) if lim else None
        self.temporary = False
        self.prefixes = dict(rules.prefixes)
        self.lengths = _lengths(self.prefixes)
        self.released = 0.0  # segments released on this connector, ever
        self._mark_at = now  # the measuring window opens when the connector is first seen
        self._mark_released = 0.0
        self._measured = 0.0

    def measure(self, now: float) -> None:
        """Close the current measuring window if it is ``MEASURE_EVERY`` old."""
        span = now - self._mark_at
        if span >= MEASURE_EVERY:
            self._measured = (self.released - self._mark_released) / span
            self._mark_at, self._mark_released = now, self.released

    def install_temporary(self, now: float) -> AdaptiveBucket:
        """A throttle answer on an unlimited connector: a bucket at the measured rate, cut.

        The rate is the larger of the last full window's and the current window's (over at
        least ``MIN_SPAN``): overestimating only makes the cut gentler, underestimating would
        stall the connector.
        """
        span = max(now - self._mark_at, MIN_SPAN)
        current = (self.released - self._mark_released) / span
        base = max(self._measured, current, MIN_MEASURED_RATE)
        self.bucket = AdaptiveBucket(base, max(1.0, base / 10.0), self.rules.adaptive)
        self.bucket.throttled(now)
        self.temporary = True
        return self.bucket

    def recovered(self, now: float) -> AdaptiveBucket | None:
        """The temporary bucket, once its rate is back to its base (the lanes drop it)."""
        b = self.bucket
        if self.temporary and b is not None and b.factor(now) >= 1.0:
            self.bucket, self.temporary = None, False
            return b
        return None


class Campaign:
    """Slices ("X % every N s") and pace ("M a minute") of one campaign, in messages."""

    __slots__ = ("bucket", "gate", "last_seen", "released", "rules", "size", "start")

    def __init__(self, rules: CampaignRules, now: float) -> None:
        self.rules = rules
        pct = rules.slice_percent
        self.size = math.ceil(rules.total * pct / 100.0) if pct else 0
        self.start = rules.start or now
        self.released = rules.released
        pm = rules.per_minute
        self.bucket = TokenBucket(pm / 60.0, rules.per_minute_burst) if pm else None
        self.gate = WindowGate(rules.window) if rules.window else None
        self.last_seen = now

    def wait(self, now: float) -> float:
        """0.0 when one more message of the campaign may go at ``now``, else seconds to wait."""
        if self.size:
            if now < self.start:
                return self.start - now
            every = self.rules.slice_every
            k = int((now - self.start) // every)
            if self.released >= (k + 1) * self.size:
                return self.start + (k + 1) * every - now
        return self.bucket.wait(1, now) if self.bucket else 0.0

    def charge(self, now: float) -> None:
        """Count one released message."""
        self.released += 1
        self.last_seen = now
        if self.bucket:
            self.bucket.charge(1, now)


class Lane:
    """Messages that hit the same buckets, gates and campaign, in arrival order."""

    __slots__ = ("buckets", "campaign", "ckey", "conn", "gates", "promised", "queue",
                 "recontact", "reserved_n", "reserving", "scheduled", "timed")

    def __init__(self, buckets: tuple[TokenBucket, ...], gates: tuple[WindowGate, ...],
                 campaign: Campaign | None, recontact: float, conn: Connector,
                 ckey: str = "") -> None:
        self.queue: deque[list[Any]] = deque()  # entries [row | None, deadline]
        self.buckets = buckets
        self.gates = gates
        self.campaign = campaign
        self.timed = bool(gates) or campaign is not None  # a window or campaign to consult
        self.recontact = recontact
        self.conn = conn
        self.ckey = ckey  # account 0x00 campaign ("" without one): where "paused" is read
        self.scheduled = False
        self.reserving: TokenBucket | None = None  # the bucket whose line we stand in
        self.reserved_n = 0.0  # what our head needs from it
        self.promised = 0.0  # the turns handed out to deferred messages run up to this time


def reserve(lane: Lane, bucket: TokenBucket | None, n: float) -> None:
    """Put ``lane`` in line for the bucket that held it back (first in line: its holder).

    A lane stands in one line only, that of the bucket binding it now: holding tokens
    while waiting for another bucket would only idle them.
    """
    if bucket is not None and lane.reserving is bucket:
        lane.reserved_n = n
        if bucket.holder is lane:
            bucket.reserved = n
        return
    unreserve(lane)
    if bucket is None:
        return
    lane.reserving, lane.reserved_n = bucket, n
    if bucket.holder is None:
        bucket.holder, bucket.reserved = lane, n
    else:
        bucket.waiters.append(lane)


def unreserve(lane: Lane) -> None:
    """``lane`` leaves its line; if it was first, the next still waiting becomes holder."""
    b = lane.reserving
    if b is None:
        return
    lane.reserving = None
    if b.holder is lane:
        while b.waiters:
            nxt = b.waiters.popleft()
            if isinstance(nxt, Lane) and nxt.reserving is b:  # else it left the line
                b.holder, b.reserved = nxt, nxt.reserved_n
                return
        b.holder, b.reserved = None, 0.0
