"""The rate limiter charges each message to the connector the dispatcher routes it to, so
per-connector limits (and throttle feedback) apply to the right connector."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from actors import messages as m
from actors.ingress import MsgIdFactory
from actors.messages import SubmitPart
from actors.routing import RouteTable
from actors.shaping import ConnectorRules, Limit, ShapingRules
from gateway.app import CoreSettings, open_gateway, shaping_rules
from gateway.store import open_store
from tests.fakes import Outcome, ScriptedCarrier

BASE = 1_800_000_000.0


def test_the_route_is_the_first_candidate_connector_or_default() -> None:
    table = RouteTable.from_mapping({"+351": ["pt", "uk"], "+44": ["uk"]})
    route = shaping_rules(ShapingRules(), table).route
    assert (route("+351912345678"), route("+447700900000"), route("+15550100")) == (
        "pt", "uk", "default")
    mine = ShapingRules(route=lambda to: "mine")
    assert shaping_rules(mine, table) is mine  # an explicit route is kept


@pytest.mark.parametrize("to_pt", [True, False])
async def test_a_connector_limit_paces_only_the_traffic_routed_to_it(
        autojump_clock: trio.testing.MockClock, tmp_path: Path, to_pt: bool) -> None:
    def now() -> float:
        return BASE + trio.current_time()

    sent_at: dict[str, list[float]] = {"pt": [], "uk": []}

    def script(name: str):  # type: ignore[no-untyped-def]
        def fate(part: SubmitPart, attempt: int) -> Outcome:
            sent_at[name].append(trio.current_time())
            return "deliver"
        return fate

    carriers = [ScriptedCarrier("pt", script("pt"), now=now),
                ScriptedCarrier("uk", script("uk"), now=now)]
    rules = ShapingRules(connectors={"pt": ConnectorRules(limit=Limit(rate=1, burst=1))})
    settings = CoreSettings(routes={"+351": ["pt"], "": ["uk"]}, shaping=rules,
                            receipt_timeout=None)
    ids = MsgIdFactory(now)
    prefix = "+35191234567" if to_pt else "+4477009000"
    async with open_store(tmp_path / "db", sync=False, threaded=False) as store, \
            open_gateway(store, carriers, settings, now=now) as gw:
        t0 = trio.current_time()
        await gw.accept([m.Message(ids(), "a", f"{prefix}{i}", "S", "hi", "ucs2", now())
                         for i in range(4)])
        with trio.fail_after(30):
            while len(sent_at["pt"]) + len(sent_at["uk"]) < 4:
                await trio.sleep(0.01)
    if to_pt:  # 1 a second on pt: at 0, 1, 2, 3
        assert sent_at["uk"] == []
        assert sent_at["pt"][-1] - t0 == pytest.approx(3.0, abs=0.1)
    else:  # uk has no limit: all at once
        assert sent_at["pt"] == []
        assert sent_at["uk"][-1] - t0 < 0.5
