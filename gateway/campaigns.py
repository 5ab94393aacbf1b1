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

Layout: this module is the service (reading, creating, transitions, cancelling queued
messages); gateway._campaign_staging appends rows, gateway._campaign_runner expands them,
gateway._campaign_model holds the record, ``expand_row``, counters and templates storage.

Must not import: gateway.http; from gateway.api only the message id factory (gateway.api._ids).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import msgpack
import trio

from actors.messages import FINAL_STATES, MessageFinished, MsgId, State
from actors.shaping import CampaignRules
from gateway._campaign_model import (
    COUNTERS,
    DEFS,
    MSGS,
    ROWS,
    STATES,
    TEMPLATES,
    Campaign,
    CampaignError,
    LiveRules,
    RowRefused,
    TemplateBook,
    add_counter,
    campaign_key,
    check,
    counters,
    expand_row,
    limiter_rules,
    load_campaign,
    prefixed,
    row_key,
    save_campaign,
    statistics,
)
from gateway._campaign_runner import Runner
from gateway._campaign_staging import stage, stage_batches
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
        self.chunk = chunk
        self.lead = lead
        self.poll = poll
        self._runner = Runner(self, now=now)
        self._table: dict[str, CampaignRules] = {}
        self.rules: Mapping[str, CampaignRules] = LiveRules(self._table)
        self._locks: dict[str, trio.Lock] = {}
        with store.read() as txn, txn.cursor(db=store.db(DEFS)) as cur:
            for _, raw in cur:
                self._remember(Campaign.unpack(raw))

    def bind(self, gateway: Any) -> None:
        """Set the gateway the runner hands messages to (built after this service)."""
        self.gateway = gateway

    def _remember(self, c: Campaign) -> None:
        """Bring ``c``'s entry of the rate limiter's table (:attr:`rules`) up to date."""
        rules = limiter_rules(c)
        if rules is None:
            self._table.pop(c.key, None)
        else:
            self._table[c.key] = rules

    def _lock(self, account: str, name: str) -> trio.Lock:
        """The lock that serialises transitions and expansion of one campaign."""
        key = campaign_key(account, name)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = trio.Lock()
        return lock

    # ------------------------------------------------------------------- runner

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Expand active campaigns as their schedule and slices allow, until cancelled
        (:meth:`gateway._campaign_runner.Runner.run`)."""
        await self._runner.run(task_status=task_status)

    async def step(self) -> float | None:
        """One runner pass over the active campaigns; returns when work is next due."""
        return await self._runner.step()

    def wake(self) -> None:
        """Have the runner pass now (rows staged, a campaign started or resumed)."""
        self._runner.wake()

    # ------------------------------------------------------------------- reading

    def get(self, account: str, name: str) -> Campaign | None:
        """The campaign ``name`` of ``account`` (names are per account)."""
        with self.store.read() as txn:
            raw = txn.get(campaign_key(account, name).encode(), db=self.store.db(DEFS))
        return None if raw is None else Campaign.unpack(raw)

    def of_account(self, account: str) -> list[Campaign]:
        """Every campaign of ``account`` (a range read: definitions are keyed by account)."""
        with self.store.read() as txn:
            return [Campaign.unpack(raw) for _, raw in
                    prefixed(txn, self.store.db(DEFS), account.encode() + b"\x00")]

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
                if not cur.set_range(row_key(name, at)):
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
        """Append rows in durable chunks (:func:`gateway._campaign_staging.stage`)."""
        return await stage(self.store, account, name, rows, also=also, chunk=chunk)

    async def stage_batches(self, account: str, name: str,
                            batches: AsyncIterable[list[dict[str, Any]]], *,
                            offset: int | None = None, chunk: int = 2000) -> tuple[int, int]:
        """Stage rows as they arrive, resuming at ``offset``; (staged, skipped)
        (:func:`gateway._campaign_staging.stage_batches`)."""
        return await stage_batches(self.store, account, name, batches, offset=offset,
                                   chunk=chunk)

    async def transition(self, account: str, name: str, action: str) -> Campaign:
        """``start`` (seal and schedule), ``pause``, ``resume`` or ``cancel``.

        Raises:
            CampaignError: 404, or 409 when the action does not apply in the current state.
        """
        now = self._now()

        def op(txn: Any) -> Campaign:
            c = load_campaign(txn, self.store, account, name)
            target = _TRANSITIONS.get((c.state, action))
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
                    add_counter(txn, self.store.db(COUNTERS), c.key, "cancelled_rows", remaining)
                c.finished_at = now
            c.state = target
            save_campaign(txn, self.store, c)
            return c

        async with self._lock(account, name):
            c: Campaign = await self.store.write(op)
        if action == "cancel":
            await self._cancel_queued(c)
        self._remember(c)
        self._runner.wake()
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


_TRANSITIONS: Final = {  # (state, action) -> state; see the diagram above
    ("draft", "start"): "scheduled",
    ("scheduled", "pause"): "paused",
    ("running", "pause"): "paused",
    ("paused", "resume"): "scheduled",
    ("draft", "cancel"): "cancelled",
    ("scheduled", "cancel"): "cancelled",
    ("running", "cancel"): "cancelled",
    ("paused", "cancel"): "cancelled",
}
