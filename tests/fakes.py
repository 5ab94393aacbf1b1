"""Test fakes: a scripted in-process Carrier (accepts, throttles, rejects, delivers, fails).

``ScriptedCarrier`` satisfies ``actors.ports.Carrier`` structurally (checked below by a typed
assignment). A *script* decides each part's fate from the part and its attempt number:

    accept / deliver   accepted with a carrier id; a DELIVRD receipt follows
    fail               accepted; an UNDELIV receipt (error code 001) follows
    silent             accepted; no receipt ever (for receipt timeouts)
    throttle           transient refusal, code "throttled" (0x58)
    transient          transient refusal, code "timeout", in doubt
    reject             permanent refusal, code "0x0000000B" (invalid destination)

Carrier ids are numbers; ``hex_ids`` makes the submit response say ``0x…`` in upper case
while the receipt says decimal (and ``early`` sends the receipt before the submit response,
``duplicate`` sends every receipt twice), which is what real SMSCs do to correlators.
Every submission is counted per (msg_id, part) so tests can count duplicates; ``log_path``
also appends them to a file (the crash test reads it after SIGKILL).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import trio

from actors.messages import CarrierReceipt, SubmitPart
from actors.ports import Carrier, ReceiptSink, SubmitResult
from gateway.store import open_env

Outcome = Literal["accept", "deliver", "fail", "silent", "throttle", "transient", "reject"]
Script = Callable[[SubmitPart, int], Outcome]


_THROTTLED = SubmitResult(error="throttle", code="throttled", transient=True)
_TIMEOUT = SubmitResult(error="transient", code="timeout", transient=True, in_doubt=True)
_REJECTED = SubmitResult(error="invalid destination", code="0x0000000B")
_new = tuple.__new__  # builds the NamedTuples below without their __new__ call


def always(outcome: Outcome) -> Script:
    return lambda part, attempt: outcome


class ScriptedCarrier:
    """An in-process carrier following a script; receipts go to the sink given to ``run``."""

    def __init__(
        self,
        name: str = "scripted",
        script: Script = always("deliver"),  # noqa: B008 - stateless: one shared default is safe
        *,
        hex_ids: bool = False,
        early: bool = False,
        duplicate: bool = False,
        now: Callable[[], float] = trio.current_time,
        log_path: str | None = None,
        receipt_batch: int = 1024,
        receipt_concurrency: int = 4,
        first_id: int = 0x0400_0000_086E_CD50,
    ) -> None:
        self._name = name
        self.script = script
        self.hex_ids = hex_ids
        self.early = early
        self.duplicate = duplicate
        self.now = now
        self.ready_flag = True
        self.submitted: collections.Counter[tuple[str, int]] = collections.Counter()
        self.attempts: collections.Counter[tuple[str, int]] = collections.Counter()
        self.calls = 0
        self._ids = itertools.count(first_id)
        self._pending: list[CarrierReceipt] = []
        self._kick = trio.Event()
        self._sink: ReceiptSink | None = None
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
        self._receipt_batch = receipt_batch
        self._receipt_concurrency = receipt_concurrency

    @property
    def name(self) -> str:
        return self._name

    @property
    def ready(self) -> bool:
        return self.ready_flag and self._sink is not None

    async def run(self, receipts: ReceiptSink, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver queued receipts, up to ``receipt_concurrency`` sink calls at once (an SMPP
        connector has several binds, each acknowledging its own deliver_sm)."""
        self._sink = receipts
        task_status.started()
        limiter = trio.CapacityLimiter(self._receipt_concurrency)
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    if not self._pending:
                        self._kick = trio.Event()
                        await self._kick.wait()
                    batch = self._pending[: self._receipt_batch]
                    self._pending = self._pending[self._receipt_batch:]
                    token = object()
                    await limiter.acquire_on_behalf_of(token)
                    nursery.start_soon(self._deliver, receipts, batch, limiter, token)
        finally:
            self._sink = None

    @staticmethod
    async def _deliver(sink: ReceiptSink, batch: list[CarrierReceipt],
                       limiter: trio.CapacityLimiter, token: object) -> None:
        try:
            await sink(batch)
        finally:
            limiter.release_on_behalf_of(token)

    async def submit_many(self, parts: Sequence[SubmitPart]) -> list[SubmitResult]:
        # Built with tuple.__new__ and one str per part: this carrier's CPU is charged to
        # bench.pipeline's figure (1.6 -> 0.9 µs per part, measured).
        self.calls += 1
        results: list[SubmitResult] = []
        receipts: list[CarrierReceipt] = []
        lines = []
        now = self.now()
        script, attempts, submitted = self.script, self.attempts, self.submitted
        ids, name, hex_ids, duplicate = self._ids, self._name, self.hex_ids, self.duplicate
        for p in parts:
            key = (p.msg_id, p.part)
            attempts[key] = attempt = attempts.get(key, 0) + 1  # get: no Counter.__missing__
            outcome = script(p, attempt)
            if outcome == "throttle" or outcome == "transient":
                results.append(_THROTTLED if outcome == "throttle" else _TIMEOUT)
                continue
            if outcome == "reject":
                results.append(_REJECTED)
                continue
            submitted[key] = submitted.get(key, 0) + 1
            number = next(ids)
            decimal = str(number)
            if self._log is not None:
                lines.append(f"{p.msg_id} {p.part} {decimal}\n")
            results.append(_new(SubmitResult, (f"0x{number:016X}" if hex_ids else decimal,
                                               "", "", False, False)))
            if outcome != "silent":
                receipt = _new(CarrierReceipt, (name, decimal, "UNDELIV", "001", now, 0.0)
                               if outcome == "fail" else (name, decimal, "DELIVRD", "000", now, 0.0))
                receipts.append(receipt)
                if duplicate:
                    receipts.append(receipt)
        if self._log is not None and lines:
            self._log.write("".join(lines))
        if receipts and self.early and self._sink is not None:
            await self._sink(receipts)
        elif receipts:
            self._pending.extend(receipts)
            self._kick.set()
        await trio.lowlevel.checkpoint()
        return results

    def queue_receipts(self, receipts: Sequence[CarrierReceipt]) -> None:
        """Receipts to (re)deliver once running, as an SMSC redelivers unacknowledged ones."""
        self._pending.extend(receipts)
        self._kick.set()

    def duplicates(self) -> int:
        """Submissions beyond the first of each part that the carrier accepted."""
        return sum(n - 1 for n in self.submitted.values() if n > 1)


_check: Carrier = ScriptedCarrier()  # type-checked against the Protocol


_T = TypeVar("_T")


class InlineStore:
    """``gateway.store.Store``'s interface with writes run inline (no worker thread).

    Under ``autojump_clock`` a wait on a worker thread counts as "all tasks blocked", so virtual
    time would race ahead during every real store write; inline writes keep time exact. The
    real threaded store is exercised by tests/gateway/test_callbacks_e2e.py.
    """

    def __init__(self, path: Path) -> None:
        self.env, self._dbs = open_env(path, sync=False, metasync=False)

    def db(self, name: bytes) -> Any:
        return self._dbs[name]

    async def write(self, op: Callable[[Any], _T]) -> _T:
        await trio.lowlevel.checkpoint()
        with self.env.begin(write=True) as txn:
            return op(txn)

    @contextmanager
    def read(self) -> Iterator[Any]:
        with self.env.begin() as txn:
            yield txn

    def entries(self, name: bytes) -> int:
        with self.read() as txn:
            return int(txn.stat(self.db(name))["entries"])
