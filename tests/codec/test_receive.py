"""UDH parsing and building, decoding of received parts and reassembly."""

from __future__ import annotations

import pytest

from codec import (
    CodecError,
    InvalidUDH,
    Policy,
    Reassembler,
    build_udh,
    decode_part,
    gsm7,
    pack_septets,
    parse_udh,
    reassemble,
    split,
    udh,
)


def test_parse_udh_of_a_concatenated_part() -> None:
    ies = parse_udh(bytes.fromhex("050003CC0201"))
    assert ies == ((0x00, b"\xcc\x02\x01"),)
    assert udh.find_concat(ies) == udh.Concat(0xCC, 2, 1, 8)


@pytest.mark.parametrize(
    "raw",
    ["0500", "050003CC02", "0600030102", "0300050102", "03000501", "0100"],
)
def test_malformed_udh_is_invalid(raw: str) -> None:
    with pytest.raises(InvalidUDH):
        parse_udh(bytes.fromhex(raw))


def test_build_udh_rejects_what_cannot_fit() -> None:
    with pytest.raises(InvalidUDH):
        build_udh([(256, b"")])
    with pytest.raises(InvalidUDH):
        build_udh([(1, bytes(256))])
    with pytest.raises(InvalidUDH):
        build_udh([(1, bytes(100)), (2, bytes(40))])
    assert build_udh([]) == b"" and parse_udh(b"") == ()


def test_concat_ie_with_zero_or_out_of_range_sequence_is_ignored() -> None:
    assert udh.find_concat(((0x00, b"\x01\x00\x01"),)) is None  # total 0
    assert udh.find_concat(((0x00, b"\x01\x02\x03"),)) is None  # sequence above total
    assert udh.find_concat(((0x00, b"\x01\x02"),)) is None  # wrong length
    assert udh.find_concat(((0x08, b"\x12\x34\x02\x02"),)) == udh.Concat(0x1234, 2, 2, 16)
    assert udh.find_shifts(((0x24, b"\x01"), (0x25, b"\x03"), (0x24, b""))) == (3, 1)


def test_decode_unpacked_gsm_with_and_without_udh() -> None:
    assert decode_part(b"Hi \x00", 0).text == "Hi @"
    part = decode_part(bytes.fromhex("050003CC0201") + b"abc", 0, udhi=True)
    assert part.text == "abc" and part.concat == udh.Concat(0xCC, 2, 1, 8)


def test_decode_packed_gsm_with_udh_and_fill() -> None:
    header = bytes.fromhex("050003CC0202")
    payload = header + pack_septets(gsm7.DEFAULT.encode("Hello"), 1)
    assert decode_part(payload, 0, udhi=True, packed=True, udl=7 + 5).text == "Hello"
    assert decode_part(payload, 0, udhi=True, packed=True).text == "Hello"
    with pytest.raises(InvalidUDH):
        decode_part(payload, 0, udhi=True, packed=True, udl=3)
    assert decode_part(b"", 0, packed=True).text == ""
    assert decode_part(bytes.fromhex("050003010201"), 0, udhi=True, packed=True).text == ""


def test_decode_ucs2_latin1_ascii_and_class_dcs() -> None:
    assert decode_part("жё😀".encode("utf-16-be"), 8).text == "жё😀"
    assert decode_part("ação".encode("latin-1"), 3).text == "ação"
    assert decode_part(b"plain", 1).text == "plain"
    assert decode_part(b"abc", 0xF1).text == "abc"
    with pytest.raises(CodecError):
        decode_part(b"\x00", 8)
    with pytest.raises(CodecError):
        decode_part(b"abc", 4)
    with pytest.raises(InvalidUDH):
        decode_part(b"\x05\x00", 0, udhi=True)


def test_reassembly_out_of_order_8_and_16_bit() -> None:
    for ref_bits in (8, 16):
        parts = split("x" * 200 + "😀" + "y" * 100, Policy(ref_bits=ref_bits), 0x1234)
        received = [decode_part(p.udh + p.body, p.data_coding, udhi=True) for p in parts]
        assert reassemble(received[::-1]) == "x" * 200 + "😀" + "y" * 100
        assert {r.concat.ref_bits for r in received if r.concat} == {ref_bits}


def test_reassembly_rejoins_a_surrogate_pair_split_by_another_sender() -> None:
    body = "😀".encode("utf-16-be")
    first = decode_part(bytes.fromhex("050003070201") + body[:2], 8, udhi=True)
    second = decode_part(bytes.fromhex("050003070202") + body[2:], 8, udhi=True)
    assert reassemble([second, first]) == "😀"


def test_reassembly_errors() -> None:
    single = decode_part(b"abc", 0)
    assert reassemble([single]) == "abc"
    a1 = decode_part(bytes.fromhex("050003010201") + b"a", 0, udhi=True)
    a1x = decode_part(bytes.fromhex("050003010201") + b"x", 0, udhi=True)
    b2 = decode_part(bytes.fromhex("050003020202") + b"b", 0, udhi=True)
    with pytest.raises(CodecError):
        reassemble([])
    with pytest.raises(CodecError):
        reassemble([a1, single])
    with pytest.raises(CodecError):
        reassemble([a1, b2])
    with pytest.raises(CodecError):
        reassemble([a1, a1x])
    with pytest.raises(CodecError, match="missing"):
        reassemble([a1])


def test_reassembler_groups_by_sender_and_reference() -> None:
    r = Reassembler()
    a = split("a" * 200, Policy(), 5)
    b = split("b" * 200, Policy(), 5)
    decoded_a = [decode_part(p.udh + p.body, 0, udhi=True) for p in a]
    decoded_b = [decode_part(p.udh + p.body, 0, udhi=True) for p in b]
    assert r.add("alice", decoded_a[1]) is None
    assert r.add("bob", decoded_b[0]) is None
    assert len(r) == 2
    assert r.add("alice", decoded_a[0]) == "a" * 200
    assert r.add("carol", decode_part(b"hi", 0)) == "hi"
    assert r.discard("bob") == 1 and len(r) == 0


def test_reassembler_keeps_at_most_max_groups() -> None:
    r = Reassembler(max_groups=2)
    firsts = [decode_part(split("z" * 200, Policy(), ref)[0].udh + b"z", 0, udhi=True)
              for ref in (1, 2, 3)]
    for part in firsts:
        assert r.add("s", part) is None
    assert len(r) == 2
    second_of_1 = decode_part(split("z" * 200, Policy(), 1)[1].udh + b"z", 0, udhi=True)
    assert r.add("s", second_of_1) is None  # group 1 was the oldest and was dropped
