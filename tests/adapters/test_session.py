"""The ESME session machine wired to the simulator's SMSC machine through in-memory bytes.

No sockets, no event loop: time is an argument, so deadlines are exact.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as s
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from adapters.simulator.config import SimulatorConfig, SimulatorState
from adapters.simulator.machine import SmscSession
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp.session import (
    BindFailed,
    Bound,
    Closed,
    DeliverReceived,
    EsmeSession,
    Event,
    RequestTimedOut,
    State,
    SubmitAnswered,
)


class Pair:
    """An ESME and an SMSC machine joined back to back."""

    def __init__(self, config: SimulatorConfig | None = None, window: int = 4) -> None:
        self.now = 0.0
        self.shared = SimulatorState(config or SimulatorConfig(), wall=lambda: 1_700_000_000.0)
        self.esme = EsmeSession(now=0.0, window=window, response_timeout=5.0,
                                enquire_link_interval=30.0)
        self.smsc = SmscSession(self.shared, now=0.0)

    def pump(self) -> list[Event]:
        """Move bytes both ways until quiet; the ESME's events."""
        events: list[Event] = []
        for _ in range(20):
            up = self.esme.data_to_send()
            if up:
                self.smsc.receive_data(up, self.now)
            down = self.smsc.poll(self.now)
            if down:
                events += self.esme.receive_data(down, self.now)
            if not up and not down:
                break
        return events

    def bind(self) -> None:
        self.esme.bind("transceiver", "sys", "pw", now=self.now)
        assert self.pump() == [Bound("transceiver", "SEPTETSIM")]

    def submit(self, n: int = 1, text: bytes = b"hi") -> list[int]:
        return [self.esme.submit(p.SubmitSm(0, "S", f"49{i}", text, registered_delivery=1),
                                 now=self.now, token=i) for i in range(n)]


def test_bind_then_submit_gets_an_id_and_a_receipt() -> None:
    pair = Pair()
    pair.bind()
    assert pair.esme.bound
    pair.submit(1)
    events = pair.pump()
    answered = [e for e in events if isinstance(e, SubmitAnswered)]
    delivered = [e for e in events if isinstance(e, DeliverReceived)]
    assert answered == [SubmitAnswered(2, 0, st.ESME_ROK, "1")]
    assert len(delivered) == 1 and delivered[0].pdu.receipted_message_id == "1"
    pair.esme.acknowledge(delivered[0].pdu.sequence)
    pair.pump()
    assert pair.shared.stats.receipts_acked == 1


def test_bad_password_fails_the_bind_and_closes() -> None:
    pair = Pair(SimulatorConfig(password="right"))
    pair.esme.bind("transceiver", "sys", "wrong", now=0.0)
    events = pair.pump()
    assert BindFailed(st.ESME_RINVPASWD) in events
    assert pair.esme.state is State.CLOSED


def test_window_limits_outstanding_submits() -> None:
    pair = Pair(SimulatorConfig(latency=1.0), window=4)
    pair.bind()
    pair.submit(4)
    assert not pair.esme.can_submit and pair.esme.window_free == 0
    pair.pump()
    assert pair.esme.in_flight == 4  # answers are 1 s away
    pair.now = 1.0
    events = pair.pump()
    assert len([e for e in events if isinstance(e, SubmitAnswered)]) == 4
    assert pair.esme.window_free == 4


def test_unanswered_submit_times_out_at_its_deadline() -> None:
    pair = Pair(SimulatorConfig(latency=60.0))
    pair.bind()
    pair.submit(1)
    pair.pump()
    assert pair.esme.next_deadline() == 5.0
    assert pair.esme.tick(4.999) == []
    assert pair.esme.tick(5.0) == [RequestTimedOut(2, 0)]
    assert pair.esme.in_flight == 0


def test_throttling_smsc_answers_0x58_above_its_rate() -> None:
    pair = Pair(SimulatorConfig(max_submit_rate=2, burst=2), window=10)
    pair.bind()
    pair.now = 10.0
    pair.submit(5)
    statuses = [e.status for e in pair.pump() if isinstance(e, SubmitAnswered)]
    assert statuses.count(st.ESME_ROK) == 2
    assert statuses.count(st.ESME_RTHROTTLED) == 3
    assert pair.shared.stats.submits_throttled == 3


def test_enquire_link_after_idle_and_dead_link_when_unanswered() -> None:
    pair = Pair()
    pair.bind()
    assert pair.esme.next_deadline() == 30.0
    pair.now = 30.0
    assert pair.esme.tick(30.0) == []
    raw = pair.esme.data_to_send()
    assert p.decode(raw) == p.EnquireLink(2)
    # The SMSC never answers: 5 s later the link is declared dead.
    events = pair.esme.tick(35.0)
    assert events[-1] == Closed("no response to a session request")


def test_enquire_link_answered_keeps_the_link() -> None:
    pair = Pair()
    pair.bind()
    pair.now = 30.0
    pair.esme.tick(30.0)
    pair.pump()
    assert pair.shared.stats.enquire_links == 1
    assert pair.esme.tick(35.0) == [] and pair.esme.bound


