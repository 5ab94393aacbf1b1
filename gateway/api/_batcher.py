"""Coalesce concurrent submissions into few ``Gateway.accept`` calls.

While an accept is committing (a store round trip takes milliseconds), requests keep arriving;
each would otherwise become its own store op and its own one-message batch through every
pipeline stage. Here they wait together and go in ONE accept: one store op, one batch for
the pump — DESIGN.md §1's "channel items are batches" applied at the door. Under light load a
request finds nothing in flight and goes alone at once, so latency does not grow.

Up to ``max_in_flight`` accepts run at once (a slot each). A request that finds every slot
idle leads a group of itself at once. One that finds a slot free while another accept is in
flight leads a new group too, but first gathers ``gather`` seconds of arrivals into it. One
that finds every slot taken waits; when an accept returns, its leader forms the next group of
everything waiting and hands the slot to that group's first member, which leads it. With one
slot, N closed-loop clients settle into two cohorts of N/2 each, one committing while the
other waits for it, so every answer costs up to two store round trips; a second slot lets the
waiting cohort go while the first commits, and the store's writer still puts whatever is
queued in one transaction.

The accept is shielded from cancellation once anyone else's messages ride on it (a commit
already under way finishes; the store bounds it), so one request's cancellation never decides
the fate of the others. A failure (Saturated, StoreError) is every member's failure: nothing
of the group was committed.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio


class _Waiter:
    """One submission in the batcher, and its own wake-up: ``set`` when its group returned, or
    when it is handed a group to lead. (A ``trio.Event`` per submission, with its parking lot,
    cost ~3 µs more per request than parking the task directly.)"""

    __slots__ = ("also", "error", "fired", "group", "messages", "task")

    def __init__(self, messages: Sequence[Any], also: Callable[[Any], None] | None) -> None:
        self.messages = messages
        self.also = also
        self.error: BaseException | None = None
        self.group: list[_Waiter] | None = None  # the group it was handed to lead
        self.fired = False
        self.task: trio.lowlevel.Task | None = None  # parked in wait(), until set() or cancelled

    def set(self) -> None:
        self.fired = True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        """Until :meth:`set` (a checkpoint either way, as ``trio.Event.wait``)."""
        if self.fired:
            await trio.lowlevel.checkpoint()
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class AcceptBatcher:
    """``await batcher.accept(messages, also=op)`` with the semantics of ``Gateway.accept``."""

    def __init__(self, gateway: Any, *, max_messages: int = 5000, gather: float = 0.002,
                 gather_below: int = 64, max_in_flight: int = 2) -> None:
        self._gateway = gateway
        self._max = max_messages
        # Under load (a group formed while another accept is in flight) that holds fewer than
        # ``gather_below`` messages waits ``gather`` seconds for more: a commit costs ~0.5 ms
        # of CPU (thread hand-off, LMDB commit, fsync), so at a few thousand single-message
        # requests/s a 2 ms wait halves the commits. A request arriving at an idle batcher
        # never waits.
        self._gather = gather
        self._gather_below = gather_below
        self._max_in_flight = max(1, max_in_flight)
        self._pending: list[_Waiter] = []
        self._pending_messages = 0
        self._in_flight = 0  # slots taken: accepts running, or groups gathering for one
        self.groups = 0  # accept calls made (statistics)
        self.requests = 0  # submissions they carried

    async def accept(self, messages: Sequence[Any], also: Callable[[Any], None] | None = None
                     ) -> None:
        waiter = _Waiter(messages, also)
        if self._in_flight == 0:
            # Idle: nobody else's messages ride on this accept, so no shield is needed;
            # whoever arrives meanwhile takes the other slot or waits in _pending.
            self._in_flight = 1
            await self._lead([waiter], gather=False)
        elif self._in_flight < self._max_in_flight:
            self._in_flight += 1
            try:
                # Alone in its group until the gathering ends: a cancellation drops only it.
                if self._gather > 0 and len(messages) + self._pending_messages < self._gather_below:
                    await trio.sleep(self._gather)
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                self._hand_on()
                raise
            with trio.CancelScope(shield=True):  # those it takes now ride on its accept
                await self._lead([waiter], gather=False)
        else:
            self._pending.append(waiter)
            self._pending_messages += len(messages)
            try:
                await waiter.wait()
            except BaseException:
                if waiter.group is not None:  # others wait on the group it was handed
                    with trio.CancelScope(shield=True):
                        await self._lead(waiter.group, gather=True)
                elif waiter in self._pending:
                    self._pending.remove(waiter)
                    self._pending_messages -= len(messages)
                raise
            if waiter.group is not None:
                with trio.CancelScope(shield=True):
                    await self._lead(waiter.group, gather=True)
        if waiter.error is not None:
            raise waiter.error

    def _take(self, group: list[_Waiter], total: int) -> int:
        """Move waiting requests into ``group`` (in arrival order, up to ``max_messages``,
        at least one when it is empty); returns its message count."""
        pending = self._pending
        n = 0
        while n < len(pending) and (not group or total + len(pending[n].messages) <= self._max):
            group.append(pending[n])
            total += len(pending[n].messages)
            n += 1
        if n:
            del pending[:n]
            self._pending_messages -= sum(len(w.messages) for w in group[-n:])
        return total

    async def _lead(self, group: list[_Waiter], *, gather: bool) -> None:
        """Run ``group``'s accept in the slot this caller holds, then hand the slot on."""
        total = sum(len(w.messages) for w in group)
        if gather and self._gather > 0 and total + self._pending_messages < self._gather_below:
            await trio.sleep(self._gather)
        self._take(group, total)
        alsos = [w.also for w in group if w.also is not None]
        try:
            await self._call([m for w in group for m in w.messages], alsos)
        except Exception as exc:  # noqa: BLE001 - every member's outcome, re-raised by each
            for w in group:
                w.error = exc
        finally:
            self.groups += 1
            self.requests += len(group)
            for w in group:
                w.set()
            self._hand_on()

    def _hand_on(self) -> None:
        """Give up this caller's slot: to the next group of what waits, or free it."""
        if self._pending:
            nxt: list[_Waiter] = []
            self._take(nxt, 0)
            nxt[0].group = nxt
            nxt[0].set()  # it leads the next group in this slot
        else:
            self._in_flight -= 1

    async def _call(self, messages: list[Any], alsos: list[Callable[[Any], None]]) -> None:
        if not alsos:
            await self._gateway.accept(messages)
        elif len(alsos) == 1:
            await self._gateway.accept(messages, also=alsos[0])
        else:
            def also(txn: Any) -> None:
                for op in alsos:
                    op(txn)
            await self._gateway.accept(messages, also=also)
