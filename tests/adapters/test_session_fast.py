"""The ESME session's wire fast paths (``adapters.smpp._fast``) equal the general code.

For any frame, ``decode_with_receipts`` either gives what ``decode_frame`` (and, for a
receipt, ``parse_receipt``) makes of it, in its short form, or hands the frame to
``decode_frame`` itself (so an ``InvalidPdu`` names the same fault). Frames are receipts as
the simulator and other SMSCs write them, any deliver_sm or submit_sm_resp, cut short, with
octets changed, or junk.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as s

from adapters.errors import InvalidPdu, LocalProtocolViolation
from adapters.simulator.machine import encode_receipt, receipt_text
from adapters.smpp import _fast
from adapters.smpp import pdu as p
from adapters.smpp.receipts import parse_receipt
from adapters.smpp.session import DeliverReceived, EsmeSession, State, SubmitAnswered
from tests.adapters.test_pdu_fast import receipts as receipt_pdus
from tests.adapters.test_pdu_fast import words


def _outcome(decode: Any, buf: bytes, pos: int, end: int) -> Any:
    try:
        return decode(buf, pos, end)
    except InvalidPdu as exc:
        return ("invalid", str(exc), exc.status, exc.sequence)


@s.composite
def frames(draw: s.DrawFn) -> bytes:
    """Whole frames (header included) with a sound command_length."""
    kind = draw(s.sampled_from(["simulator", "pdu", "resp", "junk"]))
    if kind == "simulator":
        stat = draw(s.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "weird"]))
        text = receipt_text(draw(words) or "1", stat, draw(s.integers(0, 999)), 1.7e9, 1.8e9,
                            draw(s.binary(max_size=20)))
        raw = encode_receipt(draw(s.integers(1, 0x7FFFFFFF)), "4477", "SEPTET", text[:254],
                             draw(words) or "x", draw(s.none() | s.integers(0, 9)),
                             draw(s.integers(0, 0xFFFF)))
    elif kind == "pdu":
        raw = p.encode(draw(receipt_pdus()))
    elif kind == "resp":
        raw = p.encode(p.SubmitSmResp(draw(s.integers(1, 0x7FFFFFFF)), draw(s.integers(0, 0x64)),
                                      draw(words)))
    else:
        raw = struct.pack(">IIII", 0, draw(s.sampled_from([p.DELIVER_SM, p.SUBMIT_SM_RESP])), 0,
                          7) + draw(s.binary(max_size=60))
    body = bytearray(raw[16:])
    for _ in range(draw(s.integers(0, 2))):
        if body:
            body[draw(s.integers(0, len(body) - 1))] = draw(s.sampled_from([0, 1, 4, 0xFF]))
    if draw(s.booleans()):
        body = body[: draw(s.integers(0, len(body)))]
    return struct.pack(">I", 16 + len(body)) + raw[4:16] + bytes(body)


def _with_tlvs(tlvs: bytes) -> bytes:
    """A simulator receipt (DELIVRD in its text) without TLVs, then ``tlvs``."""
    raw = encode_receipt(4, "4477", "SEPTET", receipt_text("abc", "DELIVRD", 0, 1.7e9, 1.7e9,
                                                           b""), "abc", None, 0) + tlvs
    return struct.pack(">I", len(raw)) + raw[4:]


# receipted_message_id longer than its C string, hiding what looks like a message_state
# (UNKNOWN) inside it: the general decoder sees no message_state, takes stat: from the text
HIDDEN_STATE = _with_tlvs(b"\x00\x1e\x00\x09abc\0\x04\x27\x00\x01\x07")


@settings(max_examples=500, deadline=None)
@given(frames(), s.binary(max_size=3))
@example(HIDDEN_STATE, b"")
@example(_with_tlvs(b"\x00\x1e\x00\x04abc\0\x04\x27\x00\x01\x05\x04\x23\x00\x03\x03\x01\x02"), b"")
@example(_with_tlvs(b"\x04\x27\x00\x01\x05\x00\x1e\x00\x04abc\0"), b"")  # other order
@example(p.encode(p.SubmitSmResp(3, 0, "")), b"")
@example(struct.pack(">IIII", 17, p.SUBMIT_SM_RESP, 0, 3) + b"x", b"")  # no NUL: invalid
@example(struct.pack(">IIII", 16, p.SUBMIT_SM_RESP, 0x58, 3), b"")  # no body at all
def test_decode_with_receipts_equals_the_general_code(frame: bytes, after: bytes) -> None:
    # ``after``: the next PDU's octets in the same buffer, which neither may read.
    buf = b"xx" + frame + after
    end = 2 + len(frame)
    fast = _outcome(_fast.decode_with_receipts, buf, 2, end)
    general = _outcome(p.decode_frame, buf, 2, end)
    plain = _outcome(_fast.decode, buf, 2, end)
    if type(fast) is _fast.ReceiptFields:
        assert isinstance(general, p.DeliverSm) and general.sequence == fast.sequence
        assert fast.receipt("c", 2.0) == parse_receipt(general, connector="c", received_at=2.0)
        assert plain == general  # ``decode`` leaves deliver_sm alone
    elif type(fast) is tuple and fast[0] != "invalid":
        assert isinstance(general, p.SubmitSmResp)
        assert fast == (general.sequence, general.status, general.message_id) == plain
    else:
        assert fast == general == plain


def test_a_simulator_receipt_takes_the_fast_path_and_is_acknowledged() -> None:
    raw = encode_receipt(9, "447700900123", "SEPTET",
                         receipt_text("00AB", "UNDELIV", 1, 1.7e9, 1.7e9, b"hi"), "00AB", 5, 1)
    session = EsmeSession(now=0.0, receipt_fields=True)
    session.state, session.mode = State.BOUND, "transceiver"
    [event] = session.receive_data(raw, 0.0)
    assert isinstance(event, DeliverReceived) and type(event.pdu) is _fast.ReceiptFields
    receipt = event.pdu.receipt("c", 1.0)
    assert (receipt.carrier_id, receipt.state, receipt.error_code) == ("00AB", "UNDELIV", "001")
    session.acknowledge_all([event.pdu.sequence, 10], 0x64)
    assert session.data_to_send() == (p.encode_deliver_sm_resp(9, 0x64)
                                      + p.encode_deliver_sm_resp(10, 0x64))
    # without receipt_fields the session hands over the DeliverSm, as before
    plain = EsmeSession(now=0.0)
    plain.state, plain.mode = State.BOUND, "transceiver"
    [event] = plain.receive_data(raw, 0.0)
    assert isinstance(event, DeliverReceived) and isinstance(event.pdu, p.DeliverSm)


def test_a_submit_sm_resp_answers_its_submit_through_the_tuple_path() -> None:
    session = EsmeSession(now=0.0)
    session.state, session.mode = State.BOUND, "transceiver"
    seq = session.submit_encoded(b"\0" * 40, now=0.0, token="t")
    events = session.receive_data(p.encode(p.SubmitSmResp(seq, 0, "ABC")) + struct.pack(
        ">IIII", 17, p.SUBMIT_SM_RESP, 0, 99) + b"x", 0.0)  # the second: malformed, unknown seq
    assert events == [SubmitAnswered(seq, "t", 0, "ABC", False)]
    assert session.in_flight == 0


@settings(max_examples=150, deadline=None)
@given(s.integers(1, 8), s.integers(0, 3), s.integers(0, 10),
       s.sampled_from([0, 5, 0x7FFFFFFD]), s.sampled_from(["transceiver", "receiver"]))
def test_submit_encoded_many_equals_submit_encoded_one_by_one(
        window: int, already: int, n: int, start: int, mode: str) -> None:
    frames = [p.encode(p.SubmitSm(0, "S", f"49{i}", b"x" * i)) for i in range(n)]

    def session() -> EsmeSession:
        one = EsmeSession(now=0.0, window=window, response_timeout=3.0)
        one.state, one.mode, one._sequence = State.BOUND, mode, start  # type: ignore[assignment]
        for i in range(min(already, one.submit_room)):
            one.submit_encoded(frames[0] if frames else b"\0" * 17, now=0.5, token=("old", i))
        one.data_to_send()
        return one

    loop, batch = session(), session()
    room = loop.submit_room
    assert room == (window - min(already, window) if mode != "receiver" else 0)
    assert loop.can_submit == (room > 0)
    tokens = [("new", i) for i in range(n)]
    if n > room:
        with pytest.raises(LocalProtocolViolation):
            batch.submit_encoded_many(frames, tokens, now=1.0)
        frames, tokens = frames[:room], tokens[:room]
    for frame, token in zip(frames, tokens):
        loop.submit_encoded(frame, now=1.0, token=token)
    batch.submit_encoded_many(frames, tokens, now=1.0)
    assert batch.data_to_send() == loop.data_to_send()
    assert batch._outstanding == loop._outstanding
    assert (batch.in_flight, batch._sequence, batch.can_submit) == (
        loop.in_flight, loop._sequence, loop.can_submit)
