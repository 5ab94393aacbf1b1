"""Mobile-originated messages: deliver_sm decoding (pure) and SmppCarrier against the simulator's
MO replies over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as hs

from actors.messages import MsgId, SubmitPart
from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from adapters.simulator.mo import last_part, mo_parts
from adapters.smpp import pdu as p
from adapters.smpp.client import SmppCarrier
from adapters.smpp.inbound import InboundPart, InvalidMo, parse_mo
from codec import Concat, reassemble
from codec.receive import ReceivedPart

HANDSET = "+351910000001"
OURS = "+351912000000"


def deliver(**kw: Any) -> p.DeliverSm:
    kw.setdefault("source_addr", HANDSET)
    kw.setdefault("destination_addr", OURS)
    return p.DeliverSm(7, **kw)


def join(parts: Sequence[InboundPart]) -> str:
    return reassemble(ReceivedPart(x.text, (), x.concat) for x in parts)


# -- pure decoding --------------------------------------------------------------------------


def test_gsm7_unpacked_single_part() -> None:
    part = parse_mo(deliver(short_message=b"Hello \x00"), connector="c", received_at=5.0)
    assert part == InboundPart("c", HANDSET, OURS, "Hello @", 5.0, "gsm7", None)


def test_latin1_for_data_coding_3_and_ucs2_for_8() -> None:
    latin = parse_mo(deliver(short_message="café".encode("latin-1"), data_coding=3),
                     connector="c", received_at=0)
    ucs2 = parse_mo(deliver(short_message="Привет 👋".encode("utf-16-be"), data_coding=8),
                    connector="c", received_at=0)
    assert (latin.text, latin.encoding) == ("café", "latin1")
    assert (ucs2.text, ucs2.encoding) == ("Привет 👋", "ucs2")


def test_message_payload_wins_and_sar_tlvs_give_the_reference() -> None:
    part = parse_mo(deliver(message_payload=b"abc", sar_msg_ref_num=300, sar_total_segments=2,
                            sar_segment_seqnum=2), connector="c", received_at=0)
    assert part.text == "abc" and part.concat == Concat(300, 2, 2, 16)


def test_unknown_data_coding_and_broken_udh_are_invalid() -> None:
    with pytest.raises(InvalidMo):
        parse_mo(deliver(short_message=b"\x01\x02", data_coding=4), connector="c", received_at=0)
    with pytest.raises(InvalidMo):
        parse_mo(deliver(short_message=b"\x09\x00\x03", esm_class=p.ESM_UDHI),
                 connector="c", received_at=0)


@settings(max_examples=60, deadline=None)
@given(text=hs.text(alphabet=hs.sampled_from("abc XYZ@{}€é\nПр👋"), min_size=1, max_size=400),
       packed=hs.booleans(), concat=hs.sampled_from(["udh", "sar"]))
def test_simulator_parts_decode_back_to_the_text(text: str, packed: bool, concat: str) -> None:
    pdus = [p.decode(bytes_) for bytes_ in _frames(text, packed, concat)]
    parsed = [parse_mo(d, connector="c", received_at=0, packed_gsm7=packed)  # type: ignore[arg-type]
              for d in pdus]
    assert join(parsed) == text


def _frames(text: str, packed: bool, concat: str) -> list[bytes]:
    from adapters.simulator.mo import encode_mo

    return [encode_mo(i + 1, m) for i, m in enumerate(
        mo_parts(text, source=HANDSET, destination=OURS, reference=9, packed=packed,
                 concat=concat))]


def test_last_part_reads_udh_and_sar() -> None:
    first, second = (p.SubmitSm(1, short_message=m.short_message, esm_class=m.esm_class)
                     for m in mo_parts("x" * 200, source="a", destination="b", reference=1))
    assert not last_part(first) and last_part(second)
    assert last_part(p.SubmitSm(1, short_message=b"hi"))
    assert not last_part(p.SubmitSm(1, sar_total_segments=2, sar_segment_seqnum=1))


# -- through the client, against the simulator -----------------------------------------------


class InboundSink:
    """Collects MO parts; optionally fails its first ``fail`` calls or waits on ``gate``."""

    def __init__(self, fail: int = 0, gate: trio.Event | None = None) -> None:
        self.parts: list[InboundPart] = []
        self.calls = 0
        self.fail = fail
        self.gate = gate
        self.entered = trio.Event()

    async def __call__(self, parts: Sequence[InboundPart]) -> None:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.calls <= self.fail:
            raise OSError("disk full")
        self.parts += parts


async def no_receipts(_: Any) -> None:
    pass


@asynccontextmanager
async def running(config: SimulatorConfig, sink: InboundSink, **kw: Any
                  ) -> AsyncIterator[tuple[SmppCarrier, SimulatorStats]]:
    stats = SimulatorStats()
    async with trio.open_nursery() as outer:
        port = await outer.start(partial(serve_simulator, config, stats=stats))
        carrier = SmppCarrier("sim", "127.0.0.1", port, "septet", "pw", inbound=sink,
                              reconnect_min=0.01, **kw)
        async with trio.open_nursery() as inner:
            await inner.start(carrier.run, no_receipts)
            yield carrier, stats
            inner.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def until(condition: Any) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.005)  # polling a counter, not timing logic


def submit(to: str = HANDSET) -> list[SubmitPart]:
    return [SubmitPart(MsgId("m1"), 1, 1, to, OURS, 0, b"", b"hello", 0)]


@pytest.mark.parametrize(("reply", "packed", "concat", "parts"), [
    ("echo", False, "udh", 1),
    ("€" + "a" * 200, True, "udh", 2),  # GSM7 with an escape, packed, two parts
    ("Привет! " * 12, False, "sar", 2),  # UCS-2, 96 characters: two parts
])
async def test_mo_reaches_the_sink_and_is_acknowledged(reply: str, packed: bool, concat: str,
                                                       parts: int) -> None:
    sink = InboundSink()
    config = SimulatorConfig(mo_reply=reply, mo_packed_gsm7=packed, mo_concat=concat,  # type: ignore[arg-type]
                             receipts=False)
    async with running(config, sink, packed_gsm7=packed) as (carrier, stats):
        await until(lambda: carrier.ready)
        assert (await carrier.submit_many(submit()))[0].ok
        await until(lambda: stats.mo_acked == parts)
    assert stats.mo_sent == parts and stats.mo_redelivered == 0 and stats.receipts_sent == 0
    assert len(sink.parts) == parts and carrier.stats.inbound == parts
    assert {(x.source, x.destination, x.connector) for x in sink.parts} == {(HANDSET, OURS, "sim")}
    assert join(sink.parts) == reply


async def test_mo_is_acknowledged_only_after_the_sink_returns() -> None:
    gate = trio.Event()
    sink = InboundSink(gate=gate)
    async with running(SimulatorConfig(mo_reply="hi", receipts=False), sink) as (carrier, stats):
        await until(lambda: carrier.ready)
        await carrier.submit_many(submit())
        await sink.entered.wait()
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert stats.mo_sent == 1 and stats.mo_acked == 0
        gate.set()
        await until(lambda: stats.mo_acked == 1)
    assert [x.text for x in sink.parts] == ["hi"]


async def test_failing_inbound_sink_makes_the_smsc_resend() -> None:
    sink = InboundSink(fail=1)
    config = SimulatorConfig(mo_reply="hi", receipts=False, redeliver_after=0.05)
    async with running(config, sink) as (carrier, stats):
        await until(lambda: carrier.ready)
        await carrier.submit_many(submit())
        await until(lambda: stats.mo_acked == 1)
    assert stats.mo_redelivered == 1 and stats.mo_sent == 2
    assert carrier.stats.inbound_refused == 1 and carrier.stats.inbound == 1
    assert [x.text for x in sink.parts] == ["hi"]


async def test_mo_numbers_limit_which_handsets_answer() -> None:
    sink = InboundSink()
    config = SimulatorConfig(mo_reply="hi", receipts=False, mo_numbers=("+351910000009",))
    async with running(config, sink) as (carrier, stats):
        await until(lambda: carrier.ready)
        await carrier.submit_many(submit(HANDSET))
        await carrier.submit_many(submit("+351910000009"))
        await until(lambda: stats.mo_acked == 1)
    assert [x.source for x in sink.parts] == ["+351910000009"]


async def test_without_an_inbound_sink_mo_is_acknowledged_and_dropped() -> None:
    stats = SimulatorStats()
    async with trio.open_nursery() as outer:
        port = await outer.start(partial(serve_simulator, SimulatorConfig(mo_reply="hi",
                                                                          receipts=False),
                                         stats=stats))
        carrier = SmppCarrier("sim", "127.0.0.1", port, "septet", "pw")
        async with trio.open_nursery() as inner:
            await inner.start(carrier.run, no_receipts)
            await until(lambda: carrier.ready)
            await carrier.submit_many(submit())
            await until(lambda: stats.mo_acked == 1)
            inner.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    assert carrier.stats.other_deliveries == 1 and carrier.stats.inbound == 0


def test_simulator_cli_takes_the_mo_options() -> None:
    from adapters.simulator.main import config_from_args, parser

    config = config_from_args(parser().parse_args(
        ["--mo-reply", "echo", "--mo-numbers", "+351910000001, 351910000002", "--mo-packed",
         "--mo-concat", "sar", "--mo-delay", "0.5"]))
    assert (config.mo_reply, config.mo_numbers, config.mo_packed_gsm7, config.mo_concat,
            config.mo_delay) == ("echo", ("+351910000001", "351910000002"), True, "sar", 0.5)
