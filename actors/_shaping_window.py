"""Send windows: the hours of the day, in a time zone, in which an account may send.

A window is one daily interval ``start``–``end`` (local wall-clock time, ``HH:MM``) on the
given weekdays (Monday = 0). ``end`` earlier than ``start`` crosses midnight (22:00–06:00
opens on the listed day and closes the next morning); ``start == end`` is the whole day.
Local times are turned into instants with :mod:`zoneinfo`, so daylight-saving changes move
the window with the wall clock (a start inside a skipped hour is taken as the instant
Python's ``fold=0`` rule gives).

Must not import: trio, lmdb, httpx, gateway, adapters. Pure; time is an argument.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo

from actors._shaping_bucket import NEVER

ALL_DAYS = (0, 1, 2, 3, 4, 5, 6)


def _parse_hhmm(text: str) -> dt.time:
    hours, _, minutes = text.partition(":")
    h, m = int(hours), int(minutes or 0)
    if h == 24 and m == 0:
        return dt.time(0, 0)
    return dt.time(h, m)


@dataclass(frozen=True)
class SendWindow:
    """Allowed sending hours, e.g. ``SendWindow("Europe/Lisbon", "09:00", "20:00", (0, 1, 2))``.

    Raises:
        ValueError: a malformed time or weekday; ``zoneinfo`` errors for an unknown zone.
    """

    tz: str = "UTC"
    start: str = "08:00"
    end: str = "20:00"
    days: tuple[int, ...] = ALL_DAYS

    def __post_init__(self) -> None:
        _parse_hhmm(self.start), _parse_hhmm(self.end)
        if not self.days or any(d not in ALL_DAYS for d in self.days):
            raise ValueError("days are weekday numbers 0 (Monday) to 6 (Sunday)")
        ZoneInfo(self.tz)

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _interval(self, day: dt.date) -> tuple[float, float]:
        start, end = _parse_hhmm(self.start), _parse_hhmm(self.end)
        opens = dt.datetime.combine(day, start, self._zone)
        close_day = day if end > start else day + dt.timedelta(days=1)
        closes = dt.datetime.combine(close_day, end, self._zone)
        return opens.timestamp(), closes.timestamp()

    def state(self, now: float) -> tuple[bool, float]:
        """``(True, closes_at)`` when open at ``now``, else ``(False, next_opens_at)``."""
        today = dt.datetime.fromtimestamp(now, self._zone).date()
        next_open = NEVER
        for offset in range(-1, 9):
            day = today + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens, closes = self._interval(day)
            if opens <= now < closes:
                return True, closes
            if opens > now:
                next_open = min(next_open, opens)
        return False, next_open


class WindowGate:
    """A :class:`SendWindow` with its current state cached until the next change."""

    __slots__ = ("_open", "_until", "window")

    def __init__(self, window: SendWindow) -> None:
        self.window = window
        self._open = False
        self._until = -NEVER

    def wait(self, now: float) -> float:
        """0.0 when sending is allowed at ``now``, else seconds until the window opens."""
        if now >= self._until:
            self._open, self._until = self.window.state(now)
        return 0.0 if self._open else self._until - now
