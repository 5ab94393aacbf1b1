"""The fast paths of the SMPP client's hot PDUs decode exactly as the general code does.

submit_sm/deliver_sm bodies (one regex for the fixed fields), their TLVs (read in place) and
receipts (``parse_receipt``'s fast path) are compared, for valid and broken input alike, with
the field-by-field reference: the same value, or an error for the same input.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as s

from actors.messages import CarrierReceipt, ReceiptState
from adapters.errors import InvalidPdu
from adapters.simulator.machine import encode_receipt, receipt_text
from adapters.smpp import _decode, _tlv
from adapters.smpp import pdu as p
from adapters.smpp.receipts import (
    STATE_BY_NUMBER,
    parse_receipt,
    parse_text,
    receipt_state,
    smpp_date,
)
from tests.adapters.test_pdu import sm_pdus

# ---------------------------------------------------------------- references (pre-fast-path)


def _reference_tlvs(pdu: p.DeliverSm, buf: bytes, pos: int, end: int) -> None:
    """decode_sm_tlvs as it was before values were read in place."""
    extra: list[tuple[int, bytes]] = []
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated TLV header")
        tag, length = struct.unpack_from(">HH", buf, pos)
        pos += 4
        if pos + length > end:
            raise ValueError("past the end")
        value = bytes(buf[pos : pos + length])
        pos += length
        one = {_tlv.TAG_MESSAGE_STATE: "message_state", _tlv.TAG_SAR_TOTAL_SEGMENTS:
               "sar_total_segments", _tlv.TAG_SAR_SEGMENT_SEQNUM: "sar_segment_seqnum"}
        two = {_tlv.TAG_SAR_MSG_REF_NUM: "sar_msg_ref_num",
               _tlv.TAG_USER_MESSAGE_REFERENCE: "user_message_reference"}
        if tag == _tlv.TAG_RECEIPTED_MESSAGE_ID:
            pdu.receipted_message_id = value.split(b"\0", 1)[0].decode("latin-1")
        elif tag in one:
            if len(value) != 1:
                raise ValueError("1 octet")
            setattr(pdu, one[tag], value[0])
        elif tag == _tlv.TAG_NETWORK_ERROR_CODE:
            if length != 3:
                raise ValueError("3 octets")
            pdu.network_error_code = value
        elif tag in two:
            if len(value) != 2:
                raise ValueError("2 octets")
            setattr(pdu, two[tag], (value[0] << 8) | value[1])
        elif tag == _tlv.TAG_MESSAGE_PAYLOAD:
            pdu.message_payload = value
        else:
            extra.append((tag, value))
    pdu.extra_tlvs = tuple(extra)


def _reference_receipt(pdu: p.DeliverSm, *, connector: str, received_at: float
                       ) -> CarrierReceipt | None:
    """parse_receipt as it was before its fast path was inlined."""
    def word_after(text: bytes, key: bytes) -> str | None:
        start = text.find(key)
        if start < 0:
            return None
        start += len(key)
        end = text.find(b" ", start)
        return text[start : end if end >= 0 else len(text)].decode("latin-1")

    if not pdu.is_receipt:
        return None
    text = pdu.short_message or pdu.message_payload or b""
    done = word_after(text, b"done date:")
    if pdu.receipted_message_id and pdu.message_state is not None and done is not None:
        fields = {"done date": done}
        err = word_after(text, b" err:")
        if err is not None:
            fields["err"] = err
    else:
        fields = parse_text(text)
    carrier_id = pdu.receipted_message_id or fields.get("id", "")
    if not carrier_id:
        return None
    if pdu.message_state is not None:
        state = STATE_BY_NUMBER.get(pdu.message_state, ReceiptState.UNKNOWN)
    else:
        state = receipt_state(fields.get("stat", ""))
    if pdu.network_error_code is not None:
        error = f"{int.from_bytes(pdu.network_error_code[1:], 'big'):03d}"
    else:
        error = fields.get("err", "")
    if error.strip("0") == "":
        error = ""
    return CarrierReceipt(connector, carrier_id, str(state), error, received_at,
                          smpp_date(fields.get("done date", "")))


def _outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except (ValueError, IndexError, struct.error) as exc:
        return ("error", type(exc).__name__ if not isinstance(exc, ValueError) else "ValueError")


# ----------------------------------------------------------------------------- bodies


@s.composite
def sm_bodies(draw: s.DrawFn) -> bytes:
    """Bodies of submit_sm/deliver_sm: encoded ones, cut short, with octets changed, or junk."""
    pdu = draw(s.one_of(sm_pdus(p.SubmitSm), sm_pdus(p.DeliverSm)))
    body = bytearray(p.encode(pdu)[16:])
    for _ in range(draw(s.integers(0, 3))):
        if not body:
            break
        at = draw(s.integers(0, len(body) - 1))
        body[at] = draw(s.sampled_from([0, 1, 0xFF, draw(s.integers(0, 255))]))
    if draw(s.booleans()):
        body = body[: draw(s.integers(0, len(body)))]
    return bytes(body)


bodies = sm_bodies() | s.binary(max_size=80) | s.lists(
    s.sampled_from([b"\0", b"a", b"\x04", b"\x00\x1e", b"\x04\x27\x00\x01"]), max_size=40
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(bodies, s.binary(max_size=3), s.sampled_from([p.SubmitSm, p.DeliverSm]))
@example(b"\0\0\0a\0\0\0b\0\0\0\0\0\0\0\0\0\0\0\x01x", b"", p.DeliverSm)
@example(b"\0\0\0a\0\0\0b\0\0\0\0\0\0\0\0\0\0", b"", p.DeliverSm)  # ends inside the tail
def test_fast_sm_decode_equals_the_general_decoder(body: bytes, after: bytes,
                                                   cls: type[p.DeliverSm]) -> None:
    # ``after``: octets of the next PDU in the same buffer, which neither may read.
    buf = b"HEADxxxxxxxxxxxx" + body + after
    end = 16 + len(body)
    fast = _outcome(_decode._decode_sm, cls, buf, 16, end, 9)
    general = _outcome(_decode._decode_sm_general, cls, buf, 16, end, 9)
    assert fast == general


@settings(max_examples=300, deadline=None)
@given(s.lists(s.tuples(s.sampled_from([0x001E, 0x0427, 0x0423, 0x020C, 0x020E, 0x020F, 0x0424,
                                        0x0204, 0x1401]), s.binary(max_size=6)), max_size=5),
       s.integers(0, 3))
def test_tlvs_decode_as_the_reference(tlvs: list[tuple[int, bytes]], cut: int) -> None:
    raw = b"".join(struct.pack(">HH", tag, len(v)) + v for tag, v in tlvs)
    raw = raw[: max(0, len(raw) - cut)]
    fast, ref = p.DeliverSm(1), p.DeliverSm(1)
    got = _outcome(_tlv.decode_sm_tlvs, fast, raw, 0, len(raw))
    want = _outcome(_reference_tlvs, ref, raw, 0, len(raw))
    assert (got is None) == (want is None)
    if got is None:
        assert fast == ref


words = s.text(s.sampled_from("0123456789abcDEF:- "), max_size=12)


@s.composite
def receipts(draw: s.DrawFn) -> p.DeliverSm:
    stat = draw(s.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "weird", ""]))
    text = receipt_text(draw(words), stat, draw(s.integers(0, 999)), 1.7e9, 1.8e9,
                        draw(s.binary(max_size=20)))
    if draw(s.booleans()):
        text = draw(s.binary(max_size=60)) if draw(s.booleans()) else text[: draw(
            s.integers(0, len(text)))]
    raw = encode_receipt(7, "4477", "SEPTET", text[:254], draw(words) or "x",
                         draw(s.none() | s.integers(0, 9)), draw(s.integers(0, 0xFFFF)))
    pdu = p.decode(raw)
    assert isinstance(pdu, p.DeliverSm)
    pdu.esm_class = draw(s.sampled_from([0x04, 0x00, 0x44, 0x08]))
    if draw(s.booleans()):
        pdu.receipted_message_id = draw(s.none() | words)
    if draw(s.booleans()):
        pdu.network_error_code = draw(s.none() | s.binary(min_size=3, max_size=3))
    if draw(s.booleans()):
        pdu.short_message, pdu.message_payload = b"", pdu.short_message
    return pdu


@settings(max_examples=400, deadline=None)
@given(receipts())
def test_parse_receipt_equals_the_reference(pdu: p.DeliverSm) -> None:
    assert parse_receipt(pdu, connector="c", received_at=2.0) == _reference_receipt(
        pdu, connector="c", received_at=2.0)


def test_a_simulator_receipt_decodes_through_the_fast_path() -> None:
    raw = encode_receipt(5, "447700900123", "SEPTET",
                         receipt_text("00ab", "DELIVRD", 0, 1.7e9, 1.7e9, b"hi"), "00ab", 2, 0)
    assert _decode.SM_FIXED(raw, 16, len(raw)) is not None
    pdu = p.decode(raw)
    assert isinstance(pdu, p.DeliverSm) and pdu.receipted_message_id == "00ab"
    got = parse_receipt(pdu, connector="c", received_at=1.0)
    assert got is not None and (got.carrier_id, got.state, got.error_code) == ("00ab", "DELIVRD", "")


def test_a_broken_body_is_still_an_invalid_pdu() -> None:
    raw = struct.pack(">IIII", 16 + 5, p.DELIVER_SM, 0, 3) + b"\0\0\0ab"
    with pytest.raises(InvalidPdu):
        p.decode(raw)
