"""The dispatcher actor: routes parts, submits them in batches, retries, reports outcomes.

It takes an incoming batch of parts together with every batch already waiting behind it,
first marks them SUBMITTING in the store (so a crash from here on leaves them "in doubt", not
lost), then groups them by the connector :mod:`routing` chooses and calls
``Carrier.submit_many`` for each group. One mark is in flight at a time: what arrives while it
commits waits and goes in the next one, so under load a few marks carry many parts and when
idle a part is marked at once (natural batching, no timer). Each connector has up to
``concurrency`` batches in submission at once, so its window stays full, and only its own:
an SMSC that stops answering (every submit waits for ``submit_timeout``) holds up its own
parts, not the other connectors' (it held all the slots, shared before). Outcomes go to
the correlator as PartSubmitted / PartFailed:

* accepted → PartSubmitted (with the carrier id, recorded by the correlator);
* transient (timeout, throttled, not bound, lost in flight) → another attempt after
  exponential back-off, on another ready connector of the route when there is one
  (fail-over); after ``max_attempts`` → PartFailed, so the message ends NOT_SENT;
* permanent → PartFailed with the carrier's code;
* no route → PartFailed ``routing_failed``;
* a route but no connector ready (all unbound) → wait and try again without spending an
  attempt (the message keeps its slot in the pump's window: back-pressure, not failure).

A "throttled" answer is also fed back to the rate limiter as ConnectorThrottled.

Must not import: gateway, adapters, lmdb.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgpack
import trio

from actors import _metrics, backoff, messages
from actors._inbox import with_waiting
from actors.messages import ConnectorThrottled, PartFailed, PartSubmitted, Released, SubmitPart
from actors.ports import Carrier, PipelineStore, SubmitResult
from actors.routing import RouteTable, choose

__all__ = ["RetryPolicy", "is_throttle", "run"]

logger = logging.getLogger(__name__)

MAX_MARK: Final = 1024  # parts taken into one mark (when that many wait)
_SUBMITTED_HEAD: Final = (PartSubmitted.TAG, PartSubmitted.VERSION)
THROTTLE_CODES: Final = frozenset({"throttled", "0x58", "0x00000058", "88", "0x14",
                                   "0x00000014", "20", "esme_rthrottled", "esme_rmsgqful"})


def is_throttle(result: SubmitResult) -> bool:
    """True when a transient refusal means "slow down" (SMPP 0x58 throttled, 0x14 queue full)."""
    return result.transient and result.code.strip().lower() in THROTTLE_CODES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with exponential back-off: ``base * 2**(attempt-1)``, capped."""

    max_attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    submit_timeout: float = 30.0

    def delay(self, attempt: int) -> float:
        """Wait before retry ``attempt`` (1-based): ``actors.backoff.delay`` without jitter."""
        return backoff.delay(attempt, base=self.base, cap=self.cap)


@dataclass(slots=True)
class _Ctx:
    carriers: Mapping[str, Carrier]
    routes: RouteTable
    outbox: trio.abc.SendChannel[bytes]
    feedback: trio.abc.SendChannel[bytes] | None
    retry: RetryPolicy
    now: Callable[[], float]
    nursery: trio.Nursery
    concurrency: int = 8
    limits: dict[str, trio.CapacityLimiter] = field(default_factory=dict)

    def limit(self, connector: str) -> trio.CapacityLimiter:
        """The bound on ``connector``'s batches in submission at once."""
        limiter = self.limits.get(connector)
        if limiter is None:
            limiter = self.limits[connector] = trio.CapacityLimiter(self.concurrency)
        return limiter


