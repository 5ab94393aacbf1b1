"""gateway.api.cancel's pure parts, without trio: the outcome a message read back comes to, the
409 document for every state that is too late, and the bulk body's reading."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import messages as m
from gateway._store_views import MessageView
from gateway.api.cancel import TooLate, outcome, parse_ids
from gateway.api.problems import Problem


def view(state: str, code: str = "") -> MessageView:
    msg = m.Message(m.MsgId("01M87TCGPE31F1ZG5D"), "alpha", "+351912345678", "Clinic", "hi",
                    "transliterate", 1.0)
    return MessageView(msg, state, code, "", 2.0, ())


@pytest.mark.parametrize(("state", "code", "expected"), [
    ("NOT_SENT", "cancelled", "cancelled"),
    ("NOT_SENT", "expired", "too_late"),
    ("NOT_SENT", "opted_out", "too_late"),
    ("SUBMITTING", "", "too_late"),
    ("SENT", "", "too_late"),
    ("DELIVERED", "", "too_late"),
    ("NOT_DELIVERED", "EXPIRED", "too_late"),
    ("ACCEPTED", "", "too_late"),  # the store refused the move: not cancelled, say so
])
def test_outcome_is_cancelled_only_for_not_sent_cancelled(state: str, code: str,
                                                          expected: str) -> None:
    assert outcome(view(state, code)) == expected


def test_outcome_of_no_message_is_not_found() -> None:
    assert outcome(None) == "not_found"


@pytest.mark.parametrize(("state", "code", "words"), [
    ("SUBMITTING", "", "being submitted"),
    ("SENT", "", "cannot be recalled"),
    ("DELIVERED", "", "delivered"),
    ("NOT_DELIVERED", "EXPIRED", "not delivered"),
    ("NOT_SENT", "expired", "ended NOT_SENT (expired)"),
])
def test_too_late_names_the_state_and_code(state: str, code: str, words: str) -> None:
    doc = TooLate(view(state, code)).document()
    assert doc["type"] == "urn:septet:problem:cancel-too-late" and doc["status"] == 409
    assert (doc["id"], doc["state"], doc["code"]) == ("01M87TCGPE31F1ZG5D", state, code or None)
    assert words in str(doc["detail"])


def fields(body: Any) -> list[str]:
    with pytest.raises(Problem) as info:
        parse_ids(body, max_ids=3)
    assert info.value.status == 422
    return [e.field for e in info.value.errors]


def test_bad_bodies_name_every_field_at_fault() -> None:
    assert fields([]) == ["body"]
    assert fields({}) == ["ids"]
    assert fields({"ids": None}) == ["ids"]
    assert fields({"ids": ["a", "b", "c", "d"]}) == ["ids"]
    assert fields({"ids": [1, "b", {}]}) == ["ids[0]", "ids[2]"]
    assert fields({"ids": ["a"], "why": 1, "": 2}) == ["why", ""]


@given(st.lists(st.text(max_size=20), min_size=1, max_size=3))
def test_any_list_of_strings_is_read_in_order(ids: list[str]) -> None:
    assert parse_ids({"ids": ids}, max_ids=3) == ids
