"""Assemble the v1 application from a gateway, its store and the configuration."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from gateway.accounts import AccountBook
from gateway.api._ids import FastMsgIds
from gateway.api.dead_letters import DeadLetterRoutes
from gateway.api.inbound import InboundRoutes
from gateway.api.messages import MessageRoutes
from gateway.api.optouts import OptOutRoutes
from gateway.api.routes import Api, ReceiptParser, ReceiptSink
from gateway.config import ApiConfig
from gateway.idempotency import IdempotencyBook
from gateway.optouts import OptOutList
from gateway.ssrf import check_callback_url_async
from gateway.validation import NumberNormaliser


def create_api(gateway: Any, config: ApiConfig, *, allow_loopback_callbacks: bool = False,
               allow_private_callbacks: bool = False,
               check_callback: Callable[[str], str] | None = None,
               receipt_parsers: Mapping[str, ReceiptParser] | None = None,
               receipt_tokens: Mapping[str, str] | None = None,
               receipt_sink: ReceiptSink | None = None,
               campaigns: Any = None,
               now: Callable[[], float] = time.time) -> Api:
    """The API over ``gateway`` (which has ``accept``, ``ready`` and ``store``)."""
    store = gateway.store
    book = IdempotencyBook(store, ttl_seconds=config.idempotency_ttl_hours * 3600, now=now)
    # Callback URLs are checked in the request path: names resolve through trio's resolver
    # (check_callback_url_async), never with a blocking getaddrinfo on the event loop.
    check: Callable[[str], Awaitable[str]] = (
        partial(check_callback_url_async, allow_loopback=allow_loopback_callbacks,
                allow_private=allow_private_callbacks)
        if check_callback is None else _inline(check_callback))
    routes = MessageRoutes(
        gateway, book, NumberNormaliser(config.phone_cache_size), new_id=FastMsgIds(now),
        check_callback=check, max_batch=config.max_batch, page_size=config.page_size,
        max_page_size=config.max_page_size, max_scan=config.max_scan, now=now)
    accounts = AccountBook(store, now=now, inactivity_days=config.key_inactivity_days)
    api = Api(gateway, accounts, routes, receipt_parsers=receipt_parsers,
              receipt_tokens=receipt_tokens, receipt_sink=receipt_sink)
    api.idempotency = book
    api.dead_letters = DeadLetterRoutes(store, page_size=config.page_size, now=now)
    api.inbound = InboundRoutes(store, page_size=config.page_size,
                                max_page_size=config.max_page_size, max_scan=config.max_scan)
    # (every OptOutList on this store shares what the rate limiter's knows: a change is
    # enforced as soon as it is committed)
    api.optouts = OptOutRoutes(OptOutList(store, now=now), page_size=config.page_size,
                               max_page_size=config.max_page_size, max_scan=config.max_scan)
    if campaigns is not None:  # gateway.campaigns.Campaigns (issue 8)
        from gateway.api.campaigns import CampaignRoutes

        api.campaigns = CampaignRoutes(campaigns, now=now)
    return api


def _inline(check: Callable[[str], str]) -> Callable[[str], Awaitable[str]]:
    """A synchronous check (a test's or an embedder's override, which must not block) as the
    async callable the routes await."""

    async def run(url: str) -> str:
        return check(url)

    return run
