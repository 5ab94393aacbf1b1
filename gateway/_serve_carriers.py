"""The serving gateway's carriers, built from the config: SMPP binds (the built-in simulator's
too, started here when enabled) and HTTP providers, each HTTP one wrapped in a
:class:`ReceiptTap` so that the API's webhooks can reach it.

Part of ``gateway.serve`` (the composition root); must not be imported by actors or adapters.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import trio

from gateway import config as cfg

logger = logging.getLogger("septet")  # the name `septet serve` has always logged under


def carrier_id_types(config: cfg.Config) -> dict[str, str]:
    """Each SMPP connector's message-id format, for correlating receipts. The built-in simulator
    writes decimal ids (adapters.simulator's default), so it is never guessed."""
    types = {c.name: c.id_type for c in config.smpp}
    if config.simulator.enabled:
        types["simulator"] = "decimal"
    return types


async def build_carriers(config: cfg.Config, nursery: trio.Nursery,
                         inbound_sink: Any = None) -> list[Any]:
    """Every configured carrier (the simulator started in ``nursery`` when enabled); each
    SMPP bind hands inbound (MO) parts to ``inbound_sink``."""
    from adapters.smpp.client import SmppCarrier

    carriers: list[Any] = []
    sim = config.simulator
    if sim.enabled:
        from adapters.simulator import SimulatorConfig, serve_simulator

        sim_config = SimulatorConfig(system_id=sim.system_id, password=sim.password,
                                     receipt_delay_min=sim.delivery_delay,
                                     receipt_delay_max=sim.delivery_delay,
                                     mo_reply=sim.mo_reply, mo_numbers=sim.mo_numbers)
        port = await nursery.start(partial(serve_simulator, sim_config, host=sim.host,
                                           port=sim.port))
        carriers.append(SmppCarrier("simulator", sim.host, port, sim.system_id, sim.password,
                                    inbound=inbound_sink))
        logger.info("built-in SMSC simulator on %s:%d", sim.host, port)
    for c in config.smpp:
        carriers.append(SmppCarrier(c.name, c.host, c.port, c.system_id, c.password,
                                    window=c.window, packed_gsm7=c.packed_gsm7,
                                    concat="sar" if c.concat == "sar" else "udh",
                                    inbound=inbound_sink))
    for h in config.http_providers:
        carriers.append(ReceiptTap(http_carrier(h), h.receipt_token,
                                   inbound_token=h.inbound_token or h.receipt_token,
                                   inbound_token_param=h.inbound_token_param))
    if not carriers:
        logger.warning("no carrier configured: messages are accepted and wait in the outbox")
    return carriers


def http_carrier(h: cfg.HttpProviderConnectorConfig) -> Any:
    """The ``adapters.http_provider`` carrier of one ``[[http_providers]]`` table."""
    from adapters.http_provider import HttpCarrier, HttpProviderConfig

    def pairs(rows: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((a, b) for a, b in rows)

    return HttpCarrier(HttpProviderConfig(
        name=h.name, url=h.url, method=h.method, body_format=h.body_format,
        headers=pairs(h.headers), fields=pairs(h.fields), static_fields=pairs(h.static_fields),
        id_path=h.id_path, error_path=h.error_path, timeout=h.timeout, concurrency=h.concurrency,
        receipt_list_path=h.receipt_list_path, receipt_id_path=h.receipt_id_path,
        receipt_status_path=h.receipt_status_path, receipt_error_path=h.receipt_error_path,
        receipt_done_path=h.receipt_done_path, inbound_list_path=h.inbound_list_path,
        inbound_from_path=h.inbound_from_path, inbound_to_path=h.inbound_to_path,
        inbound_text_path=h.inbound_text_path, inbound_id_path=h.inbound_id_path,
        inbound_time_path=h.inbound_time_path, inbound_concat_ref_path=h.inbound_concat_ref_path,
        inbound_concat_total_path=h.inbound_concat_total_path,
        inbound_concat_part_path=h.inbound_concat_part_path))


class ReceiptTap:
    """Wraps an HTTP-provider carrier: keeps the receipt sink the Gateway hands to ``run`` so
    that ``POST /v1/receipts/{connector}`` can feed it (the provider pushes receipts to us),
    and reads the bodies of ``POST /v1/inbound/{connector}`` with the carrier's config."""

    def __init__(self, carrier: Any, token: str, *, inbound_token: str = "",
                 inbound_token_param: str = "") -> None:
        self._carrier = carrier
        self.token = token
        self.inbound_token = inbound_token or token
        self.inbound_token_param = inbound_token_param  # the query parameter GET may use
        self.sink: Any = None

    @property
    def name(self) -> str:
        return str(self._carrier.name)

    @property
    def ready(self) -> bool:
        return bool(self._carrier.ready)

    def parse(self, body: bytes, content_type: str) -> list[Any]:
        from adapters.http_provider import parse_receipts

        return parse_receipts(self._carrier.config, body, content_type)

    def parse_inbound(self, body: bytes, content_type: str) -> list[Any]:
        from adapters.http_inbound import parse_inbound

        return parse_inbound(self._carrier.config, body, content_type, received_at=time.time())

    async def run(self, receipts: Any, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.sink = receipts
        try:
            await self._carrier.run(receipts, task_status=task_status)
        finally:
            self.sink = None

    async def submit_many(self, parts: Any) -> Any:
        return await self._carrier.submit_many(parts)
