"""SmppCarrier against the simulator (and a misbehaving SMSC) over real loopback sockets."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from actors.messages import CarrierReceipt, MsgId, SubmitPart
from actors.ports import Carrier, SubmitResult
from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp.client import SmppCarrier


class Sink:
    """Collects receipts; ``wait_for(n)`` returns once n arrived."""

    def __init__(self) -> None:
        self.receipts: list[CarrierReceipt] = []
        self.changed = trio.Event()

    async def __call__(self, receipts: Sequence[CarrierReceipt]) -> None:
        self.receipts += receipts
        self.changed.set()

    async def wait_for(self, n: int) -> None:
        with trio.fail_after(10):
            while len(self.receipts) < n:
                self.changed = trio.Event()
                await self.changed.wait()


def parts(n: int, prefix: str = "m") -> list[SubmitPart]:
    return [SubmitPart(MsgId(f"{prefix}{i}"), 1, 1, f"+49151{i:08d}", "Septet", 0, b"",
                       b"hello", 0) for i in range(n)]


@asynccontextmanager
async def running(config: SimulatorConfig, sink: Any = None, **kw: Any
                  ) -> AsyncIterator[tuple[SmppCarrier, SimulatorStats]]:
    stats = SimulatorStats()
    async with trio.open_nursery() as outer:
        port = await outer.start(partial(serve_simulator, config, stats=stats))
        kw.setdefault("reconnect_min", 0.01)
        carrier = SmppCarrier("sim", "127.0.0.1", port, "septet", "pw", **kw)
        async with trio.open_nursery() as inner:  # the carrier stops first, then the SMSC
            await inner.start(carrier.run, sink or Sink())
            yield carrier, stats
            inner.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def until(condition: Any) -> None:
    with trio.fail_after(10):
        while not condition():
            await trio.sleep(0.005)  # polling a counter, not timing logic


async def wait_ready(carrier: SmppCarrier) -> None:
    with trio.fail_after(10):
        while not carrier.ready:
            await trio.sleep(0.005)  # polling a flag, not timing logic


def test_smpp_carrier_satisfies_the_port() -> None:
    carrier: Carrier = SmppCarrier("x", "127.0.0.1", 1, "a", "b")
    assert carrier.name == "x" and not carrier.ready
    assert {carrier: 1}[carrier] == 1  # hashable by identity


async def test_submit_many_returns_ids_in_order_and_receipts_flow_back() -> None:
    sink = Sink()
    async with running(SimulatorConfig(), sink) as (carrier, stats):
        results = await carrier.submit_many(parts(300))
        assert [r.carrier_id for r in results] == [str(i) for i in range(1, 301)]
        await sink.wait_for(300)
        await until(lambda: stats.receipts_acked == 300)
    assert {r.carrier_id for r in sink.receipts} == {str(i) for i in range(1, 301)}
    assert all(r.state == "DELIVRD" and r.connector == "sim" for r in sink.receipts)
    assert stats.submits_received == 300 and stats.duplicates() == 0
    assert stats.receipts_acked == 300
    assert stats.unbinds == 1  # graceful shutdown unbinds (§4.2)


async def test_window_bounds_submits_in_flight() -> None:
    async with running(SimulatorConfig(latency=0.02), window=8) as (carrier, stats):
        results = await carrier.submit_many(parts(80))
    assert all(r.ok for r in results)
    assert stats.peak_pending_responses == 8


async def test_throttled_parts_slow_down_and_are_not_failed() -> None:
    config = SimulatorConfig(max_submit_rate=400, burst=20)
    async with running(config, throttle_min=0.01) as (carrier, stats):
        results = await carrier.submit_many(parts(200))
    assert Counter(r.code for r in results if not r.ok) == Counter(), carrier.statistics()
    assert stats.submits_throttled > 0 and carrier.stats.throttled == stats.submits_throttled
    assert len(stats.accepted) == 200 and stats.duplicates() == 0


async def test_throttled_until_the_deadline_comes_back_transient_0x58() -> None:
    config = SimulatorConfig(max_submit_rate=0.001, burst=1)
    async with running(config, submit_timeout=0.3, throttle_max=0.05) as (carrier, _):
        results = await carrier.submit_many(parts(3))
    assert results[0].ok
    assert [(r.code, r.transient, r.in_doubt) for r in results[1:]] == [
        (st.code(st.ESME_RTHROTTLED), True, False)] * 2


async def test_permanent_and_transient_refusals_are_classified() -> None:
    for status, transient in ((st.ESME_RINVDSTADR, False), (st.ESME_RSYSERR, True)):
        config = SimulatorConfig(submit_error_rate=1.0, submit_error_status=status)
        async with running(config) as (carrier, _):
            [result] = await carrier.submit_many(parts(1))
        assert (result.error, result.code, result.transient) == (
            st.name(status), st.code(status), transient)


@pytest.mark.parametrize("binds", [1, 2])
async def test_disconnects_mid_window_lose_nothing_and_count_in_doubt(binds: int) -> None:
    config = SimulatorConfig(latency=0.005, disconnect_rate=0.01, seed=7)
    todo = parts(400)
    in_doubt = 0
    async with running(config, window=16, binds=binds) as (carrier, stats):
        for _ in range(100):
            if not todo:
                break
            await wait_ready(carrier)
            results = await carrier.submit_many(todo)
            for r in results:
                assert r.ok or r.transient, r  # nothing is failed for good by a disconnect
            in_doubt += sum(r.in_doubt for r in results)
            todo = [q for q, r in zip(todo, results, strict=True) if not r.ok]
    assert todo == []
    assert stats.disconnects_injected > 0 and in_doubt > 0
    assert in_doubt >= stats.submits_unanswered > 0  # every part the SMSC left unanswered is counted
    assert len(stats.accepted) == 400  # every part reached the SMSC ...
    assert stats.duplicates() <= in_doubt  # ... and only in-doubt ones may have been duplicated
    assert stats.connections >= stats.disconnects_injected + 1


async def test_receipts_can_arrive_before_submit_responses() -> None:
    order: list[str] = []

    class Recording(Sink):
        async def __call__(self, receipts: Sequence[CarrierReceipt]) -> None:
            order.append("receipt")
            await super().__call__(receipts)

    sink = Recording()
    async with running(SimulatorConfig(latency=0.2), sink) as (carrier, _):
        results = await carrier.submit_many(parts(5))
        order.append("responses")
        await sink.wait_for(5)
    assert order[0] == "receipt"
    assert {r.carrier_id for r in results} == {r.carrier_id for r in sink.receipts}


async def test_receipt_is_acknowledged_only_after_the_sink_returns() -> None:
    gate = trio.Event()
    entered = trio.Event()

    async def slow_sink(receipts: Sequence[CarrierReceipt]) -> None:
        entered.set()
        await gate.wait()

    async with running(SimulatorConfig(), slow_sink) as (carrier, stats):
        await carrier.submit_many(parts(1))
        await entered.wait()
        await trio.testing.wait_all_tasks_blocked(0.05)
        assert stats.receipts_sent == 1 and stats.receipts_acked == 0
        gate.set()
        await until(lambda: stats.receipts_acked == 1)


async def test_failing_sink_makes_the_smsc_redeliver() -> None:
    calls = 0
    stored: list[CarrierReceipt] = []

    async def flaky(receipts: Sequence[CarrierReceipt]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("disk full")
        stored.extend(receipts)

    async with running(SimulatorConfig(redeliver_after=0.05), flaky) as (carrier, stats):
        await carrier.submit_many(parts(1))
        await until(lambda: stored)
    assert stats.receipts_redelivered >= 1 and len(stored) == 1


async def test_bind_refused_reports_started_and_not_ready() -> None:
    async with running(SimulatorConfig(password="right"), reconnect_min=0.05) as (carrier, stats):
        assert not carrier.ready
        [result] = await carrier.submit_many(parts(1))
        assert (result.code, result.transient) == ("not_bound", True)
    assert stats.bind_failures >= 1


async def test_no_response_is_in_doubt_after_response_timeout() -> None:
    async with running(SimulatorConfig(latency=30), response_timeout=0.2) as (carrier, _):
        [result] = await carrier.submit_many(parts(1))
    assert (result.code, result.transient, result.in_doubt) == ("timeout", True, True)


async def test_unreachable_carrier_starts_and_answers_not_bound() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nobody listens there now
    carrier = SmppCarrier("x", "127.0.0.1", port, "a", "b", reconnect_min=0.05)
    async with trio.open_nursery() as nursery:
        await nursery.start(carrier.run, Sink())
        assert not carrier.ready
        assert (await carrier.submit_many(parts(1)))[0].code == "not_bound"
        nursery.cancel_scope.cancel()


# -- a misbehaving SMSC -----------------------------------------------------------------------


async def _rogue_smsc(script: str, seen: list[p.Pdu | Exception], stream: trio.SocketStream) -> None:
    try:
        await _rogue_script(script, seen, stream)
    except trio.BrokenResourceError:
        pass  # the client hung up on us, as it should after garbage


async def _rogue_script(script: str, seen: list[p.Pdu | Exception], stream: trio.SocketStream) -> None:
    framer = p.Framer()
    async with stream:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for pdu in framer.feed(data):
                seen.append(pdu)
                if isinstance(pdu, p.BindRequest):
                    bound = p.encode(p.BindResponse(pdu.mode, pdu.sequence, 0, "R"))
                    if script == "receipt-with-bind":  # a receipt it held for us, same packet
                        text = (b"id:H1 sub:001 dlvrd:001 submit date:2611250100 "
                                b"done date:2611250101 stat:DELIVRD err:000 text:")
                        bound += p.encode(p.DeliverSm(7, "491", "Septet", text, esm_class=0x04))
                    await stream.send_all(bound)
                elif isinstance(pdu, p.SubmitSm) and script == "malformed":
                    bad = struct.pack(">IIII", 21, p.DELIVER_SM, 0, 500) + b"\x01\x02\x03\x04\x05"
                    unknown = struct.pack(">IIII", 16, 0x00000103, 0, 501)  # data_sm: unsupported
                    ok = p.encode(p.SubmitSmResp(pdu.sequence, 0, "ID1"))
                    await stream.send_all(bad + unknown + ok)
                elif isinstance(pdu, p.SubmitSm) and script == "garbage":
                    await stream.send_all(b"\x00\x00\x00\x03garbage-that-breaks-framing")


async def test_malformed_pdus_from_the_smsc_get_generic_nack_and_no_crash() -> None:
    seen: list[p.Pdu | Exception] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(_rogue_smsc, "malformed", seen), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        carrier = SmppCarrier("rogue", "127.0.0.1", port, "a", "b")
        await nursery.start(carrier.run, Sink())
        [result] = await carrier.submit_many(parts(1))
        assert result == SubmitResult(carrier_id="ID1")
        with trio.fail_after(5):
            while sum(isinstance(x, p.GenericNack) for x in seen) < 2:
                await trio.sleep(0.005)
        nursery.cancel_scope.cancel()
    nacks = [x for x in seen if isinstance(x, p.GenericNack)]
    assert nacks == [p.GenericNack(500, st.ESME_RINVMSGLEN), p.GenericNack(501, st.ESME_RINVCMDID)]


async def test_a_receipt_in_the_same_packet_as_bind_resp_is_delivered_and_acknowledged(
        ) -> None:
    seen: list[p.Pdu | Exception] = []
    sink = Sink()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(
            trio.serve_tcp, partial(_rogue_smsc, "receipt-with-bind", seen), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        carrier = SmppCarrier("rogue", "127.0.0.1", port, "a", "b")
        await nursery.start(carrier.run, sink)
        await sink.wait_for(1)
        await until(lambda: any(isinstance(x, p.DeliverSmResp) for x in seen))
        nursery.cancel_scope.cancel()
    assert [(r.carrier_id, r.state) for r in sink.receipts] == [("H1", "DELIVRD")]
    assert [x for x in seen if isinstance(x, p.DeliverSmResp)] == [p.DeliverSmResp(7, 0)]


async def test_broken_framing_closes_the_connection_and_parts_are_in_doubt() -> None:
    seen: list[p.Pdu | Exception] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, partial(_rogue_smsc, "garbage", seen), 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        carrier = SmppCarrier("rogue", "127.0.0.1", port, "a", "b", reconnect_min=0.01)
        await nursery.start(carrier.run, Sink())
        results = await carrier.submit_many(parts(3))
        assert all(r.transient and r.in_doubt for r in results)
        await wait_ready(carrier)  # it reconnected and bound again
        assert carrier.stats.connects >= 2
        nursery.cancel_scope.cancel()


async def test_sar_concatenation_reaches_the_smsc_as_tlvs() -> None:
    from codec import Policy, split

    pieces = split("z" * 300, Policy(), 0x1F)
    long = [SubmitPart(MsgId("long"), i + 1, len(pieces), "+4915100000001", "Septet",
                       q.data_coding, q.udh, q.body, 0x1F) for i, q in enumerate(pieces)]
    async with running(SimulatorConfig(), concat="sar", packed_gsm7=True) as (carrier, stats):
        results = await carrier.submit_many(long)
    assert all(r.ok for r in results)
    assert sorted((k[2], k[3]) for k in stats.accepted) == [(0x1F, 1), (0x1F, 2)]


async def test_hex_response_and_decimal_receipt_ids_are_passed_verbatim() -> None:
    sink = Sink()
    config = SimulatorConfig(id_format="hex-resp-decimal-receipt", id_start=0x04000000086ECD50)
    async with running(config, sink) as (carrier, _):
        [result] = await carrier.submit_many(parts(1))
        await sink.wait_for(1)
    assert result.carrier_id == "4000000086ECD50"
    assert sink.receipts[0].carrier_id == "288230376293190992"  # the same number, in decimal


async def test_several_binds_share_the_queue() -> None:
    async with running(SimulatorConfig(latency=0.01), window=4, binds=3) as (carrier, stats):
        with trio.fail_after(5):
            while carrier.statistics()["bound"] < 3:
                await trio.sleep(0.005)  # polling a counter, not timing logic
        results = await carrier.submit_many(parts(120))
    assert all(r.ok for r in results)
    assert stats.binds == 3 and stats.unbinds == 3
    assert len(stats.accepted) == 120 and stats.duplicates() == 0


async def test_window_occupancy_is_on_metrics_while_answers_are_awaited() -> None:
    import gc

    from prometheus_client import REGISTRY

    gc.collect()  # carriers of earlier tests (also named "sim") are gone from the sums

    def gauge(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"carrier": "sim"})

    async with running(SimulatorConfig(latency=0.5), window=8, binds=2) as (carrier, _):
        await wait_ready(carrier)
        assert gauge("septet_smpp_window_size") == 16 and gauge("septet_smpp_window_in_use") == 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(carrier.submit_many, parts(20))
            await until(lambda: carrier.window_usage()[0] >= 8)
            assert 8 <= gauge("septet_smpp_window_in_use") <= 16  # type: ignore[operator]
        assert gauge("septet_smpp_window_in_use") == 0
