"""Paused campaigns and per-account campaign rules in the Shaper (issue 8), explicit ``now``."""

from __future__ import annotations

from typing import Any

import pytest

from actors import messages
from actors.messages import Message, MsgId
from actors.shaping import CampaignRules, Shaper, ShapingRules

MSG_ID, SEND_AT = 2, 2 + Message._fields.index("send_at")


def row(i: int, *, account: str = "acc", campaign: str = "SPRING") -> list[Any]:
    return messages.to_wire(Message(MsgId(str(i)), account, f"+4477009{i:05d}", "S", "hi",
                                    "transliterate", 0.0, campaign))


def ids(rows: list[list[Any]]) -> list[str]:
    out = [r[MSG_ID] for r in rows]
    rows.clear()
    return out


def test_a_paused_campaign_goes_back_to_the_schedule_and_resumes() -> None:
    table = {"acc\x00SPRING": CampaignRules(paused=True)}
    s = Shaper(ShapingRules(campaigns=table, pause_recheck=30.0), defer_beyond=300.0)
    for i in range(3):
        s.admit(row(i), 100.0)
    s.admit(row(9, campaign="OTHER"), 100.0)
    assert ids(s.released) == ["9"]  # other campaigns are not held up
    assert [r[SEND_AT] for r in s.deferred] == [130.0] * 3  # back to the durable schedule
    assert ids(s.deferred) == ["0", "1", "2"] and s.held == 0  # nothing kept in memory
    table["acc\x00SPRING"] = CampaignRules()  # resumed: read live, per message
    for i in range(3):
        s.admit(row(i), 130.0)
    assert ids(s.released) == ["0", "1", "2"]


def test_a_paused_campaign_is_held_when_there_is_no_schedule_to_hand_it_to() -> None:
    table = {"acc\x00SPRING": CampaignRules(paused=True, per_minute=60)}
    s = Shaper(ShapingRules(campaigns=table, pause_recheck=5.0))
    s.admit(row(0), 0.0)
    s.admit(row(1), 0.0)
    assert s.released == [] and s.held == 2 and s.next_wake() == 5.0
    s.poll(5.0)
    assert s.released == [] and s.next_wake() == 10.0
    table["acc\x00SPRING"] = CampaignRules(per_minute=60)
    s.poll(10.0)
    assert ids(s.released) == ["0"]  # its pace applies again
    s.poll(11.0)
    assert ids(s.released) == ["1"]


def test_a_pause_applies_to_messages_already_waiting_in_the_lane() -> None:
    table = {"acc\x00SPRING": CampaignRules(per_minute=60)}
    s = Shaper(ShapingRules(campaigns=table, pause_recheck=30.0), defer_beyond=300.0)
    for i in range(3):
        s.admit(row(i), 0.0)
    assert ids(s.released) == ["0"] and s.held == 2
    table["acc\x00SPRING"] = CampaignRules(per_minute=60, paused=True)
    s.poll(1.0)
    assert s.released == [] and ids(s.deferred) == ["1", "2"] and s.held == 0


def test_campaign_rules_are_per_account_and_a_bare_name_applies_to_every_account() -> None:
    table = {"a\x00SPRING": CampaignRules(paused=True), "ALL": CampaignRules(per_minute=60)}
    s = Shaper(ShapingRules(campaigns=table), defer_beyond=300.0)
    s.admit(row(0, account="a"), 0.0)
    s.admit(row(1, account="b"), 0.0)  # b's SPRING is another campaign: not paused
    assert ids(s.released) == ["1"] and ids(s.deferred) == ["0"]
    for i, account in enumerate(("a", "b", "a", "b"), start=10):
        s.admit(row(i, account=account, campaign="ALL"), 0.0)
    assert ids(s.released) == ["10", "11"]  # each account's ALL paced on its own


def test_pause_recheck_must_be_positive() -> None:
    with pytest.raises(ValueError, match="pause_recheck"):
        ShapingRules(pause_recheck=0)
