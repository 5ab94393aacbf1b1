"""The interfaces actors depend on. The consumer owns them; adapters satisfy them structurally.

A ``Carrier`` is what the dispatcher submits to and what feeds the receipt correlator. It is
deliberately batch-shaped: ``submit_many`` takes every part that is ready and returns one
result per part, in order, so a connector can keep its window full (SMPP pipelines up to its
window) and the dispatcher pays one await per batch rather than one per part.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import trio

from actors.messages import CarrierReceipt, Kind, Message, MsgId, StatusEvent, SubmitPart


class SubmitResult(NamedTuple):
    """What became of one submitted part.

    Exactly one of ``carrier_id`` (accepted) or ``error`` (refused) is set. ``transient``
    says a retry may succeed (throttled, window timeout, connection lost). ``in_doubt`` says
    the part may have reached the carrier although no answer came back (the connection dropped
    with it in the window): a retry can duplicate it, and that is counted. A NamedTuple, as
    the message kinds are: one is built per part submitted, and a frozen dataclass costs
    ~0.7 µs to build against ~0.25.
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


class OptOuts(Protocol):
    """Numbers an account must not send to: its opt-out (suppression) list. The gateway
    implements it (gateway/optouts.py)."""

    def opted_out(self, account: str, number: str) -> bool:
        """Whether ``number`` opted out of ``account``'s messages. A cheap inline read, and no
        read at all for an account without opt-outs: it is asked for every message."""
        ...


# --------------------------------------------------------------------------------------------
# Status callbacks (notifier, issue 7). gateway.callbacks / gateway.callback_outbox satisfy these.


class CallbackEntry(NamedTuple):
    """One pending callback as the callback outbox holds it.

    ``key`` is the outbox's own key (opaque to the notifier). ``attempt`` counts the attempts
    already made; ``first_attempt_at`` is when the callback became deliverable (its retry
    window starts there). A NamedTuple, as ``SubmitResult`` is: one is built per callback
    read from the outbox, and a frozen dataclass costs about twice as much to build.
    """

    key: bytes
    event: StatusEvent
    attempt: int
    first_attempt_at: float
    due: float


@dataclass(frozen=True, slots=True)
class CallbackResult:
    """What one callback request came to. A sender never raises for a per-request outcome.

    ``permanent`` means retrying cannot help (the URL is refused, 410 Gone); ``retry_after``
    is the receiver's Retry-After in seconds (0 when none).
    """

    ok: bool
    status: int = 0
    error: str = ""
    permanent: bool = False
    retry_after: float = 0.0


SettleOutcome = Literal["delivered", "retry", "postpone", "dead", "dropped"]


class Settlement(NamedTuple):
    """The notifier's decision about one entry, recorded by :meth:`CallbackOutbox.settle`.

    ``delivered``/``dropped``/``dead`` end the entry (``dead`` keeps it in the dead-letter list)
    and release the message's next event; ``retry`` reschedules it at ``at`` counting one more
    attempt; ``postpone`` reschedules it at ``at`` without counting an attempt (breaker open).
    A NamedTuple: one is built per callback settled.
    """

    entry: CallbackEntry
    outcome: SettleOutcome
    at: float = 0.0
    error: str = ""


class CallbackOutbox(Protocol):
    """The durable callback outbox. Per message, only the lowest pending seq is ever due."""

    async def enqueue(self, events: Sequence[StatusEvent], *, now: float) -> int:
        """Store ``events`` durably in one write, idempotent per (msg_id, seq); returns how many were new."""
        ...

    def due(self, now: float, *, limit: int, skip: Container[bytes] = ()) -> list[CallbackEntry]:
        """Up to ``limit`` entries due at ``now``, in due order, leaving out keys in ``skip``. Inline read."""
        ...

    def next_due_after(self, now: float) -> float | None:
        """The due time of the first entry due after ``now``, or None. Inline read."""
        ...

    async def settle(self, settlements: Sequence[Settlement], *, now: float) -> None:
        """Record decisions about entries in one durable write."""
        ...


class CallbackSender(Protocol):
    """Sends callbacks to one URL: one event as a JSON object, several as a JSON array."""

    async def send(self, url: str, secret: bytes, events: Sequence[StatusEvent]) -> CallbackResult:
        """POST ``events`` to ``url`` signed with ``secret``. The caller applies the deadline."""
        ...


# -------------------------------------------------------------------------------------------
# The pipeline's view of the durable store (gateway/_store_pipeline.py implements it). Actors
# never see LMDB; these are the operations they need, each durable when it returns.

InDoubtPolicy = Literal["resend", "mark_unknown"]
"""What recovery does with a part that was handed to a carrier when the process died."""


@dataclass(slots=True)
class Applied:
    """What one correlation batch did: events persisted (in order) and ids leaving the outbox."""

    event_rows: list[list[Any]] = field(default_factory=list)  # StatusEvent wire rows
    released: list[MsgId] = field(default_factory=list)
    matched: int = 0
    duplicates: int = 0
    unknown: int = 0
    orphans_parked: int = 0
    orphans_matched: int = 0
    illegal: int = 0
    ignored: int = 0
    receipt_lags: list[float] = field(default_factory=list)  # per matched receipt: seconds
    # since its part's submit response was recorded

    @property
    def events(self) -> list[StatusEvent]:
        """The events as values (the rows are kept as wire lists: the hot path only encodes)."""
        from actors.messages import from_wire

        return [from_wire(r) for r in self.event_rows]  # type: ignore[misc]


@dataclass(slots=True)
class Recovered:
    """What start-up recovery found: parts in doubt and events of messages it finished."""

    in_doubt: int = 0
    events: list[StatusEvent] = field(default_factory=list)


class PipelineStore(Protocol):
    """Durable operations of ingress, the scheduler pump, the dispatcher and the correlator."""

    async def accept(self, batch: Sequence[Message], also: Callable[[Any], None] | None = None) -> None:
        """Store accepted messages (state ACCEPTED, outbox entry); durable on return."""
        ...

    def read_due(
        self, cursor: bytes, now: float, limit: int, skip: set[str]
    ) -> tuple[Sequence[Message], bytes, float | None]:
        """Due outbox entries from ``cursor`` on: (messages, next cursor, next due time)."""
        ...

    def outbox_size(self) -> int:
        """Messages waiting in the outbox (not yet SENT or final)."""
        ...

    async def mark_submitting(self, parts: Sequence[SubmitPart], now: float) -> list[bool]:
        """Mark parts SUBMITTING before they go to a carrier; False: do not send that part."""
        ...

    async def apply(self, items: Sequence[Kind], now: float) -> Applied:
        """Persist submit outcomes, receipts and finished messages in one commit; return what
        it decided (events, released ids, counts)."""
        ...

    def timeouts_due(self, now: float, limit: int) -> list[MsgId]:
        """SENT messages whose receipt wait is over."""
        ...

    async def expire_orphans(self, older_than: float, limit: int) -> int:
        """Move orphan receipts parked before ``older_than`` to the unknown receipts."""
        ...

    async def recover(self, policy: InDoubtPolicy, now: float) -> Recovered:
        """Settle parts that were in flight when the process stopped."""
        ...

    def last_contacted(self, account: str, number: str) -> float | None:
        """RecentContacts: last SENT time to ``number`` for ``account``."""
        ...
