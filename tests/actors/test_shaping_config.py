"""Shaping rules from a TOML table: the documented example loads, every mistake is named."""

from __future__ import annotations

import tomllib

import pytest

from actors.shaping import (
    AccountRules,
    CampaignRules,
    Limit,
    SendWindow,
    ShapingConfigError,
    ShapingRules,
    rules_from_mapping,
)

EXAMPLE = """
max_held = 50000
pause_recheck = 30      # seconds a paused campaign's message waits in the durable schedule

[default_account]
limit = { rate = 50, burst = 100 }

[accounts.acme]
limit = { rate = 100, burst = 200 }
per_sender = { rate = 10 }
senders = { ACME = { rate = 30 } }
prefixes = { "+44" = { rate = 20 } }
window = { tz = "Europe/London", start = "09:00", end = "20:00", days = [0, 1, 2, 3, 4] }
validity = 86400
no_recontact_hours = 36

[connectors.smpp-uk]
limit = { rate = 200, burst = 50 }
per_sender = { rate = 30 }
prefixes = { "+447" = { rate = 100 } }
adaptive = { decrease = 0.5, floor = 0.1, hold = 5, recover = 0.02, cooldown = 1 }

[campaigns.spring-sale]
total = 1000
slice_percent = 15
slice_every = 1200
no_recontact_hours = 48
"""


def test_the_documented_example_loads() -> None:
    rules = rules_from_mapping(tomllib.loads(EXAMPLE))
    assert rules.max_held == 50_000 and rules.pause_recheck == 30.0
    assert rules.default_account.limit == Limit(50, 100)
    acme = rules.accounts["acme"]
    assert acme.senders == {"ACME": Limit(30, 30)} and acme.prefixes == {"+44": Limit(20, 20)}
    assert acme.window == SendWindow("Europe/London", "09:00", "20:00", (0, 1, 2, 3, 4))
    assert rules.connectors["smpp-uk"].adaptive.floor == 0.1
    assert rules.campaigns["spring-sale"] == CampaignRules(total=1000, slice_percent=15,
                                                           slice_every=1200,
                                                           no_recontact_hours=48)


def test_the_docs_show_the_same_example() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "shaping.md").read_text()
    assert EXAMPLE.strip() in doc


def test_empty_table_is_no_limits() -> None:
    assert rules_from_mapping({}) == ShapingRules()


def test_campaigns_from_elsewhere_and_route_are_passed_through() -> None:
    camp = {"c": CampaignRules(per_minute=10)}
    rules = rules_from_mapping({}, route=str.upper, campaigns=camp)
    assert rules.campaigns is camp and rules.route is str.upper


def test_every_mistake_is_listed() -> None:
    bad = {
        "bogus": 1,
        "max_held": 0,
        "accounts": {"a": {"limit": {"rate": -1}, "windw": {}, "validity": "soon",
                           "window": {"tz": "Nowhere/Atlantis"}}},
        "connectors": {"c": {"adaptive": {"decrease": 2}, "prefixes": {"+1": {"rate": "x"}}}},
        "campaigns": {"k": {"slice_percent": 15}},
        "default_connector": [],
    }
    with pytest.raises(ShapingConfigError) as info:
        rules_from_mapping(bad)
    paths = sorted(p.split(":")[0] for p in info.value.problems)
    assert paths == [
        "shaping.accounts.a",  # validity
        "shaping.accounts.a.limit",
        "shaping.accounts.a.window",
        "shaping.accounts.a.windw",
        "shaping.bogus",
        "shaping.campaigns.k",
        "shaping.connectors.c.adaptive",
        "shaping.connectors.c.prefixes.+1",
        "shaping.default_connector",
        "shaping.max_held",
    ]


def test_rules_refuse_nonsense_directly() -> None:
    with pytest.raises(ValueError):
        AccountRules(validity=-1)
    with pytest.raises(ValueError):
        ShapingRules(max_held=0)
    with pytest.raises(ValueError):
        CampaignRules(per_minute_burst=0.5)
    assert Limit.per_minute(120) == Limit(2.0, 1.0)


def test_pause_recheck_is_read_and_checked() -> None:
    assert rules_from_mapping({"pause_recheck": 5}).pause_recheck == 5.0
    assert rules_from_mapping({}).pause_recheck == 30.0
    with pytest.raises(ShapingConfigError, match="shaping.pause_recheck"):
        rules_from_mapping({"pause_recheck": 0})
