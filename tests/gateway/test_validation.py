"""Numbers, senders and templates (gateway.validation)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from gateway.validation import (
    Invalid,
    NumberNormaliser,
    check_sender,
    pick_phone,
    render,
    valid_international,
)

CODES = sorted(COUNTRY_CODE_TO_REGION_CODE)


def slow_valid(digits: str) -> bool:
    try:
        parsed = phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return False
    return (phonenumbers.is_valid_number(parsed)
            and phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == "+" + digits)


@settings(max_examples=400, deadline=None)
@given(code=st.sampled_from(CODES), rest=st.text("0123456789", min_size=4, max_size=12))
@example(code=351, rest="912345678")
@example(code=1, rest="2015550123")
@example(code=44, rest="7911123456")
@example(code=39, rest="0612345678")  # Italian leading zero
def test_fast_path_agrees_with_phonenumbers(code: int, rest: str) -> None:
    digits = f"{code}{rest}"[:15]
    assert valid_international(digits) == slow_valid(digits)


@pytest.mark.parametrize("region", ["PT", "ES", "GB", "US", "DE", "BR", "IN", "FR", "IT", "NG"])
def test_example_numbers_of_every_type_are_valid(region: str) -> None:
    for kind in range(11):
        ex = phonenumbers.example_number_for_type(region, kind)
        if ex is not None:
            e164 = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.E164)
            assert NumberNormaliser().normalise(e164) == e164


@pytest.mark.parametrize(("raw", "prefix", "expected"), [
    ("+351 912 345 678", "", "+351912345678"),
    ("00351912345678", "", "+351912345678"),
    ("(91) 234-5678", "351", "+351912345678"),
    ("912345678", "+351", "+351912345678"),
    ("07911 123456", "44", "+447911123456"),
    ("+447911123456", "351", "+447911123456"),  # has a prefix: the default is not applied
])
def test_normalise(raw: str, prefix: str, expected: str) -> None:
    assert NumberNormaliser().normalise(raw, prefix) == expected


@pytest.mark.parametrize(("raw", "prefix", "reason"), [
    ("912345678", "", "no country prefix"),
    ("+35191234567a", "", "letters"),
    ("+1800FLOWERS", "", "letters"),
    ("+٣٥١٩١٢٣٤٥٦٧٨", "", "ASCII"),
    ("+3519123456789012", "", "more than 15"),
    ("+351 12", "", "not a valid number"),
    ("", "", "empty"),
    ("++351912345678", "", "only digits"),
    ("912345678", "999", "not a calling code"),
])
def test_refusals_say_why(raw: str, prefix: str, reason: str) -> None:
    n = NumberNormaliser()
    for _ in range(2):  # the second time from the cache
        with pytest.raises(Invalid, match=reason):
            n.normalise(raw, prefix)


def test_cache_is_bounded() -> None:
    n = NumberNormaliser(cache_size=10)
    for i in range(50):
        n.normalise(f"+3519123456{i:02d}")
    assert len(n._cache) <= 10


@pytest.mark.parametrize("sender", ["Septet", "123456789012345", "+351912345678", "A", "My Shop",
                                    "ABCDEFGHIJK", "1a"])
def test_good_senders(sender: str) -> None:
    assert check_sender(sender) == sender


@pytest.mark.parametrize(("sender", "reason"), [
    ("1234567890123456", "at most 15 digits"),
    ("ABCDEFGHIJKL", "at most 11"),
    ("12-34", "at least one letter"),
    ("Olá", "ASCII"),
    ("", "empty"),
    (" Shop", "space"),
    ("a\nb", "ASCII letters"),
])
def test_bad_senders(sender: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        check_sender(sender)


def test_phone_field_priority() -> None:
    assert pick_phone({"phone": "1", "mobilephone": "2", "mobile_phone": "3"}) == ("mobile_phone", "3")
    assert pick_phone({"phone": "1", "mobilephone": "2", "mobile_phone": " "}) == ("mobilephone", "2")
    assert pick_phone({"phone": "1"}) == ("phone", "1")
    assert pick_phone({"name": "x"}) is None


def test_render() -> None:
    assert render("Hi {name}, {{x}} {n}", {"name": "Ana", "n": 3}) == "Hi Ana, {x} 3"
    assert render("no placeholders", {}) == "no placeholders"
    with pytest.raises(Invalid, match="{missing}"):
        render("Hi {missing}", {})


# The E.164 fast path of _normalise ("+" and ASCII digits only) must answer exactly what the
# general path (strip, separators, prefix forms) answers for the same string.

@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(CODES), rest=st.text("0123456789", min_size=0, max_size=14),
       default=st.sampled_from(["", "351", "44"]))
@example(code=351, rest="912345678", default="")
@example(code=351, rest="9123456789012", default="")  # 16 digits: too long
@example(code=1, rest="", default="")
def test_e164_fast_path_equals_the_general_path(code: int, rest: str, default: str) -> None:
    from gateway.validation import _normalise, _normalise_general

    raw = f"+{code}{rest}"
    fast, general = _normalise(raw, default), _normalise_general(raw, default)
    if isinstance(general, Invalid):
        assert isinstance(fast, Invalid) and fast.reason == general.reason
    else:
        assert fast == general == raw


@settings(max_examples=200, deadline=None)
@given(raw=st.text(st.sampled_from("+0123456789 -.()/\t٣²a"), max_size=18),
       default=st.sampled_from(["", "351"]))
def test_normalise_any_string_equals_the_general_path(raw: str, default: str) -> None:
    from gateway.validation import _normalise, _normalise_general

    fast, general = _normalise(raw, default), _normalise_general(raw, default)
    assert (fast.reason if isinstance(fast, Invalid) else fast) == (
        general.reason if isinstance(general, Invalid) else general)


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(CODES), rest=st.text("0123456789", min_size=4, max_size=12))
def test_cached_answer_equals_a_fresh_one(code: int, rest: str) -> None:
    n = NumberNormaliser()
    raw = f"+{code}{rest}"[:16]

    def outcome() -> str:
        try:
            return n.normalise(raw)
        except Invalid as exc:
            return "invalid: " + exc.reason

    first, second = outcome(), outcome()  # the second from the cache
    assert first == second
    assert (first == raw) == slow_valid(raw[1:])
