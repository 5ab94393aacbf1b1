"""Hypothesis properties of the codec (STYLE.md §10), spec vectors as @example."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from codec import (
    Policy,
    UnencodableText,
    _tables,
    build_udh,
    count,
    decode_part,
    gsm7,
    pack_septets,
    parse_udh,
    reassemble,
    segment,
    split,
    udh,
    unpack_septets,
)

GSM_CHARS = sorted(gsm7.DEFAULT.basic_chars | gsm7.DEFAULT.extension_chars)
gsm_text = st.text(alphabet=st.sampled_from(GSM_CHARS), max_size=500)
# A mix that exercises every path: GSM basic and extension, transliterable letters and
# punctuation, Cyrillic, CJK and astral characters (surrogate pairs).
TRANSLITERABLE = GSM_CHARS + sorted(_tables.TRANSLITERATION)
NATIONAL = GSM_CHARS + list("şŞğĞıİçáíóúÁÍÓÚãõâêôÃÕÂÊÔÀ∞ªº`")
MIXED = TRANSLITERABLE + list("жЖїєґ日本αβ") + ["😀", "👍", "𝄞"]
# GSM characters above U+00FF, the Latin-1 characters that stand in for them (codec._latin1),
# typographic punctuation and escapes: the fast path's stand-in route and its limits.
STAND_IN_MIX = list("ΔΣΩΦ€£¥å\f{} aç“”…ж")
mixed_text = st.one_of(
    gsm_text,
    st.text(alphabet=st.sampled_from(TRANSLITERABLE), max_size=400),
    st.text(alphabet=st.sampled_from(NATIONAL), max_size=400),
    st.text(alphabet=st.sampled_from(MIXED), max_size=400),
    st.text(alphabet=st.sampled_from(STAND_IN_MIX), max_size=400),
)
policies = st.builds(
    Policy,
    mode=st.sampled_from(["transliterate", "ucs2", "national"]),
    max_parts=st.just(255),
    ref_bits=st.sampled_from([8, 16]),
    languages=st.sampled_from([("pt", "es", "tr"), ("tr",), ("es",), ("pt",)]),
)
septet_bytes = st.binary(max_size=300).map(lambda b: bytes(x & 0x7F for x in b))


@settings(max_examples=300)
@given(gsm_text)
@example("@")
@example("abc@")
@example("1234567@")
@example("\r")
@example("1234567\r")
@example("{[~]}|^€\\\f")
def test_decode_encode_is_identity_on_gsm_text(text: str) -> None:
    septets = gsm7.DEFAULT.encode(text)
    assert gsm7.DEFAULT.decode(septets) == text
    assert len(septets) == len(text) + sum(c in gsm7.DEFAULT.extension_chars for c in text)


@settings(max_examples=300)
@given(septet_bytes, st.integers(0, 6))
@example(b"hellohello", 0)
@example(b"\x00", 0)
@example(b"1234567\x00", 0)
@example(b"123456\x00", 1)
def test_pack_unpack_is_identity_for_every_fill(septets: bytes, fill: int) -> None:
    packed = pack_septets(septets, fill)
    assert len(packed) == (fill + 7 * len(septets) + 7) // 8
    assert unpack_septets(packed, len(septets), fill) == septets
    assert packed[0] & ((1 << fill) - 1) == 0 if packed else True


@settings(max_examples=300)
@given(gsm_text.filter(lambda t: len(t) < 300), st.integers(0, 6))
@example("@", 0)
@example("1234567@", 0)
@example("123456@", 1)
@example("Hello@", 0)
def test_packed_decoding_without_udl_keeps_a_trailing_at(text: str, fill: int) -> None:
    septets = gsm7.DEFAULT.encode(text)
    header = build_udh([(0x70, bytes(fill))]) if fill else b""  # any header; fill follows
    fill_bits = udh.udh_septets(len(header))[1] if header else 0
    payload = header + pack_septets(septets, fill_bits)
    udl = (udh.udh_septets(len(header))[0] if header else 0) + len(septets)
    got = decode_part(payload, 0, udhi=bool(header), packed=True, udl=udl)
    assert got.text == text
    inferred = decode_part(payload, 0, udhi=bool(header), packed=True).text
    ends_on_boundary = (fill_bits + 7 * len(septets)) % 8 == 0
    if text.endswith("\r") and ends_on_boundary:
        assert inferred == text[:-1]  # the spec's own ambiguity (TS 23.038 §6.1.2.3.1)
    else:
        assert inferred == text


def _decoded(parts: list) -> str:  # type: ignore[type-arg]
    received = [decode_part(p.udh + p.body, p.data_coding, udhi=p.udhi) for p in parts]
    return reassemble(received[::-1])  # out of order on purpose


@settings(max_examples=400, deadline=None)
@given(mixed_text, policies, st.integers(0, 2**16 - 1))
@example("a" * 152 + "€", Policy(), 1)
@example("ж" * 66 + "😀", Policy(), 1)
@example("ş" * 200, Policy(mode="national"), 3)
def test_split_agrees_with_count_and_round_trips(text: str, policy: Policy, ref: int) -> None:
    _check_split_agrees_with_count(text, policy, ref)


@pytest.mark.parametrize("policy", [Policy(), Policy(mode="gsm7-strict"), Policy(mode="ucs2"),
                                    Policy(mode="national", languages=("es", "pt", "tr"))],
                         ids=lambda p: p.mode)
def test_every_character_up_to_u024f_alone_and_among_gsm(policy: Policy) -> None:
    # Exhaustive where hypothesis rarely looks: C0/C1 controls (U+0080 once passed as basic
    # GSM and became septet 0xFF), Latin-1, Latin Extended.
    for code in range(0x250):
        for text in (chr(code), f"a{chr(code)}b" * 30):
            try:
                _check_split_agrees_with_count(text, policy, 7)
            except UnencodableText:
                assert policy.mode == "gsm7-strict"


def _check_split_agrees_with_count(text: str, policy: Policy, ref: int) -> None:
    counted = count(text, policy)
    parts = split(text, policy, ref)
    assert counted.parts == len(parts)
    assert {p.data_coding for p in parts} == {8 if counted.encoding == "ucs2" else 0}
    unit = 2 if counted.encoding == "ucs2" else 1
    assert counted.units == sum(len(p.body) for p in parts) // unit
    assert _decoded(parts) == counted.text
    if counted.encoding != "gsm7-national":
        assert all(p.udh == b"" for p in parts) == (len(parts) == 1)
    for p in parts:
        assert p.udhi == bool(p.udh)
        assert not p.body.endswith(b"\x1b") or counted.encoding == "ucs2"
        if counted.encoding == "ucs2":
            assert len(p.udh) + len(p.body) <= 140
            assert len(p.body) <= (134 if policy.ref_bits == 8 else 132) or len(parts) == 1
            assert not 0xD8 <= p.body[-2] <= 0xDB if p.body else True
        else:
            assert max(p.body, default=0) <= 0x7F  # septets
            header_septets = udh.udh_septets(len(p.udh))[0] if p.udh else 0
            assert header_septets + len(p.body) <= 160  # i.e. 140 octets packed
            if len(parts) > 1 and counted.encoding == "gsm7":
                assert len(p.body) <= (153 if policy.ref_bits == 8 else 152)


@settings(max_examples=200)
@given(mixed_text)
def test_transliterated_text_is_gsm_or_the_original_goes_ucs2(text: str) -> None:
    counted = count(text, Policy(max_parts=255))
    if counted.encoding == "ucs2":
        assert counted.text == text and counted.replacements == ()
    else:
        assert gsm7.DEFAULT.non_gsm.search(counted.text) is None
        changed = text
        for char, replacement in counted.replacements:
            changed = changed.replace(char, replacement)
        assert changed == counted.text


ies = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=10)), min_size=0, max_size=8
).map(tuple)


@given(ies)
@example(((0x00, b"\xcc\x02\x01"),))
@example(((0x08, b"\x12\x34\x02\x01"), (0x24, b"\x01"), (0x25, b"\x01")))
def test_parse_build_udh_is_identity(elements: tuple[tuple[int, bytes], ...]) -> None:
    assert parse_udh(build_udh(elements)) == elements


ALL_POLICIES = st.builds(
    Policy,
    mode=st.sampled_from(["transliterate", "ucs2", "gsm7-strict", "national"]),
    max_parts=st.integers(1, 8),
    ref_bits=st.sampled_from([8, 16]),
)


def _outcome(fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the comparison is of outcomes, errors included
        return type(exc), str(exc)


@settings(max_examples=500, deadline=None)
@given(mixed_text, ALL_POLICIES, st.integers(0, 2**16 - 1))
@example("abc´¢ ‘x’", Policy(), 1)
@example("ação “x” {y}" * 30, Policy(), 1)
@example("ação ¦", Policy(mode="ucs2"), 1)
@example("x" * 152 + "€ são 10€ “já”", Policy(), 1)
@example("10€ \f", Policy(), 1)
@example("10€ ação", Policy(mode="ucs2"), 1)
@example("10€ [x]" * 40, Policy(mode="gsm7-strict", max_parts=8), 1)
def test_fast_path_agrees_with_the_general_path(text: str, policy: Policy, ref: int) -> None:
    assert _outcome(count, text, policy) == _outcome(segment._count_general, text, policy)
    assert _outcome(split, text, policy, ref) == _outcome(segment._split_general, text, policy, ref)
