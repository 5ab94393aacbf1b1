"""Receipt parsing (deliver_sm -> CarrierReceipt) and part -> submit_sm building, pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as s

from actors.messages import CarrierReceipt, MsgId, SubmitPart
from adapters.errors import LocalProtocolViolation
from adapters.smpp import pdu as p
from adapters.smpp.receipts import parse_receipt, parse_text, smpp_date
from adapters.smpp.submit import (
    SubmitOptions,
    build_submit,
    encode_part,
    source_address,
    strip_concat,
)
from codec import Policy, split, unpack_septets

TEXT = (b"id:0x04000000086ECD50 sub:001 dlvrd:001 submit date:2411242210 "
        b"done date:2411242211 stat:DELIVRD err:000 text:Hello id:fake stat:UNDELIV")


def receipt(short_message: bytes = TEXT, **tlvs: object) -> p.DeliverSm:
    return p.DeliverSm(1, "491", "Septet", short_message, esm_class=0x04, **tlvs)  # type: ignore[arg-type]


def test_text_receipt_keeps_the_id_verbatim_and_ignores_the_text_field() -> None:
    got = parse_receipt(receipt(), connector="c", received_at=5.0)
    assert got == CarrierReceipt("c", "0x04000000086ECD50", "DELIVRD", "", 5.0,
                                 smpp_date("2411242211"))


def test_tlvs_win_over_text() -> None:
    got = parse_receipt(receipt(receipted_message_id="288230376293190992", message_state=5,
                                network_error_code=b"\x03\x00\x22"),
                        connector="c", received_at=0.0)
    assert got is not None
    assert (got.carrier_id, got.state, got.error_code) == ("288230376293190992", "UNDELIV", "034")


@pytest.mark.parametrize(("stat", "state"), [("UNDELIV", "UNDELIV"), ("expired", "EXPIRED"),
                                             ("REJECTD", "REJECTD"), ("DELIVERED", "DELIVRD"),
                                             ("weird", "UNKNOWN")])
def test_stat_words(stat: str, state: str) -> None:
    text = f"id:abc-01 sub:001 dlvrd:000 submit date:2401010000 done date:2401010001 stat:{stat} err:012 text:"
    got = parse_receipt(receipt(text.encode()), connector="c", received_at=0.0)
    assert got is not None and (got.carrier_id, got.state, got.error_code) == ("abc-01", state, "012")


def test_mobile_originated_deliver_sm_is_not_a_receipt() -> None:
    mo = p.DeliverSm(1, "491", "Septet", b"id:1 stat:DELIVRD", esm_class=0)
    assert parse_receipt(mo, connector="c", received_at=0.0) is None


def test_dates_are_utc_and_junk_is_zero() -> None:
    assert smpp_date("7001010000") == 3155760000.0  # two-digit years are 20YY (SMPP 3.4 §7.1.1)
    assert smpp_date("0001010000") == 946684800.0
    assert smpp_date("000101000030") == 946684830.0
    assert smpp_date("notadate") == 0.0 and smpp_date("0013010000") == 0.0


@given(s.binary(max_size=200))
def test_any_bytes_parse_without_crashing(data: bytes) -> None:
    parse_text(data)
    parse_receipt(receipt(data), connector="c", received_at=0.0)


def part(text: str, index: int = 0, policy: Policy = Policy()) -> SubmitPart:  # noqa: B008 - frozen
    parts = split(text, policy, 0x42)
    q = parts[index]
    return SubmitPart(MsgId("m1"), index + 1, len(parts), "+4915112345678", "Septet",
                      q.data_coding, q.udh, q.body, 0x42)


def test_udh_concat_sets_udhi_and_prefixes_the_header() -> None:
    sp = part("x" * 200)
    pdu = build_submit(sp, SubmitOptions())
    assert pdu.esm_class == p.ESM_UDHI and pdu.short_message == sp.udh + sp.body
    assert (pdu.destination_addr, pdu.dest_addr_ton, pdu.registered_delivery) == ("4915112345678", 1, 1)
    assert (pdu.source_addr_ton, pdu.source_addr) == (5, "Septet")


def test_sar_concat_moves_the_reference_into_tlvs() -> None:
    sp = part("x" * 200, index=1)
    pdu = build_submit(sp, SubmitOptions(concat="sar"))
    assert pdu.esm_class == 0 and pdu.short_message == sp.body
    assert (pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum) == (0x42, 2, 2)


def test_packed_gsm7_uses_fill_bits_after_the_udh() -> None:
    sp = part("y" * 200)
    pdu = build_submit(sp, SubmitOptions(packed_gsm7=True))
    header, packed = pdu.short_message[: len(sp.udh)], pdu.short_message[len(sp.udh):]
    assert header == sp.udh
    fill = (7 - len(sp.udh) * 8 % 7) % 7
    assert unpack_septets(packed, len(sp.body), fill) == sp.body


def test_ucs2_is_never_packed() -> None:
    sp = part("\u4f60\u597d", policy=Policy(mode="ucs2"))
    assert build_submit(sp, SubmitOptions(packed_gsm7=True)).short_message == sp.body


def test_strip_concat_keeps_other_ies() -> None:
    udh = bytes([8, 0x00, 3, 0x42, 2, 1, 0x25, 1, 0x0D])  # concat + national locking shift
    assert strip_concat(udh) == bytes([3, 0x25, 1, 0x0D])
    assert strip_concat(bytes([5, 0x00, 3, 1, 2, 1])) == b""
    with pytest.raises(LocalProtocolViolation):
        strip_concat(bytes([5, 0x00, 9, 1]))


@pytest.mark.parametrize(("sender", "expected"), [("Septet", (5, 0, "Septet")),
                                                  ("+4915112345678", (1, 1, "4915112345678")),
                                                  ("12345", (3, 0, "12345"))])
def test_source_address_ton_npi(sender: str, expected: tuple[int, int, str]) -> None:
    assert source_address(sender) == expected


def test_long_single_body_goes_to_message_payload() -> None:
    sp = SubmitPart(MsgId("m"), 1, 1, "+1", "S", 8, b"", b"\x00a" * 200, 0)
    pdu = build_submit(sp, SubmitOptions())
    assert pdu.short_message == b"" and pdu.message_payload == sp.body


@given(
    text=s.text(s.characters(codec="utf-8"), max_size=300),
    sender=s.sampled_from(["Septet", "+4915112345678", "12345", "A" * 20]),
    concat=s.sampled_from(["udh", "sar"]),
    packed=s.booleans(),
)
def test_fast_encoder_agrees_with_the_general_one(text: str, sender: str, concat: str,
                                                  packed: bool) -> None:
    options = SubmitOptions(concat=concat, packed_gsm7=packed)  # type: ignore[arg-type]
    for q in split(text, Policy(max_parts=10), 7):
        sp = SubmitPart(MsgId("m"), 1, 2, "+4915112345678", sender, q.data_coding, q.udh, q.body, 7)
        assert encode_part(sp, options) == p.encode(build_submit(sp, options))


@pytest.mark.parametrize("stat", ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD"])
def test_fast_and_general_receipt_paths_agree(stat: str) -> None:
    from adapters.simulator.machine import MESSAGE_STATES, receipt_text

    text = receipt_text("0004F2", stat, 34 if stat != "DELIVRD" else 0, 1.7e9, 1.7e9 + 61, b"hi")
    with_tlvs = receipt(text, receipted_message_id="0004F2", message_state=MESSAGE_STATES[stat])
    text_only = receipt(text)
    fast = parse_receipt(with_tlvs, connector="c", received_at=0.0)
    slow = parse_receipt(text_only, connector="c", received_at=0.0)
    assert fast == slow and fast is not None and fast.state == stat


def test_public_names_match_all() -> None:
    import adapters.simulator
    import adapters.smpp

    for module in (adapters.smpp, adapters.simulator):
        assert all(hasattr(module, name) for name in module.__all__)
