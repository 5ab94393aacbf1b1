"""Prefix routing with fail-over."""

from __future__ import annotations

from actors.routing import RouteTable, choose


def test_longest_prefix_wins_and_default_applies() -> None:
    t = RouteTable.from_mapping({"+351": ["pt"], "+3519": ["pt-mobile", "pt"], "": ["world"]})
    assert t.candidates("+351912345678") == ("pt-mobile", "pt")
    assert t.candidates("+351212345678") == ("pt",)
    assert t.candidates("+4479") == ("world",)
    assert RouteTable.from_mapping({"44": ["uk"]}).candidates("+351") == ()


def test_choose_skips_unready_and_fails_over_from_excluded() -> None:
    ready = {"a": False, "b": True, "c": True}.__getitem__
    assert choose(["a", "b", "c"], ready) == "b"
    assert choose(["a", "b", "c"], ready, exclude=["b"]) == "c"
    assert choose(["b"], ready, exclude=["b"]) == "b"  # nothing else: retry the same one
    assert choose(["a"], ready) is None
