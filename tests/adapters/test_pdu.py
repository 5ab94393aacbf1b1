"""The SMPP 3.4 PDU codec: spec byte vectors, hypothesis round trips, the framer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as s

from adapters.errors import InvalidPdu, LocalProtocolViolation, RemoteProtocolViolation
from adapters.smpp import pdu as p
from adapters.smpp import status as st

# SMPP v3.4 §3.3 (example PDU): bind_transmitter, sequence 1, system_id "SMPP3TEST",
# password "secret08", system_type "SUBMIT1", interface_version 0x34 (see §5.2.4: 0x34 =
# version 3.4), addr_ton 1, addr_npi 1, address_range NULL; command_length 0x2F = 47.
SPEC_BIND = bytes.fromhex(
    "0000002f" "00000002" "00000000" "00000001"
    "534d5050335445535400"  # SMPP3TEST\0
    "7365637265743038" "00"  # secret08\0
    "5355424d49543100"  # SUBMIT1\0
    "34" "01" "01" "00"
)


def test_spec_bind_transmitter_vector() -> None:
    pdu = p.BindRequest("transmitter", 1, "SMPP3TEST", "secret08", "SUBMIT1", 0x34, 1, 1, "")
    assert p.encode(pdu) == SPEC_BIND
    assert p.decode(SPEC_BIND) == pdu


def test_enquire_link_is_a_bare_header() -> None:  # §4.11.1: header only, 16 octets
    assert p.encode(p.EnquireLink(7)) == bytes.fromhex("00000010" "00000015" "00000000" "00000007")


def test_submit_sm_layout_and_tlv_vector() -> None:
    pdu = p.SubmitSm(2, "Septet", "4915112345678", b"Hi", source_addr_ton=5, dest_addr_ton=1,
                     dest_addr_npi=1, registered_delivery=1, sar_msg_ref_num=0x1234,
                     sar_total_segments=2, sar_segment_seqnum=1)
    body = (b"\0" + b"\x05\x00" + b"Septet\0" + b"\x01\x01" + b"4915112345678\0"
            + b"\x00\x00\x00" + b"\0" + b"\0" + b"\x01\x00\x00\x00\x02" + b"Hi"
            + bytes.fromhex("020c00021234" "020e000102" "020f000101"))  # §5.3.2.22-24
    assert p.encode(pdu) == struct.pack(">IIII", 16 + len(body), 4, 0, 2) + body


def test_deliver_sm_resp_has_a_null_message_id() -> None:  # §4.6.2
    assert p.encode(p.DeliverSmResp(9)) == bytes.fromhex("00000011800000050000000000000009" "00")


def test_error_bind_resp_without_body_decodes() -> None:  # §4.1.2: no body on error
    raw = struct.pack(">IIII", 16, p.BIND_TRANSCEIVER_RESP, st.ESME_RINVPASWD, 3)
    assert p.decode(raw) == p.BindResponse("transceiver", 3, st.ESME_RINVPASWD)


cstr = s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=5)
u8 = s.integers(0, 255)
seq = s.integers(1, 0x7FFFFFFF)
status = s.integers(0, 0xFFFFFFFF)
modes = s.sampled_from(["transmitter", "receiver", "transceiver"])


def sm_pdus(cls: type) -> s.SearchStrategy[p.Pdu]:
    return s.builds(
        cls, seq, s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=20),
        s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=20),
        s.binary(max_size=254), cstr, u8, u8, u8, u8, u8, u8, u8,
        s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=16),
        s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=16), u8, u8, u8, u8,
        receipted_message_id=s.none() | s.text(s.characters(min_codepoint=1, max_codepoint=255),
                                               max_size=64),
        message_state=s.none() | u8,
        network_error_code=s.none() | s.binary(min_size=3, max_size=3),
        sar_msg_ref_num=s.none() | s.integers(0, 0xFFFF),
        sar_total_segments=s.none() | u8,
        sar_segment_seqnum=s.none() | u8,
        message_payload=s.none() | s.binary(max_size=300),
        user_message_reference=s.none() | s.integers(0, 0xFFFF),
        extra_tlvs=s.lists(s.tuples(s.integers(0x1400, 0x3FFF), s.binary(max_size=8)),
                           max_size=2).map(tuple),
    )


any_pdu = s.one_of(
    s.builds(p.BindRequest, modes, seq, cstr, cstr, cstr, u8, u8, u8, cstr),
    s.builds(p.BindResponse, modes, seq, status, cstr, s.none() | u8),
    s.builds(p.Outbind, seq, cstr, cstr),
    sm_pdus(p.SubmitSm),
    sm_pdus(p.DeliverSm),
    s.builds(p.SubmitSmResp, seq, status, s.text(s.characters(min_codepoint=1, max_codepoint=255),
                                                  max_size=64)),
    s.builds(p.DeliverSmResp, seq, status),
    s.builds(p.EnquireLink, seq),
    s.builds(p.EnquireLinkResp, seq, status),
    s.builds(p.Unbind, seq),
    s.builds(p.UnbindResp, seq, status),
    s.builds(p.GenericNack, seq, status),
)


@settings(max_examples=300)
@given(any_pdu)
@example(p.SubmitSmResp(1, 0, "0x04000000086ECD50"))
def test_decode_inverts_encode(pdu: p.Pdu) -> None:
    assert p.decode(p.encode(pdu)) == pdu


@settings(max_examples=100)
@given(s.lists(any_pdu, min_size=1, max_size=6), s.lists(s.integers(1, 60), max_size=20))
def test_framer_reassembles_any_chunking(pdus: list[p.Pdu], cuts: list[int]) -> None:
    stream = b"".join(p.encode(x) for x in pdus)
    framer = p.Framer()
    out: list[object] = []
    pos = 0
    for cut in cuts:
        out += framer.feed(stream[pos : pos + cut])
        pos += cut
    out += framer.feed(stream[pos:])
    assert out == pdus
    assert framer.buffered == 0


def test_unknown_command_is_returned_in_place_and_the_stream_goes_on() -> None:
    query_sm = struct.pack(">IIII", 16, 0x00000003, 0, 5)
    framer = p.Framer()
    out = framer.feed(query_sm + p.encode(p.EnquireLink(6)))
    assert isinstance(out[0], InvalidPdu) and out[0].sequence == 5
    assert out[0].status == st.ESME_RINVCMDID
    assert out[1] == p.EnquireLink(6)


@pytest.mark.parametrize(
    "body",
    [
        b"\0\0\0nonul",  # C-Octet string without its NUL
        b"\0\0\0a\0\0\0b\0" + b"\0\0\0" + b"\0\0" + b"\0\0\0\0\x09" + b"short",  # sm_length > rest
        bytes(SPEC_BIND[16:26]),  # a bind body cut short, sent as submit_sm
    ],
)
def test_malformed_submit_sm_is_an_invalid_pdu(body: bytes) -> None:
    raw = struct.pack(">IIII", 16 + len(body), p.SUBMIT_SM, 0, 77) + body
    [out] = p.Framer().feed(raw)
    assert isinstance(out, InvalidPdu)
    assert (out.sequence, out.status) == (77, st.ESME_RINVMSGLEN)


def test_truncated_tlv_is_an_invalid_pdu() -> None:
    good = p.encode(p.SubmitSm(1, "a", "b", b"x"))
    bad = good + b"\x04\x24\x00\x09ab"
    bad = struct.pack(">I", len(bad)) + bad[4:]
    with pytest.raises(InvalidPdu):
        p.decode(bad)


@pytest.mark.parametrize("length", [0, 15, p.MAX_PDU_LENGTH + 1])
def test_impossible_command_length_breaks_the_stream(length: int) -> None:
    framer = p.Framer()
    with pytest.raises(RemoteProtocolViolation, match="command_length"):
        framer.feed(struct.pack(">IIII", length, 4, 0, 1))
    with pytest.raises(RemoteProtocolViolation):
        framer.feed(b"")


@pytest.mark.parametrize(
    "pdu",
    [
        p.SubmitSm(1, "a" * 21, "b"),  # source_addr max 21 with NUL
        p.SubmitSm(1, "a", "b", b"x" * 255),  # over 254: message_payload is the way
        p.BindRequest("transmitter", 1, "x" * 16),
        p.SubmitSm(1, "a", "b", esm_class=256),
        p.SubmitSm(1, "a\u20ac", "b"),  # not an octet
    ],
)
def test_illegal_fields_are_local_violations(pdu: p.Pdu) -> None:
    with pytest.raises(LocalProtocolViolation):
        p.encode(pdu)


def test_receipt_flag_reads_esm_class_bits() -> None:
    assert p.DeliverSm(1, esm_class=0x04).is_receipt
    assert not p.DeliverSm(1, esm_class=0x40).is_receipt


def test_adapter_errors_map_onto_actor_errors() -> None:
    from actors.errors import PermanentCarrierError, TransientCarrierError
    from adapters.errors import to_carrier_error

    assert isinstance(to_carrier_error(LocalProtocolViolation("x")), PermanentCarrierError)
    remote = to_carrier_error(InvalidPdu("y", command_id=4, sequence=1, status=1))
    assert isinstance(remote, TransientCarrierError) and remote.code == "remote_protocol_violation"


@given(seq, status, s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=64))
def test_fast_response_encoders_match_encode(sequence: int, code: int, message_id: str) -> None:
    assert p.encode_submit_sm_resp(sequence, code, message_id) == p.encode(
        p.SubmitSmResp(sequence, code, message_id))
    assert p.encode_deliver_sm_resp(sequence, code) == p.encode(p.DeliverSmResp(sequence, code))
