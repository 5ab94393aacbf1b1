"""count/split: policies, limits, headers, and agreement between the two."""

from __future__ import annotations

import re

import pytest

from codec import (
    Count,
    Part,
    Policy,
    SegmentLimitExceeded,
    UnencodableText,
    _plan,
    count,
    gsm7,
    parse_udh,
    segment,
    split,
)

TRANSLIT = Policy()
UCS2 = Policy(mode="ucs2")
STRICT = Policy(mode="gsm7-strict")


def test_plain_gsm_is_one_part_without_udh() -> None:
    assert count("Hello @ world", TRANSLIT) == Count("gsm7", 13, 1, (), "Hello @ world")
    assert split("Hello @", TRANSLIT, 1) == [Part(b"", b"Hello \x00", 0, False)]


def test_160_septets_fit_one_part_161_need_two() -> None:
    assert count("a" * 160, TRANSLIT).parts == 1
    assert count("a" * 161, TRANSLIT).parts == 2
    assert count("a" * 306, TRANSLIT).parts == 2
    assert count("a" * 307, TRANSLIT).parts == 3


def test_16_bit_reference_gives_152_per_part() -> None:
    policy = Policy(ref_bits=16, max_parts=10)
    assert count("a" * 304, policy).parts == 2
    assert count("a" * 305, policy).parts == 3
    parts = split("a" * 305, policy, 0x1234)
    assert [len(p.body) for p in parts] == [152, 152, 1]
    assert parts[0].udh == bytes.fromhex("0608041234030" + "1")


def test_8_bit_reference_udh_and_payload_sizes() -> None:
    parts = split("b" * 161, TRANSLIT, 0x1AB)  # only the low 8 bits of the reference are used
    assert [p.udh for p in parts] == [bytes.fromhex("050003AB0201"), bytes.fromhex("050003AB0202")]
    assert [len(p.body) for p in parts] == [153, 8]
    assert all(p.udhi and p.data_coding == 0 for p in parts)


def test_extension_characters_count_two_septets() -> None:
    assert count("{€}", TRANSLIT) == Count("gsm7", 6, 1, (), "{€}")
    assert count("[" * 80, TRANSLIT).parts == 1
    assert count("[" * 81, TRANSLIT).parts == 2


def test_escape_never_ends_a_part() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = split(text, TRANSLIT, 7)
    assert [len(p.body) for p in parts] == [152, 12]
    assert parts[1].body.startswith(b"\x1be")
    assert count(text, TRANSLIT).parts == 2


def test_ucs2_limits_70_67_66() -> None:
    assert count("ж" * 70, TRANSLIT) == Count("ucs2", 70, 1, (), "ж" * 70)
    assert count("ж" * 71, TRANSLIT).parts == 2
    assert count("ж" * 134, TRANSLIT).parts == 2
    assert count("ж" * 135, TRANSLIT).parts == 3
    policy = Policy(ref_bits=16)
    assert count("ж" * 132, policy).parts == 2
    assert count("ж" * 133, policy).parts == 3
    assert [len(p.body) for p in split("ж" * 71, TRANSLIT, 1)] == [134, 8]


