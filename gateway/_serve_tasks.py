"""The serving gateway's housekeeping tasks: hourly purges and prunes that keep tables bounded.

Each runs forever in ``gateway.serve``'s nursery (cancelled with it): the idempotency keys'
expiry, the callback outbox's settled-status marks (``cb_done``), and inbound messages' stale
parts and providers' ids. The store ops themselves live with their tables
(``gateway.callback_outbox``, ``gateway.inbound``, ``gateway.idempotency``); this module only
schedules them. Must not be imported by actors or adapters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio

from gateway import inbound

logger = logging.getLogger("septet")  # the name `septet serve` has always logged under


CALLBACK_MARKS_KEPT: Final = 7 * 86_400.0
"""Seconds the callback outbox remembers which statuses of a message it settled (``cb_done``):
beyond the receipt timeout (48 h) and the correlator's replays, so no duplicate can follow."""


async def prune_callback_marks(store: Any, *, every: float = 3600.0,
                               keep: float = CALLBACK_MARKS_KEPT,
                               now: Callable[[], float] = time.time) -> None:
    """Every ``every`` seconds, forget the delivered-callback marks of messages accepted more
    than ``keep`` seconds ago (``gateway.callback_outbox.prune_done``; ids are time-ordered),
    so that table does not grow forever."""
    from actors.ingress import id_floor
    from gateway.callback_outbox import prune_done

    while True:
        await trio.sleep(every)
        removed = await prune_done(store, before_msg_id=id_floor(now() - keep))
        if removed:
            logger.info("callbacks: %d settled-status marks older than %.0f days removed",
                        removed, keep / 86_400)


async def purge_idempotency(book: Any) -> None:
    """Every hour, drop the expired idempotency keys (``IdempotencyBook.purge``)."""
    while True:
        await trio.sleep(3600)
        removed = await book.purge()
        logger.info("idempotency: %d expired keys removed", removed)


async def purge_inbound_parts(store: Any, *, every: float = 3600.0) -> None:
    """Every hour, drop parts of inbound messages still incomplete after ``PART_TTL``, and
    providers' message ids older than ``SEEN_TTL`` (in ops of at most 10,000)."""
    while True:
        await trio.sleep(every)
        removed = await inbound.purge_parts(store, older_than=time.time() - inbound.PART_TTL)
        if removed:
            logger.info("inbound: %d parts of incomplete messages removed", removed)
        forgotten, batch = 0, 10_000  # one op's most: the writer commits others in between
        while batch == 10_000:
            batch = await inbound.purge_seen(store, older_than=time.time() - inbound.SEEN_TTL,
                                             limit=batch)
            forgotten += batch
        if forgotten:
            logger.info("inbound: %d providers' message ids forgotten", forgotten)
