"""The interfaces actors depend on. The consumer owns them; adapters satisfy them structurally.

A ``Carrier`` is what the dispatcher submits to and what feeds the receipt correlator. It is
deliberately batch-shaped: ``submit_many`` takes every part that is ready and returns one
result per part, in order, so a connector can keep its window full (SMPP pipelines up to its
window) and the dispatcher pays one await per batch rather than one per part.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from actors.messages import CarrierReceipt, SubmitPart


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of one submitted part.

    Exactly one of ``carrier_id`` (accepted) or ``error`` (refused) is set. ``transient``
    says a retry may succeed (throttled, window timeout, connection lost). ``in_doubt`` says
    the part may have reached the carrier although no answer came back (the connection dropped
    with it in the window): a retry can duplicate it, and that is counted.
    """

    carrier_id: str = ""
    error: str = ""
    code: str = ""
    transient: bool = False
    in_doubt: bool = False

    @property
    def ok(self) -> bool:
        return not self.error


ReceiptSink = Callable[[Sequence[CarrierReceipt]], Awaitable[None]]
"""Called by a connector with receipts; returns once they are durably stored.

A connector acknowledges receipts to the carrier (deliver_sm_resp, HTTP 200) only after the
sink returns, so a crash between the two makes the carrier send the receipt again rather than
losing it.
"""


class Carrier(Protocol):
    """A connector to one carrier (SMPP bind set, HTTP provider or the simulator)."""

    @property
    def name(self) -> str:
        """Connector name, used in metrics labels and stored with every carrier id."""
        ...

    @property
    def ready(self) -> bool:
        """True while the connector can submit (bound, reachable)."""
        ...

    async def run(
        self,
        receipts: ReceiptSink,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep the connection up (reconnecting with back-off) and feed receipts to ``receipts``.

        Reports started once the first connection attempt has been made; runs until cancelled.
        """
        ...

    async def submit_many(self, parts: Sequence[SubmitPart]) -> list[SubmitResult]:
        """Submit ``parts`` and return one result per part, in the same order.

        Never raises for a per-part outcome: throttling, rejections, timeouts and a lost
        connection come back as results. Every part has a deadline.
        """
        ...


class RecentContacts(Protocol):
    """Who was sent to lately, for the "no re-contact within N hours" rule (the store implements it)."""

    def last_contacted(self, account: str, number: str) -> float | None:
        """Unix time of the last SENT to ``number`` for ``account``, or None. A cheap inline read."""
        ...
