"""The rate_limiter actor: releases messages when they may go (issue 6, docs/shaping.md).

Every decision is made by :class:`actors.shaping.Shaper`, a pure object fed with ``now``;
this module is the loop around it: read a batch (unless the shaper already holds
``rules.max_held`` messages: that is the back-pressure), let the shaper decide, send what it
released and what it finished, and sleep until the next instant the shaper named.

Time: ``now()`` is the wall clock the rules speak in (``not_after``, windows); sleeps use the
trio clock, converted at each wait, so a test passes ``now`` derived from a MockClock.

At end of input the limiter keeps releasing what it holds, as the rules allow, then closes
its outboxes. Held messages are not final in the store, so a hard stop loses nothing: the
scheduler feeds them again after a restart and deadlines and windows are judged afresh.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Final

import msgpack
import trio

from actors import _metrics, messages
from actors._inbox import with_waiting
from actors._shaping_engine import Row, decode_rows
from actors._wire import join_arrays
from actors.messages import ConnectorThrottled, MessageFinished
from actors.ports import OptOuts, RecentContacts
from actors.shaping import Shaper, ShapingRules

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 512  # most messages per item sent on (DESIGN.md §1: batches are bounded)


async def run(
    inbox: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    finished: trio.abc.SendChannel[bytes],
    *,
    rules: ShapingRules,
    contacts: RecentContacts | None = None,
    optouts: OptOuts | None = None,
    route_wait: Callable[[str, float], float] | None = None,
    feedback: trio.abc.ReceiveChannel[bytes] | None = None,
    now: Callable[[], float] = time.time,
    deferred: trio.abc.SendChannel[bytes] | None = None,
    defer_beyond: float = 300.0,
    queue_beyond: float = 10.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Shape the messages of ``inbox`` onto ``outbox``; NOT_SENT outcomes go to ``finished``.

    Args:
        inbox: batches of Message, already due by ``send_at``.
        outbox: batches of Message released to the segmenter.
        finished: batches of MessageFinished (NOT_SENT: expired, recently_contacted,
            opted_out).
        rules: the shaping rules; ``ShapingRules()`` is no limits.
        contacts: the store's record of recent sends, for the no-re-contact rule.
        optouts: the accounts' opt-out lists: a message to a number on its account's list
            ends NOT_SENT/opted_out, before any limit is charged.
        feedback: batches of ConnectorThrottled from the dispatcher.
        now: the wall clock (Unix seconds).
        deferred: where messages that must wait longer than ``defer_beyond`` seconds for a
            send window or campaign slice go back to, as batches of Message whose
            ``send_at`` is the instant they may go (for the scheduler to store and re-feed
            then), instead of being held in memory. None: hold everything.
        defer_beyond: seconds; shorter waits for a window or slice are held here.
        queue_beyond: seconds; a message that would queue longer than this behind its lane's
            buckets (a backlog of one account, sender or prefix) goes to ``deferred`` too,
            ``send_at`` its estimated turn, so a backlog never fills the scheduler pump's
            in-flight set and holds up other traffic. Shorter bucket waits are held here.
        route_wait: (destination, now) -> 0.0 when a connector of its route is up, else
            seconds: such a message goes to ``deferred`` for that long instead of on (so an
            SMSC that is down does not fill the scheduler pump's in-flight set and stop every
            other route). None, or no ``deferred``: every message goes on, and the dispatcher
            waits for a connector.
        task_status: started once the channels are open.
    """
    shaper = Shaper(rules, contacts, defer_beyond=defer_beyond if deferred else math.inf,
                    queue_beyond=queue_beyond if deferred else math.inf, optouts=optouts,
                    route_wait=route_wait)
    async with inbox, outbox, finished, _maybe(deferred), _maybe(feedback), \
            trio.open_nursery() as nursery:
        if feedback is not None:
            nursery.start_soon(_apply_feedback, feedback, shaper, now)
        task_status.started()
        logger.info("rate limiter started", extra={"max_held": shaper.max_held})
        await _shape(inbox, outbox, finished, deferred, shaper, now)
        nursery.cancel_scope.cancel()
    logger.info("rate limiter stopped")


