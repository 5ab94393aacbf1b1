"""Coalesce concurrent submissions into one ``Gateway.accept`` call.

While one accept is committing (an fsync takes milliseconds), requests keep arriving; each
would otherwise become its own store op and its own one-message batch through every pipeline
stage. Here they wait together, and when the commit in progress returns, all waiting
submissions go in ONE accept: one store op, one transaction, one batch for the pump —
DESIGN.md §1's "channel items are batches" applied at the door. Under light load a request
finds nobody committing and goes alone at once, so latency does not grow.

The caller that finds no accept running leads: it takes everything pending, accepts it, hands
each waiter its outcome, and, if more piled up meanwhile, passes the lead to the next waiter.
The accept is shielded from cancellation (a commit already under way finishes; the store
bounds it), so one request's cancellation never decides the fate of the others. A failure
(Saturated, StoreError) is every member's failure: nothing of the group was committed.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio


class _Waiter:
    __slots__ = ("also", "done", "error", "lead", "messages")

    def __init__(self, messages: Sequence[Any], also: Callable[[Any], None] | None) -> None:
        self.messages = messages
        self.also = also
        self.done = trio.Event()
        self.error: BaseException | None = None
        self.lead = False


class AcceptBatcher:
    """``await batcher.accept(messages, also=op)`` with the semantics of ``Gateway.accept``."""

    def __init__(self, gateway: Any, *, max_messages: int = 5000, gather: float = 0.002,
                 gather_below: int = 64) -> None:
        self._gateway = gateway
        self._max = max_messages
        # Under load (a group handed on by the commit just finished) that holds fewer than
        # ``gather_below`` messages waits ``gather`` seconds for more: a commit costs ~0.5 ms
        # of CPU (thread hand-off, LMDB commit, fsync), so at a few thousand single-message
        # requests/s a 2 ms wait halves the commits. A request arriving at an idle batcher
        # never waits.
        self._gather = gather
        self._gather_below = gather_below
        self._pending: list[_Waiter] = []
        self._busy = False
        self.groups = 0  # accept calls made (statistics)
        self.requests = 0  # submissions they carried

    async def accept(self, messages: Sequence[Any], also: Callable[[Any], None] | None = None
                     ) -> None:
        waiter = _Waiter(messages, also)
        self._pending.append(waiter)
        if self._busy:
            try:
                await waiter.done.wait()
            except BaseException:
                if waiter.lead:  # others wait on the group this caller was to lead
                    with trio.CancelScope(shield=True):
                        await self._lead(handed_on=True)
                elif waiter in self._pending:
                    self._pending.remove(waiter)
                raise
            if not waiter.lead:
                if waiter.error is not None:
                    raise waiter.error
                return
        else:
            self._busy = True
            if len(self._pending) == 1:
                # Alone: nobody else's messages ride on this accept, so no shield is needed;
                # whoever arrives meanwhile waits in _pending and is handed the lead after.
                await self._lead()
                if waiter.error is not None:
                    raise waiter.error
                return
        with trio.CancelScope(shield=True):
            await self._lead(handed_on=waiter.lead)
        if waiter.error is not None:
            raise waiter.error

    async def _lead(self, handed_on: bool = False) -> None:
        if handed_on and self._gather > 0 and \
                sum(len(w.messages) for w in self._pending[:self._gather_below]) < self._gather_below:
            await trio.sleep(self._gather)
        group: list[_Waiter] = []
        total = 0
        while self._pending and (not group or total + len(self._pending[0].messages) <= self._max):
            w = self._pending.pop(0)
            group.append(w)
            total += len(w.messages)
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
                w.done.set()
            if self._pending:
                nxt = self._pending[0]
                nxt.lead = True
                nxt.done.set()  # it leads the next group (and will find itself in it)
            else:
                self._busy = False

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
