"""Prefix routing with fail-over."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


def test_a_default_only_table_routes_every_destination_to_it() -> None:
    t = RouteTable.from_mapping({"": ["world", "backup"]})
    assert t.candidates("+351912345678") == ("world", "backup")
    assert t.candidates("") == ("world", "backup")
    assert RouteTable.from_mapping({}).candidates("+351") == ()


@given(st.dictionaries(st.text("+0123456789", max_size=4), st.lists(st.text(max_size=3),
                                                                      max_size=3), max_size=5),
       st.text("+0123456789", max_size=8))
def test_candidates_is_the_longest_matching_prefix(routes: dict[str, list[str]], to: str) -> None:
    # the reference: the longest normalised prefix of the digits wins
    norm = {p.lstrip("+"): tuple(c) for p, c in routes.items()}
    matching = [p for p in norm if to.lstrip("+").startswith(p)]
    expected = norm[max(matching, key=len)] if matching else ()
    assert RouteTable.from_mapping(routes).candidates(to) == expected