def test_emoji_count_two_units_and_never_straddle() -> None:
    assert count("😀", TRANSLIT) == Count("ucs2", 2, 1, (), "😀")
    text = "x" * 66 + "😀" + "y"
    assert count(text, TRANSLIT).units == 69
    text = "ж" * 66 + "😀" * 3  # the first surrogate pair would straddle 67 units
    parts = split(text, TRANSLIT, 9)
    assert [len(p.body) // 2 for p in parts] == [66, 6]
    assert count(text, TRANSLIT).parts == 2


def test_transliteration_replaces_and_reports() -> None:
    result = count("Olá, ação “já” – ok…", TRANSLIT)
    assert result.encoding == "gsm7"
    assert result.text == 'Ola, acao "ja" - ok...'
    assert result.replacements == (("á", "a"), ("ã", "a"), ("ç", "c"), ("–", "-"), ("“", '"'),
                                   ("”", '"'), ("…", "..."))  # unique, in code point order
    assert result.units == len(result.text)


def test_gsm_letters_stay_as_they_are() -> None:
    text = "é è ù ì ò à Ä Ö Ñ Ü ä ö ñ ü ß Ç Å å Ø ø Æ æ É"
    assert count(text, TRANSLIT) == Count("gsm7", len(text), 1, (), text)


def test_transliteration_is_all_or_nothing() -> None:
    text = "ação в"
    assert count(text, TRANSLIT) == Count("ucs2", 6, 1, (), text)
    assert split(text, TRANSLIT, 1) == [Part(b"", text.encode("utf-16-be"), 8, False)]


def test_emoji_and_cyrillic_go_ucs2_never_question_marks() -> None:
    for text in ("Привіт, світе", "ok 👍", "日本", "αβγ"):
        units = len(text.encode("utf-16-be")) // 2
        assert count(text, TRANSLIT) == Count("ucs2", units, 1, (), text)


def test_ucs2_policy_keeps_accents() -> None:
    assert count("ação", UCS2) == Count("ucs2", 4, 1, (), "ação")
    assert count("a{b}", UCS2) == Count("gsm7", 6, 1, (), "a{b}")


def test_strict_names_first_unencodable_char_and_position() -> None:
    with pytest.raises(UnencodableText) as info:
        count("ok {x} ação", STRICT)
    assert (info.value.char, info.value.position) == ("ç", 8)
    assert "ç" in str(info.value) and "8" in str(info.value)
    with pytest.raises(UnencodableText):
        split("😀", STRICT, 1)
    assert count("ok {x}", STRICT) == Count("gsm7", 8, 1, (), "ok {x}")


def test_segment_limit_says_parts_needed() -> None:
    with pytest.raises(SegmentLimitExceeded) as info:
        count("a" * 766, TRANSLIT)
    assert (info.value.parts_needed, info.value.max_parts) == (6, 5)
    assert "6 parts" in str(info.value)
    with pytest.raises(SegmentLimitExceeded):
        split("a" * 766, TRANSLIT, 1)
    with pytest.raises(SegmentLimitExceeded) as info:
        split("ж" * 71, Policy(max_parts=1), 1)
    assert info.value.parts_needed == 2
    with pytest.raises(SegmentLimitExceeded):
        count("ж" * 71, Policy(max_parts=1))
    assert count("a" * 765, TRANSLIT).parts == 5


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "latin1"}, {"max_parts": 0}, {"max_parts": 256}, {"ref_bits": 12},
     {"languages": ("pt", "xx")}],
)
def test_policy_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_hashable() -> None:
    assert hash(Policy()) == hash(Policy())
    assert Policy(languages=["tr"]).languages == ("tr",)  # type: ignore[arg-type]
    assert {Policy(), Policy(mode="ucs2")} == {Policy(mode="ucs2"), Policy()}


def test_concatenated_udh_parses() -> None:
    for part in split("c" * 400, TRANSLIT, 200):
        ((iei, data),) = parse_udh(part.udh)
        assert iei == 0 and data[0] == 200 and data[1] == 3


def test_long_transliterated_text_without_extension_characters() -> None:
    text = "ação " * 62  # 310 characters, all transliterable one for one
    counted = count(text, TRANSLIT)
    assert (counted.encoding, counted.units, counted.parts) == ("gsm7", 310, 3)
    assert counted.replacements == (("ã", "a"), ("ç", "c"))
    with pytest.raises(SegmentLimitExceeded) as info:
        count(text, Policy(max_parts=2))
    assert info.value.parts_needed == 3


def test_general_path_long_text_and_unmappable_after_mappable() -> None:
    text = "“quoted” " * 30  # typographic quotes only: the general path's transliteration
    assert segment._count_general(text, TRANSLIT).parts == 2
    assert segment._count_general("ação ¦", TRANSLIT).encoding == "ucs2"
    assert segment._count_general("¦ ação", TRANSLIT).encoding == "ucs2"
    with pytest.raises(SegmentLimitExceeded):
        segment._count_general("“quoted” " * 100, TRANSLIT)
    assert count("“x” ¦", TRANSLIT) == Count("ucs2", 5, 1, (), "“x” ¦")


def test_odd_character_memo_stays_bounded() -> None:
    for memo in (_plan.MEMO_TRANSLIT, _plan.MEMO_EXACT):
        for code in range(0x1000, 0x1000 + 5000):
            _plan.odd(frozenset({code}), memo)
        assert len(memo) <= _plan.MEMO_LIMIT
    assert count("ação", TRANSLIT).replacements == (("ã", "a"), ("ç", "c"))
    assert count("ação {x}", TRANSLIT).replacements == (("ã", "a"), ("ç", "c"))


def test_euro_texts_take_the_fast_path_and_keep_the_euro() -> None:
    text = "Pagamento de 10€ – obrigado"
    counted = count(text, TRANSLIT)
    assert counted.text == "Pagamento de 10€ - obrigado"
    assert counted.units == len(counted.text) + 1  # € is ESC + 0x65
    (part,) = split(text, TRANSLIT, 1)
    assert part.body == gsm7.DEFAULT.encode(counted.text)
    long = "a" * 152 + "€" + "b" * 10  # the escape would end part 1: it moves to part 2
    assert [len(p.body) for p in split(long, UCS2, 1)] == [152, 12]
    assert count("10€\f", STRICT).units == 6  # a real form feed next to a euro


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("“quoted” " * 100, TRANSLIT),  # typographic punctuation, then too long
        ("{x} ação " * 100, TRANSLIT),  # extension characters and transliteration
        ("{x} " * 200, UCS2),  # extension characters only
        ("ação ¦ " * 60, UCS2),  # an unmappable Latin-1 character: UCS-2, accents kept
        ("ж" * 400, TRANSLIT),
    ],
)
@pytest.mark.parametrize("max_parts", [1, 2, 8])
def test_every_fast_route_counts_parts_and_limits_as_the_general_path(
    text: str, policy: Policy, max_parts: int
) -> None:
    policy = Policy(mode=policy.mode, max_parts=max_parts)
    try:
        expected: object = segment._count_general(text, policy)
    except SegmentLimitExceeded as exc:
        with pytest.raises(SegmentLimitExceeded) as info:
            count(text, policy)
        assert str(info.value) == str(exc)
        expected = exc.parts_needed
    else:
        assert count(text, policy) == expected
    assert len(split(text, Policy(mode=policy.mode, max_parts=255), 1)) == (
        expected if isinstance(expected, int) else expected.parts
    )


