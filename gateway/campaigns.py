"""Campaigns: a template (or text) sent to a list of recipients, shaped, paused, counted.

Theory of operation
-------------------
A campaign lives in four LMDB databases (registered in ``gateway.store.STORE_DATABASES`` when
this module is imported, so import it before ``open_store``):

    campaign_defs   account 0x00 name            -> msgpack record (:class:`Campaign`)
    campaign_rows   account 0x00 name 0x00 row   -> msgpack recipient (dict of str)  staged rows
    campaign_msgs   account 0x00 name 0x00 row   -> msg_id, or "!code: detail" for a refused row
                    (row: u64 big-endian)
    templates       account 0x00 template name -> msgpack template document

Recipients are *staged* first (``stage``: rows appended in chunks, one durable write per
chunk, nothing held beyond the chunk), then *expanded* by the runner (:meth:`Campaigns.run`)
into ``Message`` s that go through ``Gateway.accept`` in chunks of ``chunk`` rows. Each
expansion commit holds the messages, their ``campaign_msgs`` entries, the counters of
refused rows and the advanced cursor in ONE transaction, and the commit first checks that the
cursor is still where the runner read it: a row is expanded exactly once, whatever crashes.

States::

    draft ──start──▶ scheduled ──(send_at - lead)──▶ running ──(all final)──▶ done
                         │  ▲                           │  ▲
                         pause resume                   pause resume
                         ▼  │                           ▼  │
                        paused ◀────────────────────────┘
    any state but done ──cancel──▶ cancelled

Shaping. "PP % every MMM minutes" is done here, durably: slice *k* holds rows
``[k·S, (k+1)·S)`` with ``S = ceil(rows·PP/100)`` and is expanded ``lead`` seconds before it
opens, with ``send_at`` = its opening, so the durable scheduler releases it on time (after a
restart too) and a paused campaign expands nothing more; resuming shifts the remaining slices
by the pause. Pause also stops *sending*: the campaign's limiter rules carry ``paused`` (see
:func:`limiter_rules`), which the rate limiter reads for every message, so expanded messages
of a paused campaign go back to the durable schedule instead of to a carrier; the table is
rebuilt from the durable records on start, so a pause survives a restart. ``per_minute`` and the re-contact window are handed to the rate limiter through
:attr:`Campaigns.rules` (a live ``Mapping[str, CampaignRules]`` for
``ShapingRules.campaigns``). Cancel stops expansion and ends queued messages NOT_SENT
``cancelled``.

Statistics are read from the incremental counters in the ``campaigns`` database (the
correlator counts ``SMS_*`` events, ``SMS_NOT_SENT:<code>``, ``accepted`` and ``parts``; this
module counts refused rows as ``invalid:<code>`` and cancelled rows), never by scanning.

Messages keep ``Message.campaign = name``. Names are unique per account: every key is the
campaign key ``account 0x00 name`` (:func:`campaign_key`; names hold no NUL), and so are the
store's counters (``account 0x00 campaign 0x00 counter``), so two accounts may both run a
``SPRING`` and every account has its own ``API_SMS_YYYY_MM`` counters.

Must not import: gateway.http; from gateway.api only the message id factory (gateway.api._ids).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import msgpack
import trio

from actors.messages import FINAL_STATES, Message, MessageFinished, MsgId, State
from actors.shaping import CampaignRules
from gateway._campaign_model import (
    ACTIVE,
    COUNTERS,
    DEFS,
    MSGS,
    ROWS,
    STATES,
    TEMPLATES,
    Campaign,
    CampaignError,
    RowRefused,
    TemplateBook,
    _add,
    _key,
    _Rules,
    campaign_key,
    check,
    counters,
    expand_row,
    limiter_rules,
    statistics,
)
from gateway.api._ids import FastMsgIds
from gateway.errors import Saturated
from gateway.templates import Template
from gateway.validation import NumberNormaliser

__all__ = [
    "COUNTERS",
    "DEFS",
    "MSGS",
    "ROWS",
    "STATES",
    "TEMPLATES",
    "Campaign",
    "CampaignError",
    "Campaigns",
    "RowRefused",
    "TemplateBook",
    "campaign_key",
    "check",
    "counters",
    "expand_row",
    "limiter_rules",
    "statistics",
]

logger = logging.getLogger(__name__)


class Campaigns:
    """The campaign service over a store and a gateway (``accept``, optionally ``pipeline``).

    Args:
        store: the open ``gateway.store.Store`` (this module's databases registered).
        gateway: ``Gateway`` or anything with ``accept(messages, also=...)``; may be bound
            later with :meth:`bind`.
        numbers: the number normaliser (shared with the API).
        chunk: rows per expansion commit.
        lead: seconds before a slice (or a scheduled start) that its rows are expanded.
        poll: seconds between runner passes when nothing wakes it.
    """

    def __init__(self, store: Any, gateway: Any = None, *, numbers: NumberNormaliser | None = None,
                 now: Callable[[], float] = time.time, chunk: int = 5000, lead: float = 60.0,
                 poll: float = 1.0) -> None:
        self.store = store
        self.gateway = gateway
        # campaign numbers rarely repeat: a small cache keeps memory flat over big lists
        self.numbers = numbers or NumberNormaliser(cache_size=10_000)
        self.templates = TemplateBook(store)
        self._now = now
        self._ids = FastMsgIds(now)
        self.chunk = chunk
        self.lead = lead
        self.poll = poll
        self._table: dict[str, CampaignRules] = {}
        self.rules: Mapping[str, CampaignRules] = _Rules(self._table)
        self._wake = trio.Event()
        self._locks: dict[str, trio.Lock] = {}
        with store.read() as txn, txn.cursor(db=store.db(DEFS)) as cur:
            for _, raw in cur:
                self._remember(Campaign.unpack(raw))

    def bind(self, gateway: Any) -> None:
        self.gateway = gateway

    def _remember(self, c: Campaign) -> None:
        rules = limiter_rules(c)
        if rules is None:
            self._table.pop(c.key, None)
        else:
            self._table[c.key] = rules

    def _lock(self, name: str) -> trio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = trio.Lock()
        return lock

    # ------------------------------------------------------------------- reading

    def get(self, account: str, name: str) -> Campaign | None:
        """The campaign ``name`` of ``account`` (names are per account)."""
        with self.store.read() as txn:
            raw = txn.get(campaign_key(account, name).encode(), db=self.store.db(DEFS))
        return None if raw is None else Campaign.unpack(raw)

    def of_account(self, account: str) -> list[Campaign]:
        """Every campaign of ``account`` (a range read: definitions are keyed by account)."""
        prefix = account.encode() + b"\x00"
        out = []
        with self.store.read() as txn, txn.cursor(db=self.store.db(DEFS)) as cur:
            if cur.set_range(prefix):
                for key, raw in cur:
                    if not key.startswith(prefix):
                        break
                    out.append(Campaign.unpack(raw))
        return out

    def statistics(self, c: Campaign) -> dict[str, Any]:
        with self.store.read() as txn:
            n = counters(txn, self.store.db(COUNTERS), c.key)
        return statistics(c, n)

    def rows(self, account: str, name: str, start: int = 0, *, refs: bool = True
             ) -> Iterator[tuple[int, dict[str, Any], str]]:
        """(row number, staged recipient, msg_id or "!code: detail" or "") from ``start``,
        read in short snapshots (no transaction is held while the caller works)."""
        name = campaign_key(account, name)
        prefix = name.encode() + b"\x00"
        at = start
        while True:
            batch: list[tuple[int, dict[str, Any], str]] = []
            with self.store.read() as txn, txn.cursor(db=self.store.db(ROWS)) as cur:
                msgs = self.store.db(MSGS)
                if not cur.set_range(_key(name, at)):
                    return
                for key, value in cur:
                    if not key.startswith(prefix) or len(batch) >= 2000:
                        break
                    row = int.from_bytes(key[len(prefix):], "big")
                    ref = txn.get(key, db=msgs) if refs else None
                    batch.append((row, msgpack.unpackb(value, raw=False),
                                  ref.decode() if ref else ""))
            if not batch:
                return
            yield from batch
            at = batch[-1][0] + 1

    # ------------------------------------------------------------------- writing

    async def create(self, c: Campaign) -> Campaign:
        """Store a new campaign (checked: sender, template, shaping).

        Raises:
            CampaignError: 422 with the field problems, 409 if the account already has a
                campaign of that name.
        """
        errors = check(c)
        if errors:
            raise CampaignError(422, errors)
        c.created_at = c.created_at or self._now()
        data_name = c.key.encode()

        def op(txn: Any) -> bool:
            db = self.store.db(DEFS)
            return bool(txn.put(data_name, c.pack(), db=db, overwrite=False))

        if not await self.store.write(op):
            raise CampaignError(409, [("name", "a campaign with this name already exists")])
        self._remember(c)
        return c

    def op_create(self, txn: Any, c: Campaign) -> bool:
        """Create ``c`` inside a caller's transaction (the importer's); False if it exists."""
        c.created_at = c.created_at or self._now()
        return bool(txn.put(c.key.encode(), c.pack(), db=self.store.db(DEFS), overwrite=False))

    async def stage(self, account: str, name: str, rows: Iterable[Mapping[str, Any]], *,
                    also: Callable[[Any, int], None] | None = None, chunk: int = 5000) -> int:
        """Append recipient rows in durable chunks; returns how many were staged.

        ``also(txn, rows_in_chunk)`` runs in each chunk's transaction (the importer commits
        its file cursor there).

        Raises:
            CampaignError: 404 unknown campaign, 409 when it no longer takes rows.
        """
        total = 0
        batch: list[bytes] = []
        for row in rows:
            batch.append(msgpack.packb(dict(row), use_bin_type=True))
            if len(batch) >= chunk:
                total += await self._stage_chunk(account, name, batch, also)
                batch = []
        if batch or total == 0:
            total += await self._stage_chunk(account, name, batch, also)
        return total

    async def stage_batches(self, account: str, name: str,
                            batches: AsyncIterable[list[dict[str, Any]]], *,
                            offset: int | None = None, chunk: int = 2000) -> tuple[int, int]:
        """Stage rows as they arrive (lists of rows, e.g. per received chunk of a streamed
        upload), committing each ``chunk`` rows durably; returns (staged, skipped).

        ``offset``: the first row given is row ``offset`` of the campaign's list. Rows the
        campaign already has (below its staged count) are skipped, in the same transaction
        that stages the rest, so re-sending a list from its start after a dropped
        connection stages every row exactly once. None: append everything.

        Raises:
            CampaignError: 404 unknown campaign, 409 when it no longer takes rows or when
                ``offset`` is past the rows staged (a gap).
        """
        staged = skipped = 0
        at = offset
        batch: list[bytes] = []
        async for rows in batches:
            for row in rows:
                batch.append(msgpack.packb(row, use_bin_type=True))
            if len(batch) >= chunk:
                n = await self._stage_chunk(account, name, batch, None, at)
                staged, skipped = staged + n, skipped + len(batch) - n
                at = None if at is None else at + len(batch)
                batch = []
        if batch or staged + skipped == 0:
            n = await self._stage_chunk(account, name, batch, None, at)
            staged, skipped = staged + n, skipped + len(batch) - n
        return staged, skipped

    async def _stage_chunk(self, account: str, name: str, packed: list[bytes],
                           also: Callable[[Any, int], None] | None, first: int | None = None
                           ) -> int:
        def op(txn: Any) -> int:
            c = self._load(txn, account, name)
            if c.sealed or c.state in ("cancelled", "done"):
                reason = f"campaign is {c.state} and sealed; it takes no more recipients"
                raise CampaignError(409, [("recipients", reason)])
            nonlocal packed
            if first is not None:
                if first > c.rows:
                    gap = f"row {first} is past the {c.rows} rows staged: none may be missing"
                    raise CampaignError(409, [("offset", gap)])
                packed = packed[c.rows - first:]  # rows the campaign already has
            db = self.store.db(ROWS)
            for i, data in enumerate(packed):
                txn.put(_key(c.key, c.rows + i), data, db=db)
            c.rows += len(packed)
            self._save(txn, c)
            if also is not None:
                also(txn, len(packed))
            return len(packed)

        n = await self.store.write(op)
        return int(n)

    def _load(self, txn: Any, account: str, name: str) -> Campaign:
        raw = txn.get(campaign_key(account, name).encode(), db=self.store.db(DEFS))
        c = Campaign.unpack(raw) if raw is not None else None
        if c is None:
            raise CampaignError(404, [("id", f"no campaign named {name[:64]!r}")])
        return c

    def _save(self, txn: Any, c: Campaign) -> None:
        txn.put(c.key.encode(), c.pack(), db=self.store.db(DEFS))

    async def transition(self, account: str, name: str, action: str) -> Campaign:
        """``start`` (seal and schedule), ``pause``, ``resume`` or ``cancel``.

        Raises:
            CampaignError: 404, or 409 when the action does not apply in the current state.
        """
        now = self._now()

        def op(txn: Any) -> Campaign:
            c = self._load(txn, account, name)
            target = _next_state(c, action, now)
            if target is None:
                raise CampaignError(409, [("state", f"cannot {action} a {c.state} campaign")])
            if action == "start":
                c.sealed = True
                c.anchor = max(c.send_at, now)
            elif action == "pause":
                c.paused_at = now
            elif action == "resume":
                # not started yet: keep the schedule; started: shift what is left by the pause
                c.anchor = max(c.send_at, now) if c.cursor == 0 else c.anchor + now - c.paused_at
                c.paused_at = 0.0
            elif action == "cancel":
                remaining = c.rows - c.cursor
                if remaining:
                    _add(txn, self.store.db(COUNTERS), c.key, "cancelled_rows", remaining)
                c.finished_at = now
            c.state = target
            self._save(txn, c)
            return c

        async with self._lock(campaign_key(account, name)):
            c: Campaign = await self.store.write(op)
        if action == "cancel":
            await self._cancel_queued(c)
        self._remember(c)
        self._wake.set()
        return c

    async def _cancel_queued(self, c: Campaign) -> int:
        """End the campaign's accepted-but-unsent messages NOT_SENT ``cancelled``.

        They go through ``Gateway.finish`` like every other NOT_SENT decided inside Septet,
        so each gets its ``SMS_NOT_SENT`` event (persisted with its seq, counted for the
        campaign) and the notifier sends it upstream. SENT and final messages are skipped
        here, and a message that moves on before the finish is applied is refused by the store.
        """
        finish = getattr(self.gateway, "finish", None)
        if finish is None:
            return 0
        done = 0
        batch: list[MessageFinished] = []
        db_state = self.store.db(b"state")
        for _, _, ref in self.rows(c.account, c.name):
            if not ref or ref.startswith("!"):
                continue
            with self.store.read() as txn:
                raw = txn.get(ref.encode(), db=db_state)
            if raw is None:
                continue
            state = msgpack.unpackb(raw, raw=False)[0]
            if state in FINAL_STATES or state == State.SENT:
                continue
            batch.append(MessageFinished(MsgId(ref), State.NOT_SENT.value, "cancelled",
                                         "the campaign was cancelled", self._now()))
            if len(batch) >= 1000:
                await finish(batch)
                done += len(batch)
                batch = []
        if batch:
            await finish(batch)
            done += len(batch)
        return done

    # ------------------------------------------------------------------- runner

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
            delay = self.poll if wake_at is None else max(0.0, min(5.0, wake_at - self._now()))
            with trio.move_on_after(delay):
                await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()

    async def step(self) -> float | None:
        """One pass over the active campaigns; returns the earliest time work is due."""
        due: float | None = None
        with self.store.read() as txn, txn.cursor(db=self.store.db(DEFS)) as cur:
            every = [Campaign.unpack(v) for _, v in cur]
        for c in every:
            # what another process did (septet import created it; another worker paused,
            # resumed or cancelled it) reaches this process's rate limiter within a pass
            self._remember(c)
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
        async with self._lock(campaign_key(account, name)):
            while True:
                with self.store.read() as txn:
                    c = self._load(txn, account, name)
                now = self._now()
                if c.state not in ACTIVE:
                    return None
                if c.state == "scheduled" and now + self.lead >= (c.anchor or c.send_at):
                    c = await self._set_state(c, "running")
                allowed, _ = c.allowed(now, self.lead)
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
            return None if c.sealed else self._now() + self.poll
        start = c.anchor or c.send_at
        size = c.slice_size()
        if size and c.slice_every:
            return start + (c.cursor // size) * c.slice_every - self.lead
        return start - self.lead

    def _all_final(self, c: Campaign) -> bool:
        with self.store.read() as txn:
            n = counters(txn, self.store.db(COUNTERS), c.key)
        final = n.get("SMS_DELIVERED", 0) + n.get("SMS_NOT_DELIVERED", 0) + n.get("SMS_NOT_SENT", 0)
        return final >= n.get("accepted", 0)

    async def _set_state(self, c: Campaign, state: str) -> Campaign:
        def op(txn: Any) -> Campaign:
            cur = self._load(txn, c.account, c.name)
            if cur.state in ACTIVE:
                cur.state = state
                if state == "done":
                    cur.finished_at = self._now()
                self._save(txn, cur)
            return cur

        return await self.store.write(op)  # type: ignore[no-any-return]

    async def _expand_all(self, c: Campaign, allowed: int, now: float) -> None:
        """Expand rows ``[c.cursor, allowed)`` in chunks, building the next chunk while the
        previous one commits (at most ``depth`` commits in flight). Each commit checks that
        the cursor is where its chunk starts, so chunks land in order or not at all."""
        tpl = c.template_obj()
        rows = self.rows(c.account, c.name, c.cursor, refs=False)
        saturated: list[BaseException] = []
        room = trio.Semaphore(3)
        async with trio.open_nursery() as nursery:
            start = c.cursor
            while start < allowed and not saturated:
                stop = min(allowed, start + self.chunk)
                work = self._build(c, tpl, rows, start, stop, now)
                await room.acquire()
                nursery.start_soon(self._commit, c, start, stop, work, room, saturated)
                start = stop
                await trio.lowlevel.checkpoint()
        if saturated:
            raise saturated[0]

    def _build(self, c: Campaign, tpl: Template, rows: Iterator[tuple[int, dict[str, Any], str]],
               start: int, stop: int, now: float
               ) -> tuple[list[Message], list[tuple[int, bytes]], dict[str, int]]:
        messages: list[Message] = []
        refs: list[tuple[int, bytes]] = []
        refused: dict[str, int] = {}
        size, first = c.slice_size(), c.anchor or c.send_at
        sliced = bool(size and c.slice_every)
        numbers, ids = self.numbers, self._ids
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

    async def _commit(self, c: Campaign, start: int, stop: int,
                      work: tuple[list[Message], list[tuple[int, bytes]], dict[str, int]],
                      room: trio.Semaphore, saturated: list[BaseException]) -> None:
        messages, refs, refused = work
        name, store = c.key, self.store

        def also(txn: Any) -> None:
            cur = self._load(txn, c.account, c.name)
            if cur.cursor != start or cur.state not in ACTIVE:
                raise _Moved()
            db = store.db(MSGS)
            for row, ref in refs:
                txn.put(_key(name, row), ref, db=db)
            counters_db = store.db(COUNTERS)
            for code, n in refused.items():
                _add(txn, counters_db, name, "invalid", n)
                _add(txn, counters_db, name, f"invalid:{code}", n)
            cur.cursor = stop
            self._save(txn, cur)

        try:
            if messages:
                await self.gateway.accept(messages, also=also)
            else:
                await store.write(also)
        except _Moved:
            pass
        except Saturated as exc:
            saturated.append(exc)
        finally:
            room.release()


class _Moved(Exception):
    """The campaign changed under an expansion (paused, cancelled, or expanded elsewhere)."""


_TRANSITIONS: Final = {
    ("draft", "start"): "scheduled",
    ("scheduled", "pause"): "paused",
    ("running", "pause"): "paused",
    ("paused", "resume"): "scheduled",
    ("draft", "cancel"): "cancelled",
    ("scheduled", "cancel"): "cancelled",
    ("running", "cancel"): "cancelled",
    ("paused", "cancel"): "cancelled",
}


def _next_state(c: Campaign, action: str, now: float) -> str | None:
    return _TRANSITIONS.get((c.state, action))