def test_receipt_before_submit_response_is_still_delivered() -> None:
    pair = Pair(SimulatorConfig(latency=2.0, receipt_delay_max=0.0))
    pair.bind()
    pair.submit(1)
    first = pair.pump()
    assert [type(e) for e in first] == [DeliverReceived]
    pair.now = 2.0
    assert [type(e) for e in pair.pump()] == [SubmitAnswered]


def test_unacknowledged_receipt_is_redelivered() -> None:
    pair = Pair(SimulatorConfig(redeliver_after=10.0))
    pair.bind()
    pair.submit(1)
    pair.pump()
    pair.now = 10.0
    events = pair.pump()
    assert [type(e) for e in events] == [DeliverReceived]
    assert pair.shared.stats.receipts_redelivered == 1


def test_unbind_both_ways() -> None:
    pair = Pair()
    pair.bind()
    pair.esme.unbind(now=0.0)
    events = pair.pump()
    assert events == [Closed("unbound")] and pair.smsc.closing
    other = Pair()
    other.bind()
    other.submit(1)
    events = other.esme.receive_data(p.encode(p.Unbind(99)), 0.0)
    assert RequestTimedOut(2, 0) in events  # in the window when the SMSC left: in doubt
    assert events[-1] == Closed("unbound by the SMSC")
    assert p.decode(other.esme.data_to_send()[-16:]) == p.UnbindResp(99)


def test_malformed_request_from_smsc_gets_generic_nack() -> None:
    pair = Pair()
    pair.bind()
    raw = struct.pack(">IIII", 20, p.DELIVER_SM, 0, 41) + b"\x01\x02\x03\x04"
    assert pair.esme.receive_data(raw, 0.0) == []
    assert p.decode(pair.esme.data_to_send()) == p.GenericNack(41, st.ESME_RINVMSGLEN)
    assert pair.esme.bound


def test_malformed_submit_resp_resolves_the_submit_as_malformed() -> None:
    pair = Pair()
    pair.bind()
    [seq] = pair.submit(1)
    pair.esme.data_to_send()
    raw = struct.pack(">IIII", 19, p.SUBMIT_SM_RESP, 0, seq) + b"abc"  # no NUL
    [event] = pair.esme.receive_data(raw, 0.0)
    assert isinstance(event, SubmitAnswered) and event.malformed


def test_broken_framing_closes_with_in_doubt_submits() -> None:
    pair = Pair()
    pair.bind()
    pair.submit(2)
    events = pair.esme.receive_data(b"\x00\x00\x00\x01" + b"\0" * 12, 0.0)
    assert [type(e) for e in events] == [RequestTimedOut, RequestTimedOut, Closed]
    assert pair.esme.state is State.CLOSED


def test_smsc_nacks_submits_before_bind_and_garbage() -> None:
    pair = Pair()
    pair.esme.state = State.BOUND  # pretend, to get a submit out unbound
    pair.esme.mode = "transmitter"
    pair.submit(1)
    [event] = pair.pump()
    assert isinstance(event, SubmitAnswered) and event.status == st.ESME_RINVBNDSTS


class SessionMachine(RuleBasedStateMachine):
    """Random interleavings: every submit is answered or timed out exactly once."""

    def __init__(self) -> None:
        super().__init__()
        self.pair = Pair(SimulatorConfig(latency=0.5, max_submit_rate=50, burst=5), window=3)
        self.pair.bind()
        self.sent: set[int] = set()
        self.resolved: list[int] = []

    def _absorb(self, events: list[Event]) -> None:
        for e in events:
            if isinstance(e, SubmitAnswered | RequestTimedOut):
                self.resolved.append(e.token)
            if isinstance(e, DeliverReceived):
                self.pair.esme.acknowledge(e.pdu.sequence)

    @precondition(lambda self: self.pair.esme.can_submit)
    @rule()
    def submit(self) -> None:
        token = len(self.sent)
        self.pair.esme.submit(p.SubmitSm(0, "S", "1", b"x", registered_delivery=1),
                              now=self.pair.now, token=token)
        self.sent.add(token)

    @rule(dt=s.floats(0, 3))
    def advance(self, dt: float) -> None:
        self.pair.now += dt
        self._absorb(self.pair.esme.tick(self.pair.now))
        self._absorb(self.pair.pump())

    @invariant()
    def each_submit_resolved_at_most_once(self) -> None:
        assert len(self.resolved) == len(set(self.resolved))
        assert set(self.resolved) <= self.sent
        assert self.pair.esme.in_flight == len(self.sent) - len(self.resolved)
        assert self.pair.esme.in_flight <= 3


SessionMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25)
test_session_machine = SessionMachine.TestCase