async def run(
    inbox: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    *,
    carriers: Mapping[str, Carrier],
    routes: RouteTable,
    store: PipelineStore,
    feedback: trio.abc.SendChannel[bytes] | None = None,
    released: trio.abc.SendChannel[bytes] | None = None,
    retry: RetryPolicy = RetryPolicy(),
    concurrency: int = 8,
    now: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Parts in (batches of SubmitPart), outcomes out (batches of PartSubmitted/PartFailed).

    Owns ``inbox``, ``outbox``, ``feedback`` and ``released`` (Released for messages with no
    part left to send, e.g. already final).
    """
    async with inbox, outbox, trio.open_nursery() as nursery:
        ctx = _Ctx(carriers, routes, outbox, feedback, retry, now, nursery, concurrency)
        task_status.started()
        async for item in inbox:
            # what waits meanwhile joins this batch: one mark and one submit round for all
            # keeps the items' bytes: mark_submitting's writer process re-sends them as they are
            parts = messages.decode_wire_batches_of(SubmitPart, with_waiting(inbox, item, MAX_MARK))
            # One mark at a time: parts arriving while it commits wait in the inbox and go in
            # the next one (natural batching: under load a few marks of many parts instead of
            # one per item; when idle a part is marked at once). What is marked waits for its
            # connector's turn (_submit_group); the scheduler pump's in-flight set bounds it.
            allowed = await store.mark_submitting(parts, now())
            nursery.start_soon(_batch, ctx, released, parts, allowed)
    for ch in (feedback, released):
        if ch is not None:
            await ch.aclose()


async def _release_idle(
    released: trio.abc.SendChannel[bytes] | None, parts: Sequence[SubmitPart],
    go: list[SubmitPart], now: float,
) -> None:
    if released is None or len(go) == len(parts):
        return  # nobody to tell, or every part goes: no message is idle
    idle = {p.msg_id for p in parts} - {p.msg_id for p in go}
    if idle:
        # Closed: the pump has stopped (shutdown).
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await released.send(messages.encode_batch([Released(i, now) for i in idle]))


async def _batch(ctx: _Ctx, released: trio.abc.SendChannel[bytes] | None,
                 parts: Sequence[SubmitPart], allowed: Sequence[bool]) -> None:
    """Submit what of a batch, already marked SUBMITTING (durably), may go. Several run at
    once, so the connectors' windows stay full."""
    go = [p for p, ok in zip(parts, allowed, strict=True) if ok]
    await _release_idle(released, parts, go, ctx.now())
    if go:
        await _round(ctx, go, 1, {})


async def _retry_later(ctx: _Ctx, parts: list[SubmitPart], attempt: int,
                       avoid: dict[tuple[str, int], str]) -> None:
    await trio.sleep(ctx.retry.delay(max(1, attempt - 1)))
    await _round(ctx, parts, attempt, avoid)


async def _round(ctx: _Ctx, parts: list[SubmitPart], attempt: int,
                 avoid: dict[tuple[str, int], str]) -> None:
    """One attempt for ``parts``: route, submit per connector, sort outcomes."""
    groups: dict[str, list[SubmitPart]] = {}
    failed: list[PartFailed] = []
    again: list[SubmitPart] = []
    t = ctx.now()
    # Readiness cannot change before the submits start (no await in this loop), so the
    # choice is made once per (candidates, connector to avoid), not once per part.
    chosen: dict[tuple[tuple[str, ...], str | None], str | None] = {}
    for p in parts:
        cands = ctx.routes.candidates(p.to)
        if not cands:
            failed.append(PartFailed(p.msg_id, p.part, p.parts, "", "routing_failed",
                                     "no route for the destination", t))
            continue
        last = avoid.get((p.msg_id, p.part)) if avoid else None
        try:
            name = chosen[cands, last]
        except KeyError:
            name = chosen[cands, last] = choose(
                cands, lambda n: n in ctx.carriers and ctx.carriers[n].ready,
                () if last is None else (last,))
        if name is None:
            again.append(p)  # route known but nothing bound: transient
        else:
            groups.setdefault(name, []).append(p)
    if failed:
        await ctx.outbox.send(messages.encode_batch(failed))
    if len(groups) == 1:  # one connector (the usual case): no nursery and task per batch
        ((name, group),) = groups.items()
        await _submit_group(ctx, name, group, attempt, avoid)
    elif groups:
        async with trio.open_nursery() as inner:
            for name, group in groups.items():
                inner.start_soon(_submit_group, ctx, name, group, attempt, avoid)
    if again:  # nothing bound: wait for a connector without spending an attempt
        ctx.nursery.start_soon(_retry_later, ctx, again, attempt, avoid)


async def _submit_group(ctx: _Ctx, name: str, group: list[SubmitPart], attempt: int,
                        avoid: dict[tuple[str, int], str]) -> None:
    carrier = ctx.carriers[name]
    async with ctx.limit(name):  # this connector's turn (its slots are its own)
        started = trio.current_time()
        with trio.move_on_after(ctx.retry.submit_timeout) as scope:
            results = await carrier.submit_many(group)
    _metrics.SUBMIT_LATENCY.labels(name).observe(trio.current_time() - started)  # timeouts too
    if scope.cancelled_caught or len(results) != len(group):
        results = [SubmitResult(error="submit timed out", code="timeout", transient=True,
                                in_doubt=True)] * len(group)
    t = ctx.now()
    out: list[list[object]] = []  # wire rows of PartSubmitted / PartFailed (encode_batch's)
    again: list[SubmitPart] = []
    throttled = False
    accepted = 0
    outcomes: dict[str, int] = {}
    tag, version = _SUBMITTED_HEAD
    for p, r in zip(group, results, strict=True):
        if not r.error:  # == r.ok: accepted (a row built directly, not a PartSubmitted)
            out.append([tag, version, p.msg_id, p.part, p.parts, name, r.carrier_id, t])
            accepted += 1
            continue
        if r.transient:
            outcome = "in_doubt" if r.in_doubt else "transient"
            throttled = throttled or is_throttle(r)
            avoid[(p.msg_id, p.part)] = name
            again.append(p)
        else:
            outcome = "permanent"
            out.append(messages.to_wire(PartFailed(p.msg_id, p.part, p.parts, name,
                                                   r.code or "rejected", r.error, t)))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if accepted:
        outcomes["accepted"] = accepted
    for outcome, n in outcomes.items():  # per batch: labels() costs microseconds
        _metrics.SUBMITS.labels(name, outcome).inc(n)
    if out:
        await ctx.outbox.send(msgpack.packb(out, use_bin_type=True))
    if throttled and ctx.feedback is not None:
        _metrics.THROTTLED.labels(name).inc()
        await ctx.feedback.send(messages.encode_batch([ConnectorThrottled(name, t)]))
    if again:
        last = next(r for r in results if not r.ok and r.transient)
        _schedule_retry(ctx, again, attempt, avoid, last.code or "transient", last.error)


def _schedule_retry(ctx: _Ctx, parts: list[SubmitPart], attempt: int,
                    avoid: dict[tuple[str, int], str], code: str, reason: str) -> None:
    if attempt >= ctx.retry.max_attempts:
        t = ctx.now()
        failed = [PartFailed(p.msg_id, p.part, p.parts, avoid.get((p.msg_id, p.part), ""),
                             code, f"gave up after {attempt} attempts: {reason}", t)
                  for p in parts]
        ctx.nursery.start_soon(ctx.outbox.send, messages.encode_batch(failed))
        return
    _metrics.RETRIES.labels(avoid.get((parts[0].msg_id, parts[0].part), "")).inc(len(parts))
    ctx.nursery.start_soon(_retry_later, ctx, parts, attempt + 1, avoid)