def test_parts_by_units_table_matches_the_arithmetic() -> None:
    table = _plan.parts_table(160, 153, 3)
    assert len(table) == 3 * 153 + 1
    assert [table[u] for u in (0, 160, 161, 306, 307, 459)] == [1, 1, 2, 2, 3, 3]
    assert len(_plan.parts_table(160, 153, 1)) == 161


def test_common_letters_mask_matches_the_table() -> None:
    from codec import _latin1

    assert _latin1.COMMON == (0xE1, 0xE2, 0xE3, 0xE7, 0xEA, 0xED, 0xF3, 0xF4, 0xF5, 0xFA)
    for letters in ("á", "ú", "ãõ", "áâãçêíóôõú", "çê ó"):
        text = f"x {letters} y"
        assert count(text, TRANSLIT) == segment._count_general(text, TRANSLIT)


def _general_path_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("took the general path")

    monkeypatch.setattr(segment, "_count_general", fail)
    monkeypatch.setattr(segment, "_split_general", fail)


@pytest.mark.parametrize("policy", [TRANSLIT, UCS2, STRICT])
def test_greek_capitals_take_the_fast_path_and_stay(
    policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "ΔΩ 10€ {ok} " * 16  # over one part, with escapes near the cuts
    expected = segment._count_general(text, policy)
    expected_parts = segment._split_general(text, policy, 7)
    _general_path_forbidden(monkeypatch)
    assert count(text, policy) == expected
    assert split(text, policy, 7) == expected_parts
    assert count("ΣΩΣ", policy) == Count("gsm7", 3, 1, (), "ΣΩΣ")  # starts wide: no encode


def test_many_kinds_of_gsm_character_above_latin1_are_left_to_the_general_path() -> None:
    from codec import _latin1

    text = "ΔΦΓΛΩΠΨΣΘΞ “x” – ok…"
    expected = segment._count_general(text, TRANSLIT), segment._split_general(text, TRANSLIT, 1)
    assert (count(text, TRANSLIT), split(text, TRANSLIT, 1)) == expected
    assert _latin1.widen(text, 0, "transliterate") is None
    assert _latin1.widen("ΔΦΓ 10€", 0, "transliterate") is None  # 4 kinds of stand-in
    widened = _latin1.widen("x “a” – b… ‘c’ •", 2, "transliterate")  # any number of these
    assert widened is not None and widened[1] == 'x "a" - b... \'c\' *'


def test_a_stand_in_the_text_already_holds_leaves_it_to_the_general_path() -> None:
    for text in ("Δ costs £5", "10€ and a \f form feed", "Σ ø Π ø"):
        assert count(text, TRANSLIT) == segment._count_general(text, TRANSLIT)
        assert split(text, TRANSLIT, 1) == segment._split_general(text, TRANSLIT, 1)


def test_stand_ins_can_be_swapped_back_without_touching_anything_else() -> None:
    from codec import _latin1, _tables

    results = "".join(_tables.TRANSLITERATION.values())
    extension_codes = {gsm7.DEFAULT.encode(c)[1] for c in gsm7.DEFAULT.extension_chars}
    assert len(set(_latin1.STAND_INS.values())) == len(_latin1.STAND_INS)
    for char, stand_in in _latin1.STAND_INS.items():
        assert ord(char) > 0xFF and ord(stand_in) <= 0xFF and stand_in not in results
        septets = _latin1.SEPTETS_OF[stand_in]
        if char in gsm7.DEFAULT.extension_chars:
            assert stand_in in gsm7.DEFAULT.extension_chars
        else:
            assert char in gsm7.DEFAULT.basic_chars and stand_in in gsm7.DEFAULT.basic_chars
            assert len(septets) == 1 and septets[0] not in extension_codes


@pytest.mark.parametrize("policy", [TRANSLIT, UCS2, STRICT, Policy(mode="national")])
def test_texts_starting_above_latin1_agree_with_the_general_path(policy: Policy) -> None:
    for text in ("жовтень 10", "“Olá”, ação", "…", "ж" * 67 + "😀" * 3, "日本", "ΔΔ ж"):
        try:
            expected: object = segment._count_general(text, policy)
        except UnencodableText as exc:
            expected = str(exc)
            with pytest.raises(UnencodableText, match=re.escape(str(exc))):
                count(text, policy)
        else:
            assert count(text, policy) == expected
