"""Pure parts of the writer process: the frame reader, the result wire forms, and the
failure policy of a commit (no subprocess, no LMDB file)."""

from __future__ import annotations

from typing import Any

import lmdb
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors import messages as m
from actors.ports import Applied, Recovered
from gateway import _store_writer_main as wm
from gateway._store_process_wire import (
    HEADER,
    MAX_FRAME,
    FrameReader,
    frame,
    result_from_wire,
    result_to_wire,
)

values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1)
                      | st.text(max_size=20) | st.binary(max_size=20),
                      lambda inner: st.lists(inner, max_size=4), max_leaves=12)


@given(st.lists(values, max_size=6), st.lists(st.integers(1, 40), max_size=8))
def test_frames_come_out_whole_and_in_order_however_the_bytes_are_cut(
        items: list[Any], cuts: list[int]) -> None:
    data = b"".join(frame(v) for v in items)
    reader, got, pos = FrameReader(), [], 0
    for n in [*cuts, len(data)]:
        reader.feed(data[pos:pos + n])
        pos += n
        got += reader.frames()
    assert got == items and reader.pending == 0


def test_a_frame_header_past_the_limit_is_refused() -> None:
    reader = FrameReader()
    reader.feed(HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(ValueError, match="frame of"):
        reader.frames()


def test_results_survive_the_wire() -> None:
    event = m.StatusEvent(m.MsgId("01M8"), "acc", "SMS_SENT", 1, 2.5, "cid", "camp", 1, "", "", "",
                          "")
    applied = Applied([m.to_wire(event)], [m.MsgId("01M8")], 1, 2, 3, 4, 5, 6, 7, [0.25])
    recovered = Recovered(3, [event])
    for op, value in (("apply", applied), ("recover", recovered), ("mark", [True, False]),
                      ("expire", 4), ("accept", None)):
        raw = msgpack.unpackb(msgpack.packb(result_to_wire(op, value)), raw=False)
        assert result_from_wire(op, raw) == value


class FlakyWriter:
    """run_batch fails ``failures`` times with ``error``, then commits."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error = failures, error
        self.batches: list[list[int]] = []
        self.env = self

    def info(self) -> dict[str, int]:
        return {"map_size": 1 << 20}

    def run_batch(self, reqs: list[list[Any]]) -> tuple[list[list[Any]], list[float]]:
        self.batches.append([r[0] for r in reqs])
        if self.failures:
            self.failures -= 1
            raise self.error
        return [[r[0], True, None] for r in reqs], [0.0] * 6


class Frames:
    """The reply frames the child would send, and what arrives while it backs off."""

    def __init__(self, writer: FlakyWriter, arrivals: list[list[list[Any]]] | None = None) -> None:
        self.writer = writer
        self.sent: list[tuple[list[float], list[list[Any]], int, int]] = []
        self.arrivals = arrivals or []
        self.waits: list[float] = []

    def reply(self, timings: list[float], replies: list[list[Any]], failed: int) -> None:
        # (and how many tries the writer had made when this frame went out)
        self.sent.append((timings, replies, failed, len(self.writer.batches)))

    def more(self, timeout: float) -> list[list[Any]]:
        self.waits.append(timeout)
        return self.arrivals.pop(0) if self.arrivals else []


def test_a_failed_commit_fails_accepts_at_once_and_retries_the_others() -> None:
    writer = FlakyWriter(2, lmdb.DiskError("disk full"))
    frames = Frames(writer)
    reqs = [[1, "accept", b""], [2, "mark", b"", 0.0], [3, "apply", b"", 0.0]]
    wm.commit_with_retry(writer, reqs, frames.reply, frames.more)  # type: ignore[arg-type]
    assert writer.batches == [[1, 2, 3], [2, 3], [2, 3]]
    (t1, r1, f1, tries1), (t2, r2, f2, tries2), (t3, r3, f3, _) = frames.sent
    # The accept's client hears at once, after the first try, not after the retries.
    assert (t1, [r[:2] for r in r1], f1, tries1) == ([], [[1, False]], 1, 1)
    assert "commit failed" in r1[0][2][1]
    assert (t2, r2, f2, tries2) == ([], [], 1, 2)  # the second failure is counted too
    assert t3 and [r[:2] for r in r3] == [[2, True], [3, True]] and f3 == 0
    assert frames.waits == pytest.approx([0.05, 0.1], abs=0.02)  # back-off, doubling


def test_accepts_arriving_during_the_back_off_fail_at_once_and_the_rest_join_the_retry() -> None:
    writer = FlakyWriter(1, lmdb.DiskError("disk full"))
    frames = Frames(writer, arrivals=[[[4, "accept", b""], [5, "apply", b"", 0.0]]])
    wm.commit_with_retry(writer, [[2, "mark", b"", 0.0]], frames.reply,  # type: ignore[arg-type]
                         frames.more)
    assert writer.batches == [[2], [2, 5]]
    assert [(f[0], [r[:2] for r in f[1]], f[2]) for f in frames.sent] == [
        ([], [], 1), ([], [[4, False]], 0), ([0.0] * 6, [[2, True], [5, True]], 0)]


def test_a_failed_commit_of_accepts_only_does_not_wait() -> None:
    writer = FlakyWriter(1, lmdb.DiskError("disk full"))
    frames = Frames(writer)
    wm.commit_with_retry(writer, [[1, "accept", b""]], frames.reply,  # type: ignore[arg-type]
                         frames.more)
    assert writer.batches == [[1]] and frames.waits == []
    assert [(f[0], [r[:2] for r in f[1]], f[2]) for f in frames.sent] == [([], [[1, False]], 1)]


def test_a_full_map_fails_the_whole_batch_without_retrying() -> None:
    writer = FlakyWriter(1, lmdb.MapFullError("full"))
    frames = Frames(writer)
    wm.commit_with_retry(writer, [[1, "mark", b"", 0.0]], frames.reply,  # type: ignore[arg-type]
                         frames.more)
    assert [f[:3] for f in frames.sent] == [
        ([], [[1, False, ["MapFullError", "store map is full (1 MiB)"]]], 0)]
    assert writer.batches == [[1]]