async def _shape(
    inbox: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    finished: trio.abc.SendChannel[bytes],
    deferred: trio.abc.SendChannel[bytes] | None,
    shaper: Shaper,
    now: Callable[[], float],
) -> None:
    reading = True
    while reading or shaper.held:
        at = _trio_deadline(shaper.next_wake(), now)
        batch = None
        # Past max_held, read nothing until something is released: that is the back-pressure
        # (unless nothing held can ever go, which valid rules never produce: then read on).
        if reading and (shaper.held < shaper.max_held or at == math.inf):
            try:
                if at == math.inf:  # nothing held is timed: no cancel scope (one an item)
                    batch = await inbox.receive()
                else:
                    with trio.move_on_at(at):
                        batch = await inbox.receive()
            except trio.EndOfChannel:
                reading = False
        elif at == math.inf:
            break  # input ended and nothing held can ever become due
        else:
            await trio.sleep_until(at)
        t = now()
        whole: tuple[list[bytes], list[Row]] | None = None  # the items, if their bytes are
        if batch is not None:                               # exactly their rows'
            items = with_waiting(inbox, batch, min(MAX_BATCH, shaper.max_held - shaper.held))
            rows: list[Row] = []
            all_current = True
            for item in items:
                item_rows, current = decode_rows(item)
                for row in item_rows:
                    shaper.admit(row, t)
                rows.extend(item_rows)
                all_current = all_current and current
            whole = (items, rows) if all_current else None
        shaper.poll(t)
        _metrics.LIMITER_HELD.set(shaper.held)
        if shaper.finished:
            done, shaper.finished = shaper.finished, []
            _count_finished(done)
            await _send(finished, done)
        if shaper.deferred and deferred is not None:
            later, shaper.deferred = shaper.deferred, []
            _metrics.LIMITER_DEFERRED.inc(len(later))
            await _send(deferred, later)
        if shaper.released:
            out, shaper.released = shaper.released, []
            _metrics.LIMITER_RELEASED.inc(len(out))
            await _send_released(outbox, out, whole)


_CODE: Final = 2 + MessageFinished._fields.index("code")  # in a MessageFinished wire row


def _count_finished(rows: list[Row]) -> None:
    """One counter update per code of the batch (metrics are fed per batch, not per message)."""
    for code, n in Counter(row[_CODE] for row in rows).items():
        _metrics.LIMITER_FINISHED.labels(code).inc(n)


async def _send(channel: trio.abc.SendChannel[bytes], rows: list[Row]) -> None:
    """Send ``rows`` as batches of at most ``MAX_BATCH`` (a window opening frees thousands)."""
    for i in range(0, len(rows), MAX_BATCH):
        await channel.send(msgpack.packb(rows[i:i + MAX_BATCH], use_bin_type=True))


async def _send_released(channel: trio.abc.SendChannel[bytes], rows: list[Row],
                         whole: tuple[list[bytes], list[Row]] | None) -> None:
    """Send released ``rows``; when they are all the items just read, as they came (no limit
    held anything), their bytes go on as they are (joined, when several) instead of packing
    the rows again (0.35 µs a message)."""
    if whole is not None and len(rows) <= MAX_BATCH and rows == whole[1]:
        await channel.send(join_arrays(whole[0]))
    else:
        await _send(channel, rows)


def _maybe(channel: trio.abc.AsyncResource | None) -> AbstractAsyncContextManager[object]:
    return channel if channel is not None else nullcontext()


def _trio_deadline(wake: float, now: Callable[[], float]) -> float:
    if wake == math.inf:
        return math.inf
    return trio.current_time() + max(0.0, wake - now())


async def _apply_feedback(
    feedback: trio.abc.ReceiveChannel[bytes], shaper: Shaper, now: Callable[[], float]
) -> None:
    async for batch in feedback:  # run() closes the channel
        lowered: Counter[str] = Counter()
        for event in messages.decode_batch_of(ConnectorThrottled, batch):
            if shaper.throttled(event.connector, now()):
                lowered[event.connector] += 1
                logger.warning("connector throttled: rate lowered",
                               extra={"carrier": event.connector})
        for connector, n in lowered.items():
            _metrics.LIMITER_THROTTLES.labels(connector).inc(n)
