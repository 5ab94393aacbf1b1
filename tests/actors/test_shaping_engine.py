"""The Shaper's decisions, driven with explicit ``now`` (no trio)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import messages
from actors.messages import ConnectorThrottled, Message, MsgId
from actors.shaping import (
    AccountRules,
    CampaignRules,
    ConnectorRules,
    Limit,
    Shaper,
    ShapingRules,
    rows_from_batch,
)

MSG_ID = 2


def row(i: int | str, *, account: str = "acc", to: str = "+447700900001", sender: str = "S",
        parts: int = 1, **kw: Any) -> list[Any]:
    kw.setdefault("accepted_at", 0.0)
    return messages.to_wire(Message(MsgId(str(i)), account, to, sender, "hi", "transliterate",
                                    parts=parts, **kw))


def released_ids(shaper: Shaper) -> list[str]:
    out = [r[MSG_ID] for r in shaper.released]
    shaper.released.clear()
    return out


def finished(shaper: Shaper) -> list[tuple[str, str]]:
    out = [(r[2], r[4]) for r in shaper.finished]
    shaper.finished.clear()
    return out


class Contacts:
    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table

    def last_contacted(self, account: str, number: str) -> float | None:
        return self.table.get((account, number))


def test_no_rules_releases_everything_in_order() -> None:
    s = Shaper(ShapingRules())
    for i in range(5):
        s.admit(row(i, to=f"+4477009000{i}"), 100.0)
    assert released_ids(s) == ["0", "1", "2", "3", "4"]
    assert s.held == 0 and s.next_wake() == float("inf")


def test_deadline_passed_on_arrival_is_expired() -> None:
    s = Shaper(ShapingRules(accounts={"v": AccountRules(validity=60.0)}))
    s.admit(row(1, not_after=50.0), 100.0)
    s.admit(row(2, account="v", accepted_at=30.0), 100.0)  # 30 + 60 < 100
    s.admit(row(3, account="v", accepted_at=50.0), 100.0)
    s.admit(row(4, account="v", accepted_at=50.0, not_after=90.0), 100.0)  # earlier wins
    assert finished(s) == [("1", "expired"), ("2", "expired"), ("4", "expired")]
    assert released_ids(s) == ["3"]


def test_held_message_expires_at_its_deadline() -> None:
    s = Shaper(ShapingRules(default_account=AccountRules(limit=Limit(1, 1))))
    s.admit(row(1), 0.0)
    s.admit(row(2, not_after=0.5), 0.0)
    s.admit(row(3), 0.0)
    assert released_ids(s) == ["1"] and s.held == 2
    assert s.next_wake() == 0.5
    s.poll(0.5)
    assert finished(s) == [("2", "expired")] and s.held == 1
    s.poll(1.0)
    assert released_ids(s) == ["3"] and s.held == 0


def test_tightest_bucket_wins_and_nothing_is_taken_unless_all_can_be() -> None:
    rules = ShapingRules(default_account=AccountRules(limit=Limit(100, 100)),
                         default_connector=ConnectorRules(limit=Limit(1, 1)))
    s = Shaper(rules)
    for i in range(10):
        s.admit(row(i), 0.0)
    assert released_ids(s) == ["0"]
    assert s.next_wake() == pytest.approx(1.0)
    s.poll(1.0)
    assert released_ids(s) == ["1"]


def test_segments_are_charged() -> None:
    s = Shaper(ShapingRules(default_account=AccountRules(limit=Limit(10, 10))))
    for i in range(4):
        s.admit(row(i, parts=3), 0.0)
    assert released_ids(s) == ["0", "1", "2"]  # 9 of 10 tokens
    assert s.next_wake() == pytest.approx(0.2)


def test_a_blocked_sender_does_not_stall_another() -> None:
    s = Shaper(ShapingRules(default_account=AccountRules(per_sender=Limit(1, 1))))
    for i in range(50):
        s.admit(row(f"a{i}", sender="A"), 0.0)
    s.admit(row("b0", sender="B"), 0.0)
    assert released_ids(s) == ["a0", "b0"]
    assert s.held == 49


def test_named_sender_limit_overrides_per_sender() -> None:
    rules = ShapingRules(default_account=AccountRules(per_sender=Limit(1, 1),
                                                      senders={"BIG": Limit(5, 5)}))
    s = Shaper(rules)
    for i in range(10):
        s.admit(row(f"b{i}", sender="BIG"), 0.0)
    assert len(released_ids(s)) == 5


def test_longest_destination_prefix_applies() -> None:
    rules = ShapingRules(default_account=AccountRules(
        prefixes={"+44": Limit(100, 100), "+447": Limit(1, 1)}))
    s = Shaper(rules)
    for i in range(3):
        s.admit(row(f"m{i}", to=f"+44770090000{i}"), 0.0)
        s.admit(row(f"l{i}", to=f"+44207946000{i}"), 0.0)
    assert released_ids(s) == ["m0", "l0", "l1", "l2"]


def test_route_picks_the_connector_buckets() -> None:
    rules = ShapingRules(
        connectors={"slow": ConnectorRules(limit=Limit(1, 1), prefixes={"+351": Limit(9, 9)})},
        route=lambda to: "slow" if to.startswith("+351") else "fast",
    )
    s = Shaper(rules)
    for i in range(3):
        s.admit(row(f"pt{i}", to=f"+35191000000{i}"), 0.0)
        s.admit(row(f"uk{i}", to=f"+44770090000{i}"), 0.0)
    assert released_ids(s) == ["pt0", "uk0", "uk1", "uk2"]
    assert s.connector_rate("slow", 0.0) == 1 and s.connector_rate("fast", 0.0) == float("inf")


def test_same_number_twice_in_one_batch_is_recently_contacted() -> None:
    s = Shaper(ShapingRules(default_account=AccountRules(no_recontact_hours=36)))
    s.admit(row(1), 0.0)
    s.admit(row(2), 0.0)
    s.admit(row(3, account="other"), 0.0)
    s.admit(row(4, to="+447700900002"), 0.0)
    assert released_ids(s) == ["1", "3", "4"]
    assert finished(s) == [("2", "recently_contacted")]
    s.admit(row(5), 36 * 3600.0)  # the window has passed
    assert released_ids(s) == ["5"]


def test_store_contacts_are_consulted() -> None:
    contacts = Contacts({("acc", "+447700900001"): 1000.0})
    s = Shaper(ShapingRules(default_account=AccountRules(no_recontact_hours=1)), contacts)
    s.admit(row(1), 1000.0 + 3599)
    assert finished(s) == [("1", "recently_contacted")]
    s.admit(row(2), 1000.0 + 3600)
    assert released_ids(s) == ["2"]


def test_campaign_window_applies_only_to_its_messages() -> None:
    rules = ShapingRules(campaigns={"c": CampaignRules(no_recontact_hours=2)})
    s = Shaper(rules, Contacts({("acc", "+447700900001"): 0.0}))
    s.admit(row(1, campaign="c"), 3600.0)
    s.admit(row(2), 3600.0)
    assert finished(s) == [("1", "recently_contacted")]
    assert released_ids(s) == ["2"]


def test_no_recontact_is_judged_at_release_not_arrival() -> None:
    rules = ShapingRules(default_account=AccountRules(limit=Limit(1, 1), no_recontact_hours=1))
    s = Shaper(rules)
    s.admit(row(1, to="+1"), 0.0)
    s.admit(row(2, to="+2"), 0.0)
    s.admit(row(3, to="+1"), 0.0)
    s.poll(1.0)
    s.poll(2.0)
    assert released_ids(s) == ["1", "2"]
    assert finished(s) == [("3", "recently_contacted")]
    assert s.held == 0


def test_campaign_releases_exact_slices() -> None:
    # 20 recipients, 15 % every 20 minutes: slices of ceil(3.0) = 3.
    s = Shaper(ShapingRules(campaigns={"c": CampaignRules(total=20, slice_percent=15,
                                                          slice_every=1200)}))
    for i in range(20):
        s.admit(row(i, to=f"+{i}", campaign="c"), 0.0)
    got = [len(released_ids(s))]
    for k in range(1, 8):
        s.poll(k * 1200.0 - 0.001)
        assert released_ids(s) == []
        s.poll(k * 1200.0)
        got.append(len(released_ids(s)))
    assert got == [3, 3, 3, 3, 3, 3, 2, 0]


def test_campaign_with_a_start_and_a_restart_count() -> None:
    rules = ShapingRules(campaigns={"c": CampaignRules(total=10, slice_percent=50,
                                                       slice_every=60, start=100.0,
                                                       released=5)})
    s = Shaper(rules)
    for i in range(5):
        s.admit(row(i, to=f"+{i}", campaign="c"), 0.0)
    assert released_ids(s) == [] and s.next_wake() == 100.0
    s.poll(100.0)
    assert released_ids(s) == []  # slice 0 went before the restart
    s.poll(160.0)
    assert len(released_ids(s)) == 5


def test_campaign_per_minute() -> None:
    s = Shaper(ShapingRules(campaigns={"c": CampaignRules(per_minute=30)}))
    for i in range(5):
        s.admit(row(i, to=f"+{i}", campaign="c"), 0.0)
    assert len(released_ids(s)) == 1
    assert s.next_wake() == pytest.approx(2.0)


def test_unknown_campaign_is_not_shaped() -> None:
    s = Shaper(ShapingRules(campaigns={"c": CampaignRules(per_minute=1)}))
    for i in range(3):
        s.admit(row(i, to=f"+{i}", campaign="other"), 0.0)
    assert len(released_ids(s)) == 3


def test_throttle_lowers_the_connector_rate_and_it_recovers() -> None:
    s = Shaper(ShapingRules(default_connector=ConnectorRules(limit=Limit(100))))
    assert s.connector_rate("default", 0.0) == 100
    assert s.throttled("default", 10.0)
    assert s.connector_rate("default", 10.0) == 50
    assert s.connector_rate("default", 1000.0) == 100
    assert not s.throttled("default", 10.5)  # the same window of throttled parts


def test_sweep_forgets_idle_state_without_loosening_limits() -> None:
    rules = ShapingRules(default_account=AccountRules(per_sender=Limit(1, 1)))
    s = Shaper(rules)
    for i in range(100):
        s.admit(row(i, sender=f"S{i}"), 0.0)
    s.poll(0.0)
    assert len(released_ids(s)) == 100
    assert s.statistics()["buckets"] == 100
    s.poll(60.0)  # every bucket is full again: nothing to remember
    assert s.statistics() == {"held": 0, "lanes": 0, "buckets": 0, "contacts": 0}
    s.admit(row("x", sender="S1"), 120.0)
    s.poll(120.0)  # sweeps again while S1's bucket is empty: it must survive
    s.admit(row("y", sender="S1"), 120.5)
    assert released_ids(s) == ["x"]
    assert s.next_wake() == pytest.approx(121.0)


def test_rows_from_batch_accepts_messages_only() -> None:
    m = Message(MsgId("1"), "acc", "+1", "S", "hi", "ucs2", 0.0)
    assert rows_from_batch(messages.encode_batch([m])) == [messages.to_wire(m)]
    with pytest.raises(messages.DecodeError):
        rows_from_batch(messages.encode_batch([ConnectorThrottled("c", 0.0)]))
    with pytest.raises(messages.DecodeError):
        rows_from_batch(b"\xc1")
    with pytest.raises(messages.DecodeError):
        rows_from_batch(messages.encode(m))


def test_a_failing_route_finishes_that_message_only() -> None:
    def route(to: str) -> str:
        if to == "+0":
            raise LookupError("no route")
        return "default"

    s = Shaper(ShapingRules(route=route))
    s.admit(row(1, to="+0"), 0.0)
    s.admit(row(2, to="+1"), 0.0)
    assert finished(s) == [("1", "routing_failed")]
    assert released_ids(s) == ["2"]


def test_zero_parts_is_charged_as_one() -> None:
    s = Shaper(ShapingRules(default_account=AccountRules(limit=Limit(1, 1))))
    s.admit(row(1, parts=0), 0.0)
    s.admit(row(2, parts=0), 0.0)
    assert released_ids(s) == ["1"]


@settings(max_examples=40, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=50),
    burst=st.floats(min_value=1, max_value=20),
    sender_rate=st.floats(min_value=0.5, max_value=50),
    arrivals=st.lists(st.tuples(st.floats(min_value=0, max_value=20),
                                st.integers(min_value=1, max_value=5),
                                st.sampled_from("ABC")), min_size=1, max_size=80),
)
def test_every_message_goes_and_no_bucket_is_exceeded(
        rate: float, burst: float, sender_rate: float,
        arrivals: list[tuple[float, int, str]]) -> None:
    rules = ShapingRules(default_account=AccountRules(limit=Limit(rate, burst),
                                                      per_sender=Limit(sender_rate, 5)))
    s = Shaper(rules)
    arrivals.sort()
    parts_of = {str(i): (p, snd) for i, (_, p, snd) in enumerate(arrivals)}
    log: list[tuple[float, str]] = []
    i, now = 0, 0.0
    while i < len(arrivals) or s.held:
        now = min(arrivals[i][0] if i < len(arrivals) else float("inf"), s.next_wake())
        if i < len(arrivals) and arrivals[i][0] == now:
            s.admit(row(i, parts=arrivals[i][1], sender=arrivals[i][2]), now)
            i += 1
        s.poll(now)
        log += [(now, r[MSG_ID]) for r in s.released]
        s.released.clear()
    assert sorted(m for _, m in log) == sorted(parts_of)  # liveness: all released
    for t_end, _ in log:  # the account bucket over [0, t_end] (starts full at t=0)
        used = sum(parts_of[m][0] for t, m in log if t <= t_end)
        assert used <= burst + rate * t_end + max(0, 5 - burst) + 1e-6
    for sender in "ABC":
        mine = [(t, m) for t, m in log if parts_of[m][1] == sender]
        for t_end, _ in mine:
            used = sum(parts_of[m][0] for t, m in mine if t <= t_end)
            assert used <= 5 + sender_rate * t_end + 1e-6


def test_throttle_on_an_unlimited_connector_is_ignored_unless_asked() -> None:
    s = Shaper(ShapingRules())
    assert not s.throttled("default", 0.0)
    assert s.connector_rate("default", 0.0) == float("inf")


def test_an_early_throttle_does_not_stall_an_unlimited_connector() -> None:
    s = Shaper(ShapingRules(default_connector=ConnectorRules(adapt_without_limit=True)))
    s.poll(0.0)
    for i in range(500):  # one batch, then a throttle 10 ms later
        s.admit(row(i, to=f"+{i}"), 0.0)
    s.poll(0.0)
    assert s.throttled("default", 0.01)
    assert s.connector_rate("default", 0.01) >= 500 / 0.05 / 2  # not 0.5/s


def test_throttle_on_an_unlimited_connector_cuts_the_measured_rate_then_lifts() -> None:
    # Default Adaptive: halve, hold 5 s, +2 %/s, so 30 s to lift.
    s = Shaper(ShapingRules(default_connector=ConnectorRules(adapt_without_limit=True)))
    t, i = 0.0, 0
    while t < 3.0:  # 100 messages a second on an unlimited connector
        s.admit(row(i, to=f"+{i}"), t)
        s.poll(t)
        i, t = i + 1, round(t + 0.01, 6)
    assert s.connector_rate("default", t) == float("inf")
    assert s.throttled("default", t)
    assert s.connector_rate("default", t) == pytest.approx(50, rel=0.05)
    released_ids(s)
    for k in range(200):  # 200 more offered at once: paced at ~50/s now
        s.admit(row(f"x{k}", to=f"+x{k}"), t)
    assert len(released_ids(s)) < 20
    while s.next_wake() <= t + 1.0:
        s.poll(s.next_wake())
    assert 40 <= len(released_ids(s)) <= 60
    s.poll(t + 40.0)  # recovered: the temporary limit is gone and the backlog goes at once
    assert s.connector_rate("default", t + 40.0) == float("inf")
    assert s.held == 0
    s.admit(row("after", to="+after"), t + 40.0)
    assert "after" in released_ids(s)


def test_without_a_route_any_connector_throttle_slows_the_default_connector() -> None:
    s = Shaper(ShapingRules(default_connector=ConnectorRules(limit=Limit(100))))
    assert s.throttled("smpp-uk", 0.0)
    assert s.connector_rate("default", 0.0) == 50
    routed = Shaper(ShapingRules(default_connector=ConnectorRules(limit=Limit(100)),
                                 route=lambda to: "smpp-uk"))
    routed.throttled("smpp-de", 0.0)
    assert routed.connector_rate("smpp-uk", 0.0) == 100


SEND_AT = 2 + 10  # index of send_at in the wire form


def test_long_window_waits_go_back_to_the_schedule_short_waits_are_held() -> None:
    from actors.shaping import SendWindow

    rules = ShapingRules(default_account=AccountRules(
        limit=Limit(1, 1), window=SendWindow("UTC", "09:00", "17:00")))
    s = Shaper(rules, defer_beyond=300.0)
    eight = 8 * 3600.0  # 1970-01-01 08:00 UTC: the window opens in an hour
    s.admit(row(1), eight)
    s.admit(row(2, not_after=eight + 1800), eight)  # expires before the opening
    s.admit(row(3, not_after=eight + 200), eight)  # expires within defer_beyond: held
    assert [(r[MSG_ID], r[SEND_AT]) for r in s.deferred] == [("1", 9 * 3600.0),
                                                             ("2", eight + 1800)]
    assert s.held == 1
    s.deferred.clear()
    s.admit(row(4), 9 * 3600.0 - 100)  # 100 s before the opening: held, not deferred
    s.poll(9 * 3600.0)
    assert s.deferred == [] and finished(s) == [("3", "expired")]
    assert released_ids(s) == ["4"]
    s.admit(row(5), 9 * 3600.0)  # a bucket wait is always held
    assert s.deferred == [] and s.held == 1


def test_campaign_slices_defer_the_rest_of_the_lane() -> None:
    s = Shaper(ShapingRules(campaigns={"c": CampaignRules(total=10, slice_percent=20,
                                                          slice_every=3600)}),
               defer_beyond=300.0)
    for i in range(5):
        s.admit(row(i, to=f"+{i}", campaign="c"), 0.0)
    assert released_ids(s) == ["0", "1"]
    assert [(r[MSG_ID], r[SEND_AT]) for r in s.deferred] == [("2", 3600.0), ("3", 3600.0),
                                                             ("4", 3600.0)]
    assert s.held == 0


def test_many_part_messages_are_not_starved_by_single_parts() -> None:
    rules = ShapingRules(default_connector=ConnectorRules(limit=Limit(10, 5)))
    s = Shaper(rules)
    for i in range(100):
        s.admit(row(f"a{i}", sender="A"), 0.0)  # a lane of single-part messages
    s.admit(row("big", sender="B", parts=5), 0.0)  # another lane, 5 parts
    released_ids(s)
    seen: list[str] = []
    while s.held and s.next_wake() < 20.0:
        s.poll(s.next_wake())
        seen += released_ids(s)
    assert "big" in seen[:8]  # once 5 tokens are owed to it, the singles wait for it
    assert s.held == 0


def test_an_emptied_lane_gives_its_reservation_back() -> None:
    rules = ShapingRules(default_connector=ConnectorRules(limit=Limit(10, 5)))
    s = Shaper(rules)
    s.admit(row("a0", sender="A", parts=5), 0.0)
    s.admit(row("big", sender="B", parts=5, not_after=0.2), 0.0)  # reserves, then expires
    s.admit(row("a1", sender="A"), 0.0)
    s.poll(0.2)
    assert finished(s) == [("big", "expired")]
    while s.held:
        s.poll(s.next_wake())
    assert released_ids(s) == ["a0", "a1"]
    assert s.next_wake() == float("inf")


def test_a_long_bucket_queue_goes_back_to_the_schedule_in_turns_at_the_lane_rate() -> None:
    rules = ShapingRules(accounts={"bulk": AccountRules(limit=Limit(10, 10))})
    s = Shaper(rules, defer_beyond=300.0, queue_beyond=10.0)
    for i in range(400):
        s.admit(row(i, account="bulk", to=f"+4477009{i:05d}"), 0.0)
    released = released_ids(s)
    assert released == [str(i) for i in range(10)]  # the burst
    # 10 s at 10/s are held: the queue ahead of a message is at most 100 deep
    assert s.held == 101
    turns = [(int(r[MSG_ID]), r[SEND_AT]) for r in s.deferred]
    assert [i for i, _ in turns] == list(range(111, 400))  # in order, each once
    # consecutive turns at the lane's rate, each handed back half a horizon early
    assert turns[0][1] == pytest.approx(10.1 - 5.0)
    assert all(b - a == pytest.approx(0.1) for (_, a), (_, b) in itertools.pairwise(turns))
    # another account's lane is not behind it
    s.admit(row("otp", account="otp"), 0.0)
    assert released_ids(s) == ["otp"]


def test_a_queued_message_whose_deadline_comes_first_is_held_and_expires_here() -> None:
    rules = ShapingRules(accounts={"bulk": AccountRules(limit=Limit(1, 1))})
    s = Shaper(rules, defer_beyond=300.0, queue_beyond=10.0)
    for i in range(20):
        s.admit(row(i, account="bulk"), 0.0)
    s.deferred.clear()
    s.admit(row("soon", account="bulk", not_after=8.0), 0.0)  # within the horizon: held
    s.admit(row("late", account="bulk", not_after=12.0), 0.0)  # its turn (19) is later still:
    s.admit(row("fine", account="bulk", not_after=60.0), 0.0)  # back at its deadline, to expire
    # "late" booked no turn: "fine" has turn 19, handed back at 19 - 5
    assert [(r[MSG_ID], r[SEND_AT]) for r in s.deferred] == [("late", 12.0), ("fine", 14.0)]
    s.poll(8.0)
    assert ("soon", "expired") in finished(s)


def test_without_a_schedule_every_bucket_wait_is_held() -> None:
    s = Shaper(ShapingRules(accounts={"bulk": AccountRules(limit=Limit(1, 1))}))
    for i in range(50):
        s.admit(row(i, account="bulk"), 0.0)
    assert s.deferred == [] and s.held == 49


def test_a_route_with_no_connector_up_goes_back_to_the_schedule_uncharged() -> None:
    up = {"+44": False, "+351": True}
    rules = ShapingRules(accounts={"acc": AccountRules(limit=Limit(1, 1))})
    s = Shaper(rules, defer_beyond=300.0, route_wait=lambda to, now: 0.0 if up[
        to[:3] if to.startswith("+44") else to[:4]] else 30.0)
    s.admit(row("uk", to="+447700900001"), 0.0)
    s.admit(row("uk-soon", to="+447700900002", not_after=10.0), 0.0)
    assert [(r[MSG_ID], r[SEND_AT]) for r in s.deferred] == [("uk", 30.0), ("uk-soon", 10.0)]
    s.deferred.clear()
    s.admit(row("pt", to="+351912345678"), 0.0)  # the account's bucket was not charged
    assert released_ids(s) == ["pt"] and s.held == 0


def test_without_a_schedule_a_route_that_is_down_goes_on_to_the_dispatcher() -> None:
    s = Shaper(ShapingRules(), route_wait=lambda to, now: 30.0)
    s.admit(row(1), 0.0)
    assert released_ids(s) == ["1"] and s.deferred == []


def test_a_queue_waiting_for_a_window_minutes_away_goes_back_but_its_head() -> None:
    from actors.shaping import SendWindow

    rules = ShapingRules(default_account=AccountRules(window=SendWindow("UTC", "09:00", "17:00")))
    s = Shaper(rules, defer_beyond=300.0, queue_beyond=10.0)
    nine = 9 * 3600.0
    for i in range(5):  # the window opens in 4 minutes: within defer_beyond
        s.admit(row(i, to=f"+4477009000{i}"), nine - 240)
    assert s.held == 1  # the head waits here; the others are not kept in memory for minutes
    assert [(r[MSG_ID], r[SEND_AT]) for r in s.deferred] == [(str(i), nine - 5.0)
                                                             for i in range(1, 5)]
    s.deferred.clear()
    s.poll(nine)
    assert released_ids(s) == ["0"]
