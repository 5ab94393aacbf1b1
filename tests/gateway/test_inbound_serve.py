"""`septet serve` on its defaults receives MO from the built-in simulator: a message to the
simulator's answering handset comes back as an inbound message of the dev account."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from gateway import cli
from gateway import config as cfg


async def test_serve_stores_the_simulators_mo_reply_for_the_dev_account(tmp_path: Path) -> None:
    config = cfg.load(None, env={"SEPTET_STORE__PATH": str(tmp_path / "db"),
                                 "SEPTET_HTTP__PORT": "0", "SEPTET_STORE__SYNC": "false",
                                 "SEPTET_SIMULATOR__DELIVERY_DELAY": "0"})
    assert cli.inbound_routes(config) == [("+351912000000", "dev")]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: cli.serve(
            config, key_file=str(tmp_path / "key"), task_status=task_status))
        key = (tmp_path / "key").read_text().strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"authorization": f"Bearer {key}"}) as c:
            r = await c.post("/v1/messages", json={"messages": [
                {"to": "+351910000000", "from": "+351912000000", "text": "hi"},
                {"to": "+351910000001", "from": "+351912000000", "text": "no answer"}]})
            assert r.status_code == 202, r.text
            with trio.fail_after(15):
                while not (doc := (await c.get("/v1/inbound")).json())["messages"]:
                    await trio.sleep(0.05)  # polling the API, not timing logic
            metrics = (await c.get("/metrics")).text
        nursery.cancel_scope.cancel()
    assert [(m["from"], m["to"], m["text"], m["connector"]) for m in doc["messages"]] == [
        ("+351910000000", "+351912000000", "echo", "simulator")]
    assert 'septet_inbound_messages_total{routed="yes"}' in metrics


def test_an_inbound_route_wins_over_the_dev_number() -> None:
    config = cfg.Config(inbound=(cfg.InboundRouteConfig("351912000000", "shop"),))
    assert cli.inbound_routes(config) == [("351912000000", "shop")]
    no_dev = cfg.Config(dev=cfg.DevConfig(create_account=False))
    assert cli.inbound_routes(no_dev) == []
