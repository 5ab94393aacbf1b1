"""The rate limiter's metrics (docs/metrics.md): held, released, finished by code, deferred and
throttles by connector, fed once per batch from what the Shaper decided."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing
from prometheus_client import REGISTRY

from actors import messages, rate_limiter
from actors.messages import ConnectorThrottled, Message, MsgId
from actors.shaping import AccountRules, ConnectorRules, Limit, SendWindow, ShapingRules

BASE = 1_767_600_000.0  # 2026-01-05 08:00 UTC, a Monday


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def msg(i: int, account: str = "a", **kw: object) -> Message:
    return Message(MsgId(f"m{i:06d}"), account, f"+4477009{i:05d}", "S", "hi", "ucs2",
                   BASE, **kw)  # type: ignore[arg-type]


async def test_limiter_metrics_follow_its_decisions(
        autojump_clock: trio.testing.MockClock) -> None:
    rules = ShapingRules(
        accounts={"night": AccountRules(window=SendWindow("UTC", "20:00", "21:00"))},
        connectors={"uk": ConnectorRules(limit=Limit(rate=1, burst=1))},
        route=lambda to: "uk")
    before = {k: value(*k) for k in [
        ("septet_rate_limiter_released_total",), ("septet_rate_limiter_deferred_total",)]}
    expired0 = value("septet_rate_limiter_finished_total", code="expired")
    throttles0 = value("septet_rate_limiter_throttles_total", carrier="uk")

    in_tx, in_rx = trio.open_memory_channel[bytes](8)
    out_tx, out_rx = trio.open_memory_channel[bytes](8)
    fin_tx, fin_rx = trio.open_memory_channel[bytes](8)
    fb_tx, fb_rx = trio.open_memory_channel[bytes](8)
    def_tx, def_rx = trio.open_memory_channel[bytes](8)
    async with trio.open_nursery() as n:
        await n.start(partial(rate_limiter.run, in_rx, out_tx, fin_tx, rules=rules,
                              feedback=fb_rx, deferred=def_tx,
                              now=lambda: BASE + trio.current_time()))
        for rx in (out_rx, fin_rx, def_rx):
            n.start_soon(_drain, rx)
        batch = [msg(i) for i in range(5)] + [msg(10, not_after=BASE - 1)] + [
            msg(20, "night"), msg(21, "night")]
        await in_tx.send(messages.encode_batch(batch))
        await trio.sleep(0.5)
        # one released at once (burst 1), four held by the 1/s bucket, one expired, two deferred
        assert value("septet_rate_limiter_held_messages") == 4
        assert value("septet_rate_limiter_released_total") - before[
            ("septet_rate_limiter_released_total",)] == 1
        assert value("septet_rate_limiter_finished_total", code="expired") - expired0 == 1
        assert value("septet_rate_limiter_deferred_total") - before[
            ("septet_rate_limiter_deferred_total",)] == 2
        await fb_tx.send(messages.encode_batch(
            [ConnectorThrottled("uk", BASE), ConnectorThrottled("uk", BASE)]))
        await trio.sleep(0.1)
        # two answers within the cooldown: the rate is lowered once
        assert value("septet_rate_limiter_throttles_total", carrier="uk") - throttles0 == 1
        await in_tx.aclose()
        await fb_tx.aclose()
    assert value("septet_rate_limiter_held_messages") == 0
    assert value("septet_rate_limiter_released_total") - before[
        ("septet_rate_limiter_released_total",)] == 5


async def _drain(rx: trio.abc.ReceiveChannel[bytes]) -> None:
    async with rx:
        async for _ in rx:
            pass
