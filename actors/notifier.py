"""The notifier actor: status callbacks upstream, from a durable outbox, retried, signed.

Theory of operation. The inbox carries msgpack batches of ``StatusEvent`` that the receipt
correlator has already persisted. For each batch the notifier first writes the events to the
callback outbox (one store write, idempotent per (msg_id, seq)) and only then delivers them, so
a crash loses nothing: on start-up whatever the outbox holds is simply due and gets sent.

Delivery is a scheduling loop over the outbox in due order:

* per message only the lowest pending ``seq`` is ever due (the outbox keeps later ones waiting
  until it is delivered or dead-lettered), so a receiver never sees seq 2 before seq 1;
* each due entry is grouped per callback URL (``batch_size`` events per request, 1 = one JSON
  object per request) and sent when its endpoint's concurrency cap and circuit breaker allow
  (``callbacks_policy.Endpoints``); entries of an endpoint whose breaker is open are postponed
  to the end of its cooldown without spending a retry;
* with ``batch_size`` > 1 an endpoint has at most one under-full request in flight (as Nagle's
  rule does for small segments): what is due while it runs waits for its answer (one round
  trip) and then goes in fuller requests, so under load a request carries many events and
  an idle endpoint still gets a lone event at once;
* requests are made by long-lived sender tasks, up to ``per_endpoint`` per endpoint (one per
  kept-alive connection slot) and ``max_in_flight`` in all, each taking the next request's
  entries from its endpoint's queue as soon as its previous answer is in; an idle one ends
  after a few seconds, and one idle elsewhere gives its slot up to an endpoint that needs it;
* a request has a deadline (``policy.request_timeout``, applied here at the call site);
* results are settled by one acker task that takes every decision made since its last write
  and records them in one outbox write (delivered, retry at a jittered back-off time, or
  dead-lettered once the retry window (24 h by default) is over or the failure is permanent).

Delivery is at-least-once across a crash (a request that succeeded just before a kill is sent
again); the ``webhook-id`` header is stable per (msg_id, seq) so receivers drop the repeat.
Entries someone else writes into the outbox (the inbound book's MO pushes, in its own
transaction) are read at the next poll, or at once when the writer rings the ``doorbell``
after its commit.

When the inbox closes the notifier keeps delivering what is due for ``policy.drain_timeout``
seconds and returns; the rest stays in the outbox for the next start.

The pieces: this module holds the actor (:func:`run`) and what its callers hand it
(``EndpointFor``, :class:`NotifierStats`, :class:`Doorbell`). The delivery it drives is one
object built in three layers, each a module: ``_notifier_delivery`` (the scheduling loop that
reads the outbox into per-endpoint lanes), ``_notifier_senders`` (the sender tasks and their
request deadlines) and ``_notifier_acker`` (:func:`decide`, the one outbox write per batch of
settlements, and the metrics it flushes, :func:`observe_many`). Breaker, retry schedule and
per-endpoint caps are ``callbacks_policy``'s.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import trio

from actors._inbox import with_waiting
from actors._notifier_acker import decide, observe_many
from actors._notifier_delivery import _Delivery
from actors._notifier_senders import _LINGER  # noqa: F401  (tests read notifier._LINGER)
from actors.callbacks_policy import RetryPolicy
from actors.messages import StatusEvent, decode_wire_batches_of
from actors.ports import CallbackOutbox, CallbackSender

__all__ = ["Doorbell", "EndpointFor", "NotifierStats", "decide", "observe_many", "run"]

EndpointFor = Callable[[StatusEvent], "tuple[str, bytes] | None"]
"""Where a status goes: ``(url, secret)`` from the event's callback_url or its account's
default, or None when the account wants no callbacks."""


@dataclass(slots=True)
class NotifierStats:
    """Counters of one notifier (cheap snapshot for metrics and the benchmark)."""

    enqueued: int = 0
    delivered: int = 0
    retried: int = 0
    postponed: int = 0
    dead: int = 0
    dropped: int = 0
    requests: int = 0
    in_flight: int = 0


class Doorbell:
    """Wakes the running notifier when another writer has put due entries into its outbox.

    The writer rings after its write commits, from the event loop (``trio.Event`` is not
    thread-safe); with no notifier running a ring does nothing and the entry waits for the
    next start, which reads everything due.
    """

    __slots__ = ("_listeners",)

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    def ring(self) -> None:
        """Tell every listening notifier that the outbox holds new entries."""
        for listener in self._listeners:
            listener()

    @contextmanager
    def listening(self, listener: Callable[[], None]) -> Iterator[None]:
        """Call ``listener`` on each ring while the block runs."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)

async def run(
    inbox: trio.MemoryReceiveChannel[bytes],
    *,
    outbox: CallbackOutbox,
    sender: CallbackSender,
    policy: RetryPolicy,
    endpoint_for: EndpointFor,
    now: Callable[[], float] = time.time,
    rand: Callable[[], float] = random.random,
    stats: NotifierStats | None = None,
    doorbell: Doorbell | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Enqueue status events durably and deliver them as callbacks until the inbox closes.

    Args:
        inbox: msgpack batches of StatusEvent (already persisted upstream). Owned and closed.
        outbox: the durable callback outbox; resumed at start.
        sender: makes the signed HTTP requests.
        policy: retry, breaker, concurrency and batching settings.
        endpoint_for: ``event -> (url, secret) | None``; asked at enqueue and at each send.
        now: wall clock (Unix seconds); tests pass ``trio.current_time``.
        rand: uniform [0, 1) source for retry jitter.
        stats: counters to update, if the caller wants them.
        doorbell: rung by other writers of ``outbox`` after their commit (MO pushes), so
            their entries go out at once instead of at the next ``policy.poll_interval``.
    """
    delivery = _Delivery(outbox, sender, policy, endpoint_for, now, rand, stats or NotifierStats())
    async with inbox, trio.open_nursery() as nursery:
        with (doorbell or Doorbell()).listening(delivery.poke):
            await nursery.start(delivery.run)
            task_status.started()
            async for batch in inbox:
                # whatever else waits goes into the same outbox write
                items = with_waiting(inbox, batch)
                await delivery.enqueue(decode_wire_batches_of(StatusEvent, items))
            await delivery.drain()
            nursery.cancel_scope.cancel()
