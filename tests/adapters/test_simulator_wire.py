"""The simulator's wire fast paths (``adapters.simulator._wire``) equal the general code.

``decode`` must give, for every frame, either exactly what ``decode_frame`` reads into the
fields the simulator uses, or ``decode_frame``'s own result (an ``InvalidPdu`` naming the same
fault included); the receipt and submit_sm_resp writers must write what the PDU encoder (or
the simulator's previous f-string text) wrote. The machine's receipt ordering with the
"due now" short-cut past the heap is checked against a run that always uses the heap.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as s

from adapters.errors import InvalidPdu
from adapters.simulator import _wire
from adapters.simulator.config import SimulatorConfig, SimulatorState, SimulatorStats
from adapters.simulator.machine import SmscSession, receipt_text
from adapters.smpp import pdu as p
from tests.adapters.test_pdu_fast import bodies


def _outcome(decode: Any, buf: bytes, pos: int, end: int) -> Any:
    try:
        return decode(buf, pos, end)
    except InvalidPdu as exc:
        return ("invalid", str(exc), exc.status, exc.sequence)


def _fields(pdu: Any) -> Any:
    """What the simulator reads of a decoded PDU, in ``_wire``'s tuple shapes."""
    if type(pdu) is p.SubmitSm:
        tlvs = (pdu.receipted_message_id, pdu.message_state, pdu.network_error_code,
                pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum,
                pdu.message_payload, pdu.user_message_reference)
        return ((pdu.sequence, pdu.source_addr, pdu.destination_addr, pdu.short_message,
                 pdu.registered_delivery), tlvs, pdu.extra_tlvs)
    if type(pdu) is p.DeliverSmResp:
        return (pdu.sequence, pdu.status)
    return pdu


@settings(max_examples=500, deadline=None)
@given(s.sampled_from([p.SUBMIT_SM, p.DELIVER_SM_RESP, p.DELIVER_SM, p.SUBMIT_SM_RESP,
                       p.ENQUIRE_LINK, 0x1234]),
       bodies | s.sampled_from([b"", b"\0", b"\0\0", b"x", b"12AB\0"]),
       s.integers(0, 0xFFFFFFFF), s.integers(1, 0x7FFFFFFF), s.binary(max_size=3))
@example(p.DELIVER_SM_RESP, b"\0", 0, 5, b"")
@example(p.DELIVER_SM_RESP, b"", 0x64, 5, b"\0")
@example(p.DELIVER_SM_RESP, b"x", 0, 5, b"")  # no NUL: generic_nack, as before
def test_decode_equals_decode_frame(command_id: int, body: bytes, status: int, seq: int,
                                    after: bytes) -> None:
    # ``after``: the next PDU's octets in the same buffer, which neither may read.
    buf = b"xx" + struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body + after
    end = 18 + len(body)
    fast = _outcome(_wire.decode, buf, 2, end)
    general = _outcome(p.decode_frame, buf, 2, end)
    if type(fast) is tuple and fast[0] != "invalid":
        # only PDUs without TLVs are read fast: the general decoder found none either
        expected = _fields(general)
        if len(fast) == 5:
            assert expected[0] == fast
            assert expected[1] == (None,) * 8 and expected[2] == ()
        else:
            assert expected == fast
    else:
        assert _fields(fast) == _fields(general)


@settings(max_examples=200, deadline=None)
@given(s.integers(1, 0x7FFFFFFF), s.integers(0, 0xFFFFFFFF), s.text("0123456789ABCDEF",
                                                                    max_size=64))
def test_submit_sm_resp_equals_the_encoder(seq: int, status: int, message_id: str) -> None:
    assert _wire.submit_sm_resp(seq, status, message_id) == p.encode_submit_sm_resp(
        seq, status, message_id)


def _reference_text(receipt_id: str, stat: str, err: int, submitted: float, done: float,
                    head: bytes) -> bytes:
    """receipt_text as it was (f-string, generator over the head)."""
    def date(at: float) -> str:
        return time.strftime("%y%m%d%H%M", time.gmtime(int(at // 60) * 60))

    dlvrd = "001" if stat == "DELIVRD" else "000"
    safe = bytes(b if 32 <= b < 127 else 63 for b in head[:20])
    return (
        f"id:{receipt_id} sub:001 dlvrd:{dlvrd} submit date:{date(submitted)} "
        f"done date:{date(done)} stat:{stat} err:{err:03d} text:"
    ).encode("ascii") + safe


@settings(max_examples=200, deadline=None)
@given(s.text("0123456789abcdefABCDEF", min_size=1, max_size=20),
       s.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "X"]), s.integers(0, 0xFFFF),
       s.floats(0, 4e9), s.floats(0, 4e9), s.binary(max_size=40))
def test_receipt_text_equals_the_reference(receipt_id: str, stat: str, err: int,
                                           submitted: float, done: float, head: bytes) -> None:
    assert receipt_text(receipt_id, stat, err, submitted, done, head) == _reference_text(
        receipt_id, stat, err, submitted, done, head)


def _submit_frame(seq: int, dest: str) -> bytes:
    pdu = p.SubmitSm(seq, "Septet", dest, b"hello", registered_delivery=1)
    return p.encode(pdu)


def _delivered_ids(delays: list[float], acks: list[int], window: int, skip_heap: bool
                   ) -> list[str]:
    """Receipt ids in sending order for submits at t = 0, 1, 2... (one per delay), each
    step answering what is unacknowledged with the next status of ``acks`` (-1: not yet)."""
    shared = SimulatorState(SimulatorConfig(window=window), SimulatorStats(), lambda: 1.7e9)
    session = SmscSession(shared, now=0.0)
    session.skip_heap = skip_heap
    session.mode = "transceiver"
    sent: list[str] = []

    def collect(now: float) -> None:
        out = p.Framer().feed(session.poll(now))
        sent.extend(d.receipted_message_id or "" for d in out if isinstance(d, p.DeliverSm))

    for t, delay in enumerate(delays):
        # each submit's receipt delay is the config's in effect when it arrives
        session.config = SimulatorConfig(window=window, receipt_delay_min=delay,
                                         receipt_delay_max=delay)
        session.receive_data(_submit_frame(t + 1, f"4477{t:04d}"), float(t))
        collect(float(t))
        status = acks[t % len(acks)]
        if status >= 0:
            session.receive_data(b"".join(p.encode_deliver_sm_resp(seq, status)
                                          for seq in list(session._unacked)), float(t))
            collect(float(t))
    end = float(len(delays) + 3)  # past every delay: what is left goes out
    for _ in range(len(delays) + 1):
        session.receive_data(b"".join(p.encode_deliver_sm_resp(seq)
                                      for seq in list(session._unacked)), end)
        collect(end)
    return sent


@settings(max_examples=100, deadline=None)
@given(s.lists(s.sampled_from([0.0, 0.0, 0.5, 1.0, 2.5]), min_size=1, max_size=25),
       s.lists(s.sampled_from([-1, 0, 0, 0x64]), min_size=1, max_size=4), s.integers(1, 4))
def test_receipts_due_now_skip_the_heap_in_the_same_order(delays: list[float], acks: list[int],
                                                           window: int) -> None:
    # 0x64 refuses: the receipt goes back into the heap due in the past, ahead of new ones
    got = _delivered_ids(delays, acks, window, True)
    assert got == _delivered_ids(delays, acks, window, False)
    assert got  # receipts did flow
