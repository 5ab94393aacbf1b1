"""Carrier-id keys (hex/decimal, case, leading zeros, non-numeric) and part folding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import correlation as c
from actors.messages import State


@pytest.mark.parametrize(
    ("submitted", "receipt"),
    [
        ("0x04000000086ECD50", "288230376293190992"),
        ("0x04000000086ecd50", "288230376293190992"),
        ("4000000086ECD50", "288230376293190992"),
        ("288230376293190992", "0x04000000086ECD50"),
        ("288230376293190992", "4000000086ecd50"),
        ("000123", "123"),
        ("123", "0000123"),
        ("100", "64"),  # decimal submit, digit-only hex receipt
        ("08047312", "134509330"),  # digit-only hex submit, decimal receipt
        ("  abc  ", "ABC"),  # hex case and surrounding blanks
    ],
)
def test_receipt_ids_find_their_submit(submitted: str, receipt: str) -> None:
    assert c.index_key(submitted) in c.lookup_keys(receipt)


@pytest.mark.parametrize("carrier_id", ["msg-7f3a-Z", "Abc_def", "a1b2-c3d4", "ÄBC", "12 34"])
def test_non_numeric_ids_are_kept_verbatim(carrier_id: str) -> None:
    assert c.index_key(carrier_id) == b"=" + carrier_id.strip().encode()
    assert c.lookup_keys(carrier_id) == [c.index_key(carrier_id)]


def test_non_numeric_ids_are_case_sensitive() -> None:
    assert c.index_key("msg-XYZ") != c.index_key("msg-xyz")


@given(st.integers(min_value=0, max_value=2**128))
def test_any_number_matches_in_either_base(n: int) -> None:
    for sub in (str(n), f"0x{n:X}", f"0x{n:x}", f"{n:020d}"):
        for rec in (str(n), f"0x{n:x}", f"{n:08d}"):
            assert c.index_key(sub) in c.lookup_keys(rec)


@given(st.text(max_size=30))
def test_keys_never_crash_and_are_bounded(s: str) -> None:
    assert len(c.index_key(s)) <= c.MAX_ID + 1 or c.index_key(s).startswith(b"#")
    assert c.lookup_keys(s)


P, S, A, D, F, R = (c.PART_PENDING, c.PART_SUBMITTING, c.PART_ACCEPTED, c.PART_DELIVERED,
                    c.PART_FAILED, c.PART_REJECTED)


@pytest.mark.parametrize(
    ("parts", "state"),
    [
        ([P], None), ([S], None), ([A], State.SENT), ([D], State.DELIVERED),
        ([F], State.NOT_DELIVERED), ([R], State.NOT_SENT),
        ([D, D, D], State.DELIVERED), ([D, A, D], State.SENT), ([D, P], State.SENT),
        ([D, F, A], State.NOT_DELIVERED), ([A, R], State.NOT_DELIVERED),
        ([R, P], None), ([R, R], State.NOT_SENT),
    ],
)
def test_fold(parts: list[str], state: State | None) -> None:
    assert c.fold(parts) == state


def test_receipt_words() -> None:
    assert c.receipt_part_status("DELIVRD") == D
    assert c.receipt_part_status("delivrd") == D
    assert c.receipt_part_status("ENROUTE") == A
    for word in ("UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN", "garbage"):
        assert c.receipt_part_status(word) == F


def test_state_record_round_trip() -> None:
    rec = c.StateRecord("SENT", 2, [c.PartRecord("A", "smpp", "0x1", "", 1.5)], "", "", 2.0, 7,
                        1, 9)
    assert c.StateRecord.unpack(rec.pack()) == rec


def test_configured_id_types_remove_the_digit_only_ambiguity() -> None:
    submit, receipt = c.ID_TYPES["hex-submit"]
    # "10" in a hex submit response is sixteen; the decimal receipt says 16, never ten
    assert c.index_key("10", submit) == c.lookup_keys("16", receipt)[0]
    assert c.lookup_keys("16", receipt) == [c.index_key("10", submit)]
    assert c.index_key("0x04000000086ECD50", submit) == c.lookup_keys("288230376293190992",
                                                                      receipt)[0]
    dec, _ = c.ID_TYPES["decimal"]
    assert c.index_key("0010", dec) == b"#10"
    assert c.index_key("msg-1", dec) == b"=msg-1"  # not a number in that base: verbatim
    assert c.lookup_keys("zz", 16) == [b"=zz"]


_carrier_ids = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=25),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=20),
    st.builds(lambda s: "0x" + s, st.text(alphabet="0123456789abcdef", min_size=1, max_size=16)),
    st.text(max_size=70),
)


@given(_carrier_ids, st.sampled_from(sorted({b for pair in c.ID_TYPES.values() for b in pair},
                                            key=repr)))
def test_primary_key_is_the_first_lookup_key(carrier_id: str, base: c.IdBase) -> None:
    # primary_key is the correlator's fast path; it must be exactly what lookup_keys tries first.
    assert c.primary_key(carrier_id, base) == c.lookup_keys(carrier_id, base)[0]