def test_smsc_holds_receipts_beyond_its_window_until_acknowledged() -> None:
    pair = Pair(SimulatorConfig(window=1), window=4)
    pair.bind()
    pair.submit(2)
    first = [e for e in pair.pump() if isinstance(e, DeliverReceived)]
    assert len(first) == 1  # the second receipt waits for a free slot
    pair.esme.acknowledge(first[0].pdu.sequence)
    pair.now = 0.01
    second = [e for e in pair.pump() if isinstance(e, DeliverReceived)]
    assert len(second) == 1 and pair.shared.stats.receipts_acked == 1


def test_smsc_answers_msgqful_when_its_answer_window_is_full() -> None:
    pair = Pair(SimulatorConfig(latency=1.0, window=2), window=4)
    pair.bind()
    pair.submit(3)
    pair.pump()
    pair.now = 1.0
    statuses = [e.status for e in pair.pump() if isinstance(e, SubmitAnswered)]
    assert sorted(statuses) == [st.ESME_ROK, st.ESME_ROK, st.ESME_RMSGQFUL]


def test_smsc_refuses_a_second_bind_and_submits_on_a_receiver_bind() -> None:
    pair = Pair()
    pair.esme.bind("receiver", "sys", "pw", now=0.0)
    pair.pump()
    pair.smsc.receive_data(p.encode(p.BindRequest("transmitter", 50, "sys", "pw")), 0.0)
    assert p.decode(pair.smsc.poll(0.0)).status == st.ESME_RALYBND  # type: ignore[union-attr]
    pair.smsc.receive_data(p.encode(p.SubmitSm(51, "S", "1", b"x")), 0.0)
    assert p.decode(pair.smsc.poll(0.0)) == p.SubmitSmResp(51, st.ESME_RINVBNDSTS, "")


def test_smsc_nacks_malformed_and_unexpected_requests_and_drops_on_garbage() -> None:
    pair = Pair()
    pair.bind()
    bad = struct.pack(">IIII", 20, p.SUBMIT_SM, 0, 60) + b"\x01\x02\x03\x04"
    pair.smsc.receive_data(bad + p.encode(p.Outbind(61, "x", "y")), 0.0)
    out = p.Framer().feed(pair.smsc.poll(0.0))
    assert out == [p.GenericNack(60, st.ESME_RINVMSGLEN), p.GenericNack(61, st.ESME_RINVCMDID)]
    assert pair.shared.stats.generic_nacks_sent == 2
    pair.smsc.receive_data(b"\xff\xff\xff\xff" + b"\0" * 12, 0.0)
    assert pair.smsc.drop


def test_smsc_outcome_mix_and_error_rate_follow_the_seeded_rng() -> None:
    config = SimulatorConfig(outcomes=(("DELIVRD", 1.0), ("UNDELIV", 1.0)), submit_error_rate=0.5,
                             seed=11)
    pair = Pair(config, window=64)
    pair.bind()
    pair.submit(60)
    events = pair.pump()
    answered = [e for e in events if isinstance(e, SubmitAnswered)]
    receipts = [e.pdu for e in events if isinstance(e, DeliverReceived)]
    refused = [e for e in answered if e.status == st.ESME_RINVDSTADR]
    assert 10 < len(refused) < 50 and len(receipts) == 60 - len(refused)
    states = {r.message_state for r in receipts}
    assert states == {2, 5}  # DELIVRD and UNDELIV both drawn
    assert all(r.network_error_code for r in receipts if r.message_state == 5)


@given(source=s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=20),
       dest=s.text(s.characters(min_codepoint=1, max_codepoint=255), max_size=20),
       text=s.binary(max_size=160), receipt_id=s.text(s.characters(min_codepoint=33, max_codepoint=126), max_size=64),
       state=s.none() | s.integers(1, 8), err=s.integers(0, 0xFFFF), seq=s.integers(1, 0x7FFFFFFF))
def test_fast_receipt_encoder_matches_encode(source: str, dest: str, text: bytes, receipt_id: str,
                                             state: int | None, err: int, seq: int) -> None:
    from adapters.simulator.machine import encode_receipt

    pdu = p.DeliverSm(seq, source, dest, text, esm_class=p.ESM_DELIVERY_RECEIPT)
    if state is not None:
        pdu.receipted_message_id, pdu.message_state = receipt_id, state
        if err:
            pdu.network_error_code = bytes((3, err >> 8, err & 0xFF))
    assert encode_receipt(seq, source, dest, text, receipt_id, state, err) == p.encode(pdu)


def test_smsc_refuses_addresses_longer_than_the_spec() -> None:
    pair = Pair()
    pair.bind()
    pair.smsc.receive_data(p.encode(p.SubmitSm(70, "S", "1" * 20, b"x")), 0.0)
    long_dest = p.encode(p.SubmitSm(71, "S", "1", b"x")).replace(b"\x001\x00", b"\x00" + b"1" * 25 + b"\x00")
    long_dest = struct.pack(">I", len(long_dest)) + long_dest[4:]
    pair.smsc.receive_data(long_dest, 0.0)
    answers = p.Framer().feed(pair.smsc.poll(0.0))
    assert [a.status for a in answers if isinstance(a, p.SubmitSmResp)] == [0, st.ESME_RINVDSTADR]
