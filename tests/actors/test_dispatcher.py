"""The dispatcher under MockClock: back-off timing, fail-over, throttle feedback, give-up,
routing failure, and never sending a part the store refuses."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
import trio.testing

from actors import dispatcher
from actors import messages as m
from actors.dispatcher import RetryPolicy
from actors.ingress import MsgIdFactory
from actors.routing import RouteTable
from gateway._store_pipeline import PipelineStore
from gateway.store import open_store
from tests.fakes import Outcome, ScriptedCarrier


async def _run(tmp_path: Path, carriers: list[ScriptedCarrier], routes: dict[str, list[str]],
               n: int = 1, to: str = "+351911111111", mark_twice: bool = False,
               ) -> tuple[list[m.Kind], list[m.ConnectorThrottled], float]:
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store:
        pstore = PipelineStore(store)
        ids = MsgIdFactory(lambda: 1.0)
        msgs = [m.Message(ids(), "a", to, "S", "t", "ucs2", 1.0) for _ in range(n)]
        await pstore.accept(msgs)
        parts = [m.SubmitPart(x.msg_id, 1, 1, x.to, x.sender, 0, b"", b"t", 0, "a") for x in msgs]
        if mark_twice:
            await pstore.mark_submitting(parts, 0.0)  # someone else is already sending them
        in_send, in_recv = trio.open_memory_channel[bytes](4)
        out_send, out_recv = trio.open_memory_channel[bytes](16)
        fb_send, fb_recv = trio.open_memory_channel[bytes](16)
        outcomes: list[m.Kind] = []
        feedback: list[m.ConnectorThrottled] = []
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for c in carriers:
                c.now = trio.current_time
                await nursery.start(c.run, _sink_nowhere)
            await nursery.start(partial(
                dispatcher.run, in_recv, out_send, carriers={c.name: c for c in carriers},
                routes=RouteTable.from_mapping(routes), store=pstore, feedback=fb_send,
                retry=RetryPolicy(max_attempts=4, base=0.5, cap=30.0), now=trio.current_time))
            async with in_send:
                await in_send.send(m.encode_batch(parts))
            async for item in out_recv:
                outcomes.extend(m.decode_batch(item))
            elapsed = trio.current_time() - t0
            async for item in fb_recv:
                feedback.extend(m.decode_batch_of(m.ConnectorThrottled, item))
            nursery.cancel_scope.cancel()
    return outcomes, feedback, elapsed


async def _sink_nowhere(receipts: object) -> None:
    pass


def _script(*outcomes: Outcome) -> ScriptedCarrier:
    seq = list(outcomes)
    return ScriptedCarrier("one", lambda part, attempt: seq[min(attempt, len(seq)) - 1])


async def test_transient_failures_back_off_exponentially_then_succeed(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    carrier = _script("throttle", "transient", "deliver")
    outcomes, feedback, elapsed = await _run(tmp_path, [carrier], {"": ["one"]})
    assert [type(o) for o in outcomes] == [m.PartSubmitted]
    assert elapsed == 0.5 + 1.0  # waits before attempts 2 and 3
    assert [f.connector for f in feedback] == ["one"]  # only the throttle is fed back


async def test_gives_up_after_max_attempts_with_the_last_code(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    outcomes, _, elapsed = await _run(tmp_path, [_script("transient")], {"": ["one"]})
    (failed,) = outcomes
    assert isinstance(failed, m.PartFailed) and failed.code == "timeout"
    assert elapsed == 0.5 + 1.0 + 2.0


async def test_fails_over_to_the_next_connector_of_the_route(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    bad = ScriptedCarrier("bad", lambda p, a: "transient")
    good = ScriptedCarrier("good", lambda p, a: "deliver")
    outcomes, _, _ = await _run(tmp_path, [bad, good], {"+351": ["bad", "good"]})
    (ok,) = outcomes
    assert isinstance(ok, m.PartSubmitted) and ok.connector == "good"
    assert sum(bad.attempts.values()) == 1


async def test_permanent_refusal_and_missing_route_fail_at_once(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    outcomes, _, elapsed = await _run(tmp_path, [_script("reject")], {"": ["one"]}, n=2)
    assert {o.code for o in outcomes if isinstance(o, m.PartFailed)} == {"0x0000000B"}
    assert elapsed == 0
    outcomes, _, _ = await _run(tmp_path / "2", [_script("deliver")], {"+44": ["one"]})
    assert [(type(o), getattr(o, "code", "")) for o in outcomes] == [
        (m.PartFailed, "routing_failed")]


async def test_parts_the_store_refuses_are_never_sent(
        autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    carrier = _script("deliver")
    outcomes, _, _ = await _run(tmp_path, [carrier], {"": ["one"]}, mark_twice=True)
    assert outcomes == [] and carrier.calls == 0
