"""National language shift tables: choice of combination, headers in every part, capacities."""

from __future__ import annotations

from codec import Policy, count, decode_part, parse_udh, reassemble, split

NATIONAL = Policy(mode="national")


def _ies(udh: bytes) -> dict[int, bytes]:
    return dict(parse_udh(udh))


def test_plain_gsm_text_needs_no_national_header() -> None:
    assert split("hello", NATIONAL, 1)[0].udh == b""
    assert count("a{b}", NATIONAL).encoding == "gsm7"


def test_turkish_uses_the_turkish_locking_table_and_a_header_in_one_part() -> None:
    text = "Şişli'de ılık bir gün, ağaçlar yeşil"
    counted = count(text, NATIONAL)
    assert counted.encoding == "gsm7-national"
    assert counted.units == len(text)  # every letter is in the Turkish locking table
    (part,) = split(text, NATIONAL, 1)
    assert part.udhi and part.data_coding == 0
    assert _ies(part.udh) == {0x25: b"\x01"}
    assert decode_part(part.udh + part.body, 0, udhi=True).text == text


def test_portuguese_prefers_the_cheaper_table() -> None:
    text = "Atenção: a ligação está ótima"  # ç ã á ó: all in the Portuguese locking table
    counted = count(text, Policy(mode="national", languages=("pt",)))
    assert counted.units == len(text)
    (part,) = split(text, Policy(mode="national", languages=("pt",)), 1)
    assert _ies(part.udh) == {0x25: b"\x03"}


def test_spanish_has_only_a_single_shift_table() -> None:
    text = "canción"
    policy = Policy(mode="national", languages=("es",))
    counted = count(text, policy)
    assert (counted.encoding, counted.units) == ("gsm7-national", 8)  # ó costs escape + code
    (part,) = split(text, policy, 1)
    assert _ies(part.udh) == {0x24: b"\x02"}
    assert part.body == b"canci\x1bon"


def test_both_shift_tables_when_needed() -> None:
    # No single table holds both ã and ş: one language locks, the other single-shifts.
    text = "ãş"
    policy = Policy(mode="national", languages=("pt", "tr"))
    (part,) = split(text, policy, 1)
    ies = _ies(part.udh)
    assert set(ies) == {0x24, 0x25} and {ies[0x24], ies[0x25]} == {b"\x01", b"\x03"}
    assert decode_part(part.udh + part.body, 0, udhi=True).text == text


def test_one_part_capacity_with_one_shift_ie_is_155_septets() -> None:
    policy = Policy(mode="national", languages=("tr",))
    assert count("ş" * 155, policy).parts == 1
    assert count("ş" * 156, policy).parts == 2


def test_every_part_carries_the_shift_ie_and_149_septets() -> None:
    policy = Policy(mode="national", languages=("tr",))
    parts = split("ş" * 300, policy, 0x42)
    assert [len(p.body) for p in parts] == [149, 149, 2]
    for seq, part in enumerate(parts, 1):
        assert _ies(part.udh) == {0x00: bytes((0x42, 3, seq)), 0x25: b"\x01"}
    received = [decode_part(p.udh + p.body, 0, udhi=True) for p in parts]
    assert reassemble(reversed(received)) == "ş" * 300


def test_16_bit_reference_with_both_shifts_gives_145() -> None:
    policy = Policy(mode="national", ref_bits=16, max_parts=10, languages=("pt", "tr"))
    text = "ş" + "ã" * 400  # Portuguese locking + Turkish single shift is cheapest
    parts = split(text, policy, 0xBEEF)
    assert all(len(p.udh) == 13 for p in parts)
    assert [len(p.body) for p in parts] == [145, 145, 112]
    assert _ies(parts[0].udh) == {0x08: b"\xbe\xef\x03\x01", 0x25: b"\x03", 0x24: b"\x01"}
    assert count(text, policy).parts == len(parts)


def test_unencodable_national_text_goes_ucs2_unchanged() -> None:
    assert count("ş и", NATIONAL).encoding == "ucs2"
    assert count("ş", Policy(mode="national", languages=("pt",))).encoding == "ucs2"
    assert count("ação", Policy(mode="national", languages=("tr",))).encoding == "ucs2"


def test_receiver_tables_for_unknown_or_void_ids_are_the_default() -> None:
    from codec import _national, gsm7

    assert _national.alphabet_for(None, None) is gsm7.DEFAULT
    assert _national.alphabet_for(99, 98) is gsm7.DEFAULT
    assert _national.alphabet_for(2, None) is gsm7.DEFAULT  # no Spanish locking table (A.3.2)
    assert _national.alphabet_for(1, 99).decode(b"\x07") == "ı"  # Turkish locking kept
    assert _national.alphabet_for(None, 2).decode(b"\x1bo") == "ó"
