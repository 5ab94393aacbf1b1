"""GSM 7-bit text <-> septets and septet packing: spec vectors and edge cases."""

from __future__ import annotations

import pytest

from codec import CodecError, gsm7, pack_septets, unpack_septets

D = gsm7.DEFAULT


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("hellohello", "E8329BFD4697D9EC37"),  # the classic PDU-mode example
        ("Hello", "C8329BFD06"),
        ("12345678", "31D98C56B3DD70"),  # 8 septets fill exactly 7 octets
        ("1234567", "31D98C56B3DD1A"),  # 7 spare bits hold CR (TS 23.038 §6.1.2.3.1)
    ],
)
def test_packing_vectors(text: str, packed: str) -> None:
    septets = D.encode(text)
    assert pack_septets(septets).hex().upper() == packed
    assert D.decode(unpack_septets(bytes.fromhex(packed), len(text))) == text


def test_packing_after_a_udh_uses_fill_bits() -> None:
    # After the 6-octet concatenation UDH, 1 fill bit aligns the text to septet 7.
    packed = pack_septets(D.encode("Hello"), 1)
    assert packed.hex().upper() == "906536FB0D"
    assert unpack_septets(packed, 5, 1) == D.encode("Hello")


def test_at_sign_is_septet_zero_and_extension_uses_escape() -> None:
    assert D.encode("@") == b"\x00"
    assert D.encode("€[") == b"\x1be\x1b<"
    assert D.encode("\f") == b"\x1b\n"
    assert D.decode(b"\x1be\x1b<") == "€["


def test_unknown_extension_code_decodes_as_the_basic_character() -> None:
    assert D.decode(b"\x1bA") == "A"  # TS 23.038 §6.2.1.1 display rule
    assert D.decode(b"ab\x1b") == "ab "  # a lone trailing escape shows as a space


def test_bad_septets_and_fills_are_rejected() -> None:
    with pytest.raises(CodecError):
        pack_septets(b"\x80")
    with pytest.raises(CodecError):
        pack_septets(b"a", 7)
    with pytest.raises(CodecError):
        unpack_septets(b"\x00", 2)
    with pytest.raises(CodecError):
        unpack_septets(b"\x00", 1, -1)
    with pytest.raises(CodecError):
        D.decode(b"\xff")
    with pytest.raises(CodecError):
        D.encode("ж")


def test_empty_inputs() -> None:
    assert pack_septets(b"") == b""
    assert unpack_septets(b"", 0) == b""
    assert D.encode("") == b"" and D.decode(b"") == ""
