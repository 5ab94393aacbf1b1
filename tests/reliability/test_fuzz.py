"""Property-based fuzzing of what parses bytes from the network: the SMPP PDU codec and
framer, the ESME session, the receipt parser, and the HTTP request reader. Random and
mutated input may only ever produce the component's declared outcome (a value, an
``InvalidPdu``, ``RemoteProtocolViolation``, a closed session, ``HttpError``), never any
other exception. tests/adapters/test_pdu.py covers round trips of valid PDUs; these cover
garbage.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as s

from adapters.errors import InvalidPdu, RemoteProtocolViolation
from adapters.smpp import pdu as p
from adapters.smpp.receipts import parse_receipt
from adapters.smpp.session import EsmeSession
from gateway.http._protocol import HttpError, ReaderLimits, RequestReader

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = [
    p.encode(p.SubmitSm(1, "Septet", "351912345678", b"hello", registered_delivery=1)),
    p.encode(p.DeliverSm(2, "351912345678", "Septet",
                         b"id:42 sub:001 dlvrd:001 submit date:2611242300 done date:2611242301 "
                         b"stat:DELIVRD err:000 text:hi", esm_class=p.ESM_DELIVERY_RECEIPT)),
    p.encode(p.BindResponse("transceiver", 3, 0, "SMSC", 0x34)),
    p.encode(p.EnquireLink(4)),
    p.encode(p.GenericNack(5, 3)),
]

# a header that frames the body correctly, so the body decoder itself is exercised
framed_body = s.tuples(
    s.sampled_from([0x80000000, 1, 2, 4, 5, 6, 9, 0x0B, 0x15, 0x80000001, 0x80000004,
                    0x80000005, 0x80000009, 0x80000015, 0x103, 0xFFFFFFFF]),
    s.integers(0, 0xFFFFFFFF), s.integers(0, 0xFFFFFFFF), s.binary(max_size=300),
).map(lambda t: struct.pack(">IIII", 16 + len(t[3]), t[0], t[1], t[2]) + t[3])


@s.composite
def mutated(draw: s.DrawFn) -> bytes:
    data = bytearray(draw(s.sampled_from(VALID)))
    for _ in range(draw(s.integers(1, 6))):
        i = draw(s.integers(16, max(16, len(data) - 1)))
        if i < len(data):
            data[i] = draw(s.integers(0, 255))
    cut = draw(s.integers(16, len(data)))
    out = bytes(data[:cut])
    return struct.pack(">I", len(out)) + out[4:]


@FAST
@given(s.one_of(framed_body, mutated()))
def test_decoding_a_framed_pdu_yields_a_pdu_or_invalid_pdu(frame: bytes) -> None:
    try:
        out = p.decode(frame)
    except InvalidPdu:
        return
    assert out is not None


@FAST
@given(s.lists(s.one_of(s.binary(max_size=64), framed_body, mutated()), max_size=8))
def test_the_framer_raises_only_its_declared_error(chunks: list[bytes]) -> None:
    framer = p.Framer()
    try:
        for chunk in chunks:
            for out in framer.feed(chunk):
                assert out is not None
    except RemoteProtocolViolation:
        pass


@FAST
@given(s.lists(s.one_of(s.binary(max_size=80), framed_body, mutated()), max_size=6))
def test_the_esme_session_never_raises_on_what_the_smsc_sends(chunks: list[bytes]) -> None:
    session = EsmeSession(now=0.0)
    session.bind("transceiver", "septet", "pw", now=0.0)
    session.data_to_send()
    session.receive_data(VALID[2], 0.0)  # bound
    now = 0.0
    for chunk in chunks:
        now += 0.5
        session.receive_data(chunk, now)  # garbage ends in a Closed event, never raises
        session.tick(now)
        session.data_to_send()


@FAST
@given(s.binary(max_size=254), s.integers(0, 255),
       s.one_of(s.none(), s.text(max_size=80)), s.one_of(s.none(), s.integers(0, 255)))
def test_any_deliver_sm_gives_a_receipt_or_none(text: bytes, esm: int, rid: str | None,
                                                state: int | None) -> None:
    pdu = p.DeliverSm(1, "351912345678", "Septet", text, esm_class=esm)
    pdu.receipted_message_id = rid
    pdu.message_state = state
    parse_receipt(pdu, connector="smsc", received_at=0.0)


@FAST
@given(s.lists(s.one_of(
    s.binary(max_size=120),
    s.sampled_from([b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n", b"Content-Length: 5\r\n",
                    b"Transfer-Encoding: chunked\r\n", b"POST /v1/messages HTTP/1.1\r\n",
                    b"5\r\nhello\r\n0\r\n\r\n", b"Content-Length: -1\r\n"])), max_size=12))
def test_the_http_reader_raises_only_http_error(chunks: list[bytes]) -> None:
    reader = RequestReader(ReaderLimits(max_body_bytes=1024, max_header_count=16,
                                        max_header_bytes=2048))
    try:
        for chunk in chunks:
            reader.feed(chunk)
    except HttpError as err:
        assert 400 <= err.status < 500
