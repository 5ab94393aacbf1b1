"""Send windows in a time zone, tested with explicit instants."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.shaping import SendWindow, WindowGate

UTC = dt.UTC


def at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def test_open_inside_and_closed_outside_with_next_change() -> None:
    w = SendWindow("UTC", "09:00", "17:00")
    assert w.state(at(2026, 11, 24, 12, 0)) == (True, at(2026, 11, 24, 17, 0))
    assert w.state(at(2026, 11, 24, 17, 0)) == (False, at(2026, 11, 25, 9, 0))
    assert w.state(at(2026, 11, 24, 3, 0)) == (False, at(2026, 11, 24, 9, 0))


def test_weekdays_only_skips_the_weekend() -> None:
    w = SendWindow("UTC", "09:00", "17:00", days=(0, 1, 2, 3, 4))
    saturday_noon = at(2026, 11, 28, 12, 0)
    assert w.state(saturday_noon) == (False, at(2026, 11, 30, 9, 0))


def test_window_across_midnight() -> None:
    w = SendWindow("UTC", "22:00", "06:00")
    assert w.state(at(2026, 11, 24, 23, 0)) == (True, at(2026, 11, 25, 6, 0))
    assert w.state(at(2026, 11, 25, 2, 0)) == (True, at(2026, 11, 25, 6, 0))
    assert w.state(at(2026, 11, 25, 12, 0)) == (False, at(2026, 11, 25, 22, 0))


def test_time_zone_and_daylight_saving_follow_the_wall_clock() -> None:
    w = SendWindow("America/New_York", "09:00", "10:00")
    # 2026-03-08: New York moves from UTC-5 to UTC-4.
    assert w.state(at(2026, 3, 7, 13, 0)) == (False, at(2026, 3, 7, 14, 0))
    assert w.state(at(2026, 3, 8, 12, 0)) == (False, at(2026, 3, 8, 13, 0))


def test_start_equal_end_is_the_whole_day() -> None:
    w = SendWindow("UTC", "00:00", "00:00")
    assert w.state(at(2026, 11, 24, 12, 0))[0]


@pytest.mark.parametrize("kwargs", [{"start": "25:00"}, {"days": (7,)}, {"days": ()},
                                    {"tz": "Mars/Olympus"}])
def test_bad_windows_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - ValueError or ZoneInfoNotFoundError
        SendWindow(**kwargs)  # type: ignore[arg-type]


def test_gate_caches_until_the_next_change() -> None:
    gate = WindowGate(SendWindow("UTC", "09:00", "17:00"))
    assert gate.wait(at(2026, 11, 24, 8, 0)) == 3600.0
    assert gate.wait(at(2026, 11, 24, 8, 30)) == 1800.0
    assert gate.wait(at(2026, 11, 24, 9, 0)) == 0.0
    assert gate.wait(at(2026, 11, 24, 17, 0)) == 16 * 3600.0

hhmm = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))


@settings(max_examples=150, deadline=None)
@given(
    tz=st.sampled_from(["UTC", "Europe/Lisbon", "America/New_York", "Asia/Kolkata",
                        "Australia/Lord_Howe"]),
    start=hhmm, end=hhmm,
    days=st.sets(st.integers(0, 6), min_size=1).map(lambda d: tuple(sorted(d))),
    now=st.floats(min_value=1.7e9, max_value=1.9e9),
)
def test_state_names_a_real_next_change(tz: str, start: str, end: str,
                                        days: tuple[int, ...], now: float) -> None:
    w = SendWindow(tz, start, end, days)
    is_open, change = w.state(now)
    assert now < change < now + 8 * 86_400
    if is_open:
        assert w.state(change - 1e-3)[0]  # open all the way to the change
    else:
        assert w.state(change)[0]  # opens exactly then
        assert not w.state((now + change) / 2)[0]  # and not before
