"""The campaign runner: expands the rows of active campaigns into messages as their
schedule and slices allow (see gateway.campaigns, "Theory of operation").

One pass (:meth:`Runner.step`) walks every campaign; an active one is advanced under its
lock: ``scheduled`` becomes ``running`` ``lead`` seconds before it starts, the rows its open
slices allow are expanded in chunks through ``Gateway.accept``, and a sealed, fully expanded
campaign whose messages are all final becomes ``done``. Each chunk's commit checks that the
campaign's cursor is still where the chunk starts (:class:`_Moved` otherwise), so a row is
expanded exactly once whatever pauses, cancels or crashes.

Must not import: gateway.http, gateway.api (but the message id factory, gateway.api._ids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import trio

from actors.messages import Message
from gateway._campaign_model import (
    ACTIVE,
    COUNTERS,
    DEFS,
    MSGS,
    Campaign,
    RowRefused,
    add_counter,
    counters,
    expand_row,
    load_campaign,
    row_key,
    save_campaign,
)
from gateway.api._ids import FastMsgIds
from gateway.errors import Saturated
from gateway.templates import Template

if TYPE_CHECKING:
    from gateway.campaigns import Campaigns

logger = logging.getLogger(__name__)

Chunk = tuple[list[Message], list[tuple[int, bytes]], dict[str, int]]
"""An expanded chunk: its messages, each row's ``campaign_msgs`` value (msg_id or
"!code: detail"), and the refused rows counted per code."""

COMMITS_IN_FLIGHT = 3  # chunks built ahead while earlier ones commit


class _Moved(Exception):
    """The campaign changed under an expansion (paused, cancelled, or expanded elsewhere)."""


class Runner:
    """Expansion for the :class:`~gateway.campaigns.Campaigns` service ``service``: its
    store, gateway, number normaliser, per-campaign locks, limiter table and settings
    (``chunk`` rows per commit, ``lead`` seconds ahead, ``poll`` seconds between passes)."""

    def __init__(self, service: Campaigns, *, now: Callable[[], float]) -> None:
        self.service = service
        self._now = now
        self._ids = FastMsgIds(now)
        self._wake = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Expand active campaigns as their schedule and slices allow, until cancelled."""
        task_status.started()
        while True:
            try:
                wake_at = await self.step()
            except Exception:  # one bad campaign or a store hiccup must not stop the gateway
                logger.exception("campaign runner pass failed; retrying in 5 s")
                wake_at = self._now() + 5.0
            self._wake = trio.Event()
            delay = self.service.poll if wake_at is None else max(0.0, min(5.0, wake_at - self._now()))
            with trio.move_on_after(delay):
                await self._wake.wait()

    def wake(self) -> None:
        """Start the next pass now (rows staged, a campaign started or resumed)."""
        self._wake.set()

    async def step(self) -> float | None:
        """One pass over the active campaigns; returns the earliest time work is due."""
        store = self.service.store
        due: float | None = None
        with store.read() as txn, txn.cursor(db=store.db(DEFS)) as cur:
            every = [Campaign.unpack(v) for _, v in cur]
        for c in every:
            # what another process did (septet import created it; another worker paused,
            # resumed or cancelled it) reaches this process's rate limiter within a pass
            self.service._remember(c)
        for c in every:
            if c.state not in ACTIVE:
                continue
            try:
                t = await self._advance(c.account, c.name)
            except Saturated as exc:  # the pipeline is full: try again a little later
                t = self._now() + float(getattr(exc, "retry_after", 1.0))
            if t is not None:
                due = t if due is None else min(due, t)
        return due

    async def _advance(self, account: str, name: str) -> float | None:
        store = self.service.store
        async with self.service._lock(account, name):
            while True:
                with store.read() as txn:
                    c = load_campaign(txn, store, account, name)
                now = self._now()
                if c.state not in ACTIVE:
                    return None
                if c.state == "scheduled" and now + self.service.lead >= (c.anchor or c.send_at):
                    c = await self._set_state(c, "running")
                allowed, _ = c.allowed(now, self.service.lead)
                if c.cursor >= allowed:
                    if (c.state == "running" and c.sealed and c.cursor >= c.rows
                            and self._all_final(c)):
                        await self._set_state(c, "done")
                        return None
                    return self._after(c)
                await self._expand_all(c, allowed, now)

    def _after(self, c: Campaign) -> float | None:
        """When this campaign next needs the runner (its next slice or start), or None."""
        if c.cursor >= c.rows:
            return None if c.sealed else self._now() + self.service.poll
        start = c.anchor or c.send_at
        size = c.slice_size()
        if size and c.slice_every:
            return start + (c.cursor // size) * c.slice_every - self.service.lead
        return start - self.service.lead

    def _all_final(self, c: Campaign) -> bool:
        store = self.service.store
        with store.read() as txn:
            n = counters(txn, store.db(COUNTERS), c.key)
        final = n.get("SMS_DELIVERED", 0) + n.get("SMS_NOT_DELIVERED", 0) + n.get("SMS_NOT_SENT", 0)
        return final >= n.get("accepted", 0)

    async def _set_state(self, c: Campaign, state: str) -> Campaign:
        store = self.service.store

        def op(txn: Any) -> Campaign:
            cur = load_campaign(txn, store, c.account, c.name)
            if cur.state in ACTIVE:
                cur.state = state
                if state == "done":
                    cur.finished_at = self._now()
                save_campaign(txn, store, cur)
            return cur

        return await store.write(op)  # type: ignore[no-any-return]

    async def _expand_all(self, c: Campaign, allowed: int, now: float) -> None:
        """Expand rows ``[c.cursor, allowed)`` in chunks, building the next chunk while the
        previous one commits (at most ``COMMITS_IN_FLIGHT``). Each commit checks that the
        cursor is where its chunk starts, so chunks land in order or not at all."""
        tpl = c.template_obj()
        rows = self.service.rows(c.account, c.name, c.cursor, refs=False)
        saturated: list[BaseException] = []
        room = trio.Semaphore(COMMITS_IN_FLIGHT)
        async with trio.open_nursery() as nursery:
            start = c.cursor
            while start < allowed and not saturated:
                stop = min(allowed, start + self.service.chunk)
                work = self._build(c, tpl, rows, start, stop, now)
                await room.acquire()
                nursery.start_soon(self._commit, c, start, stop, work, room, saturated)
                start = stop
                await trio.lowlevel.checkpoint()
        if saturated:
            raise saturated[0]

    def _build(self, c: Campaign, tpl: Template, rows: Iterator[tuple[int, dict[str, Any], str]],
               start: int, stop: int, now: float) -> Chunk:
        """Expand the rows ``[start, stop)`` that ``rows`` yields next (no I/O but the
        number cache: each row is checked, rendered and counted)."""
        messages: list[Message] = []
        refs: list[tuple[int, bytes]] = []
        refused: dict[str, int] = {}
        size, first = c.slice_size(), c.anchor or c.send_at
        sliced = bool(size and c.slice_every)
        numbers, ids = self.service.numbers, self._ids
        for row, data, _ in rows:
            send_at = first + (row // size) * c.slice_every if sliced else first
            out = expand_row(c, tpl, data, numbers, ids(), now, send_at)
            if isinstance(out, RowRefused):
                refs.append((row, f"!{out.code}: {out.detail}".encode()))
                refused[out.code] = refused.get(out.code, 0) + 1
            else:
                messages.append(out)
                refs.append((row, out.msg_id.encode()))
            if row + 1 >= stop:
                break
        return messages, refs, refused

    async def _commit(self, c: Campaign, start: int, stop: int, work: Chunk,
                      room: trio.Semaphore, saturated: list[BaseException]) -> None:
        messages, refs, refused = work
        name, store = c.key, self.service.store

        def also(txn: Any) -> None:
            cur = load_campaign(txn, store, c.account, c.name)
            if cur.cursor != start or cur.state not in ACTIVE:
                raise _Moved()
            db = store.db(MSGS)
            for row, ref in refs:
                txn.put(row_key(name, row), ref, db=db)
            counters_db = store.db(COUNTERS)
            for code, n in refused.items():
                add_counter(txn, counters_db, name, "invalid", n)
                add_counter(txn, counters_db, name, f"invalid:{code}", n)
            cur.cursor = stop
            save_campaign(txn, store, cur)

        try:
            if messages:
                await self.service.gateway.accept(messages, also=also)
            else:
                await store.write(also)
        except _Moved:
            pass
        except Saturated as exc:
            saturated.append(exc)
        finally:
            room.release()
