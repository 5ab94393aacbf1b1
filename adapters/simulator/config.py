"""The simulator's configuration and the counters it keeps (pure data, no I/O).

``SimulatorStats`` counts every submit_sm received and accepted, keyed by what identifies a
part on the wire (destination, short_message or message_payload, SAR reference and
sequence), so tests and the benchmark can prove that nothing was lost or duplicated.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from adapters.simulator.mo import MoPart
from adapters.smpp import status as st

IdFormat = Literal["decimal", "hex", "hex-resp-decimal-receipt"]
MoConcat = Literal["udh", "sar"]
Receipt = tuple[str, str, str, bytes, float, str]
"""(receipt id, source, destination, text head, submitted at, stat): a receipt to send."""
Delivery = Receipt | MoPart
"""What the simulator sends as deliver_sm: a receipt or a mobile-originated part."""
PartKey = tuple[str, bytes, int, int]
"""(destination_addr, short_message or message_payload, sar_msg_ref_num, sar_segment_seqnum)."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How the simulated SMSC behaves. Every probability is per submit_sm, in [0, 1].

    Attributes:
        system_id / password: credentials to accept; empty accepts anyone.
        latency / latency_jitter: submit_sm_resp sent ``latency + U(0, jitter)`` s after the
            submit_sm arrives (0 answers in the same write as other work).
        window: most submit_sm awaiting their response (beyond it ESME_RMSGQFUL) and most
            deliver_sm awaiting deliver_sm_resp (beyond it receipts wait).
        max_submit_rate: submit_sm accepted per second across all binds; above it the answer
            is ESME_RTHROTTLED (0 = no cap). ``burst`` is the bucket depth in submits.
        receipt_delay_min / receipt_delay_max: a receipt is sent ``U(min, max)`` s after the
            submit was accepted.
        outcomes: (stat, weight) pairs for receipts: DELIVRD, UNDELIV, EXPIRED, REJECTD...
        submit_error_rate / submit_error_status: refuse that share of submits with that status.
        disconnect_rate: drop the connection on that share of submits (before answering).
        id_format: message ids in decimal, hex, or hex in submit_sm_resp and decimal in the
            receipt (the same number; seen on real SMSCs).
        id_start: first message id.
        receipt_tlvs: add receipted_message_id, message_state, network_error_code.
        redeliver_after: a deliver_sm not acknowledged within this many seconds is resent.
        mo_reply: when set, a handset answers each message it receives (on its last part) with
            this text as a mobile-originated deliver_sm to the submit's sender, on the
            submitting bind when it is a transceiver; "" sends no MO. A long or non-GSM text
            goes as concatenated GSM 7-bit or UCS-2 parts.
        mo_numbers: the handsets that answer (destination_addr of the submit); () = all.
        mo_packed_gsm7 / mo_concat: how MO parts are written: packed septets; UDH or SAR.
        mo_delay: seconds between the submit and its MO reply.
        seed: seeds the random generator (same seed, same run).
    """

    system_id: str = ""
    password: str = ""
    latency: float = 0.0
    latency_jitter: float = 0.0
    window: int = 1000
    max_submit_rate: float = 0.0
    burst: int = 0
    receipts: bool = True
    receipt_delay_min: float = 0.0
    receipt_delay_max: float = 0.0
    outcomes: tuple[tuple[str, float], ...] = (("DELIVRD", 1.0),)
    submit_error_rate: float = 0.0
    submit_error_status: int = st.ESME_RINVDSTADR
    disconnect_rate: float = 0.0
    id_format: IdFormat = "decimal"
    id_start: int = 1
    receipt_tlvs: bool = True
    redeliver_after: float = 30.0
    mo_reply: str = ""
    mo_numbers: tuple[str, ...] = ()
    mo_packed_gsm7: bool = False
    mo_concat: MoConcat = "udh"
    mo_delay: float = 0.0
    seed: int = 0


@dataclass(slots=True)
class SimulatorStats:
    """Everything the simulator saw. ``received``/``accepted`` count per part key."""

    connections: int = 0
    binds: int = 0
    bind_failures: int = 0
    submits_received: int = 0
    submits_accepted: int = 0
    submits_throttled: int = 0
    submits_rejected: int = 0
    submits_unanswered: int = 0
    disconnects_injected: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0
    receipts_redelivered: int = 0
    mo_sent: int = 0  # MO deliver_sm written (a part sent again counts again)
    mo_acked: int = 0
    mo_redelivered: int = 0  # MO parts refused or unanswered, sent again
    mo_refused: int = 0  # MO parts refused for good (ESME_RX_P_APPN): not sent again
    enquire_links: int = 0
    generic_nacks_sent: int = 0
    unbinds: int = 0
    peak_pending_responses: int = 0  # most submit_sm awaiting a delayed answer on one bind
    reads: int = 0  # socket reads that brought data (how the ESME's writes arrive, coalesced)
    writes: int = 0  # send_all calls (answers and receipts go out together)
    received: Counter[PartKey] = field(default_factory=Counter)
    accepted: Counter[PartKey] = field(default_factory=Counter)

    def duplicates(self) -> int:
        """Accepted parts beyond the first for the same key."""
        return sum(n - 1 for n in self.accepted.values() if n > 1)

    def statistics(self) -> dict[str, int]:
        """The plain counters (JSON-ready), plus ``distinct_accepted`` and ``duplicates``."""
        out = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("received", "accepted")
        }
        out["distinct_accepted"] = len(self.accepted)
        out["duplicates"] = self.duplicates()
        return out


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``depth`` saved; ``take(now)`` spends one."""

    rate: float
    depth: float
    tokens: float = 0.0
    last: float = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.depth, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass(slots=True)
class SimulatorState:
    """What all the connections of one simulator share: config, counters, ids, RNG, bucket."""

    config: SimulatorConfig
    stats: SimulatorStats = field(default_factory=SimulatorStats)
    wall: Callable[[], float] = time.time
    next_id: int = 0
    bucket: TokenBucket | None = None
    rng: random.Random = field(default_factory=random.Random)
    # receipts not acknowledged when their connection ended, per system_id: sent on the
    # next receiving bind, as an SMSC stores receipts for an ESME that is away
    held: dict[str, list[Delivery]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next_id = self.config.id_start
        self.rng.seed(self.config.seed)
        if self.config.max_submit_rate > 0:
            rate = self.config.max_submit_rate
            depth = self.config.burst or max(1.0, rate / 10)
            self.bucket = TokenBucket(rate, depth, depth, 0.0)

    def allocate_id(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n
