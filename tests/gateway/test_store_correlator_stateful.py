"""A hypothesis state machine for correlation: submit responses, receipts (early, late,
duplicated, hex or decimal), refusals and ENROUTE notices in any order, applied through the
real store operations on a real LMDB file. Invariants: no receipt is lost, event histories
are well-formed (SMS_SENT first, one final at most, seq 1..n), the stored state agrees with
the events, all-delivered messages are DELIVERED."""

from __future__ import annotations

import shutil
import tempfile
import types
from collections import defaultdict
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors import messages as m
from actors.correlation import StateRecord
from actors.ingress import MsgIdFactory
from gateway import _store_pipeline as sp
from gateway.store import open_env

MSGS = 3
FINAL_EVENTS = {"SMS_DELIVERED", "SMS_NOT_DELIVERED", "SMS_NOT_SENT"}
msg_index = st.integers(0, MSGS - 1)
part_index = st.integers(0, 2)


class Correlation(RuleBasedStateMachine):
    @initialize(sizes=st.lists(st.integers(1, 3), min_size=MSGS, max_size=MSGS))
    def setup(self, sizes: list[int]) -> None:
        self.dir = tempfile.mkdtemp()
        self.env, dbs = open_env(self.dir, sync=False)
        self.store = types.SimpleNamespace(db=dbs.__getitem__, _dbs=dbs)
        ids = MsgIdFactory(lambda: 1.0)
        self.msgs = [m.Message(ids(), "acc", f"+1{i:09d}", "S", "t", "ucs2", 1.0, parts=n)
                     for i, n in enumerate(sizes)]
        self.sizes = sizes
        parts = [m.SubmitPart(x.msg_id, p + 1, x.parts, x.to, x.sender, 0, b"", b"t", 0, "acc")
                 for x in self.msgs for p in range(x.parts)]
        self._write(lambda txn: sp.op_accept(txn, self.store, self.msgs, None))
        self._write(lambda txn: sp.op_mark_submitting(txn, self.store, parts, 2.0))
        self.events: dict[str, list[m.StatusEvent]] = defaultdict(list)
        self.receipts_sent = 0
        self.totals: dict[str, int] = defaultdict(int)
        self.delivered: set[tuple[int, int]] = set()
        self.submitted: set[tuple[int, int]] = set()
        self.failed_any: set[int] = set()
        self.now = 3.0

    def teardown(self) -> None:
        if hasattr(self, "env"):
            self.env.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _write(self, op: Any) -> Any:
        with self.env.begin(write=True) as txn:
            return op(txn)

    def _apply(self, item: m.Kind) -> None:
        self.now += 1
        applied = self._write(lambda txn: sp.op_apply(txn, self.store, [item], self.now, None))
        for e in applied.events:
            self.events[e.msg_id].append(e)
        for k in ("matched", "duplicates", "unknown", "orphans_parked", "orphans_matched",
                  "illegal"):
            self.totals[k] += getattr(applied, k)

    def _part(self, i: int, p: int) -> int | None:
        return p + 1 if p < self.sizes[i] else None

    @staticmethod
    def _number(i: int, part: int) -> int:
        return 0xABC0_0000 + i * 16 + part  # hex always has letters: no base ambiguity

    @rule(i=msg_index, p=part_index, hexa=st.booleans())
    def submit_response(self, i: int, p: int, hexa: bool) -> None:
        part = self._part(i, p)
        if part is None:
            return
        n = self._number(i, part)
        cid = f"0x{n:X}" if hexa else str(n)
        self._apply(m.PartSubmitted(self.msgs[i].msg_id, part, self.sizes[i], "smsc",
                                    m.CarrierId(cid), self.now))
        self.submitted.add((i, part))

    @rule(i=msg_index, p=part_index, hexa=st.booleans(),
          state=st.sampled_from(["DELIVRD", "DELIVRD", "UNDELIV", "ENROUTE"]))
    def receipt(self, i: int, p: int, hexa: bool, state: str) -> None:
        part = self._part(i, p)
        if part is None:
            return
        n = self._number(i, part)
        self.receipts_sent += 1
        self._apply(m.CarrierReceipt("smsc", f"{n:x}" if hexa else str(n), state, "000",
                                     self.now))
        if state == "DELIVRD":
            self.delivered.add((i, part))
        elif state == "UNDELIV":
            self.failed_any.add(i)

    @rule(i=msg_index, p=part_index)
    def refused(self, i: int, p: int) -> None:
        part = self._part(i, p)
        if part is None or (i, part) in self.submitted:
            return
        self.failed_any.add(i)
        self._apply(m.PartFailed(self.msgs[i].msg_id, part, self.sizes[i], "smsc", "0x45",
                                 "refused", self.now))

    @invariant()
    def no_receipt_is_lost(self) -> None:
        if not hasattr(self, "env"):
            return
        t = self.totals
        assert t["unknown"] == 0
        assert t["matched"] + t["duplicates"] + t["orphans_parked"] - t["orphans_matched"] == (
            self.receipts_sent)

    @invariant()
    def histories_are_well_formed_and_match_the_store(self) -> None:
        if not hasattr(self, "env"):
            return
        with self.env.begin() as txn:
            for i, msg in enumerate(self.msgs):
                evs = [e.event for e in self.events[msg.msg_id]]
                assert [e.seq for e in self.events[msg.msg_id]] == list(range(1, len(evs) + 1))
                assert sum(e in FINAL_EVENTS for e in evs) <= 1
                assert not evs or evs[0] in ("SMS_SENT", "SMS_NOT_SENT")
                if "SMS_NOT_SENT" in evs:
                    assert evs == ["SMS_NOT_SENT"]
                rec = StateRecord.unpack(txn.get(msg.msg_id.encode(), db=self.store.db(b"state")))
                final = [e for e in evs if e in FINAL_EVENTS]
                if final:
                    assert rec.state == final[0].removeprefix("SMS_")
                elif evs:
                    assert rec.state == "SENT"
                parts = {(i, p) for p in range(1, self.sizes[i] + 1)}
                if parts <= self.delivered and parts <= self.submitted and i not in self.failed_any:
                    assert rec.state == "DELIVERED"


TestCorrelation = Correlation.TestCase
TestCorrelation.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
