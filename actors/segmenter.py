"""The segmenter actor: each released Message becomes its carrier parts, with ``codec.split``.

Segmentation exists once, in ``codec/`` (STYLE.md §2); this actor only chooses the policy
(from the message's ``policy`` and ``max_parts``), the concatenation reference, and turns a
codec refusal into a NOT_SENT outcome for the correlator.

Must not import: gateway, adapters, lmdb.
"""

from __future__ import annotations

import functools
import time
import zlib
from collections.abc import Callable
from typing import Any, Final

import msgpack
import trio

import codec
from actors import _metrics, messages
from actors._inbox import with_waiting
from actors.messages import Message, MessageFinished, State, SubmitPart

__all__ = ["part_rows", "plan_parts", "run"]

MAX_BATCH: Final = 512  # most messages taken into one pass (DESIGN.md §1: batches are bounded)
_TAG: Final = SubmitPart.TAG
_VERSION: Final = SubmitPart.VERSION


@functools.lru_cache(maxsize=64)
def _policy(mode: str, max_parts: int) -> codec.Policy:
    return codec.Policy(mode=mode or "transliterate", max_parts=max(1, min(255, max_parts)))


def _reference(msg_id: str) -> int:
    """A concatenation reference (8 bits) stable per message, so a resend reuses it."""
    return zlib.crc32(msg_id.encode()) & 0xFF


def _split(msg: Message, ref: int, now: float) -> list[codec.Part] | MessageFinished:
    """``codec.split`` of the message's text, or the NOT_SENT outcome when the codec refuses."""
    try:
        return codec.split(msg.text, _policy(msg.policy, msg.max_parts), ref)
    except codec.SegmentLimitExceeded as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "too_many_parts",
                               f"needs {exc.parts_needed} parts, at most {exc.max_parts}", now)
    except codec.UnencodableText as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "unencodable",
                               f"character at {exc.position} cannot be encoded", now)
    except (codec.CodecError, ValueError) as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "encoding_failed", str(exc), now)


def plan_parts(msg: Message, now: float) -> list[SubmitPart] | MessageFinished:
    """The parts of ``msg``, or the NOT_SENT outcome when the codec refuses it."""
    ref = _reference(msg.msg_id)
    parts = _split(msg, ref, now)
    if isinstance(parts, MessageFinished):
        return parts
    n = len(parts)
    return [
        SubmitPart(msg.msg_id, i + 1, n, msg.to, msg.sender, p.data_coding, p.udh, p.body, ref,
                   msg.account)
        for i, p in enumerate(parts)
    ]


def part_rows(msg: Message, now: float) -> list[list[Any]] | MessageFinished:
    """:func:`plan_parts` as SubmitPart wire rows (``messages.to_wire`` of each part), built
    without the SubmitPart objects the actor would only encode again (0.5 µs per part)."""
    msg_id = msg.msg_id
    ref = zlib.crc32(msg_id.encode()) & 0xFF  # == _reference(msg_id), inlined
    parts = _split(msg, ref, now)
    if isinstance(parts, MessageFinished):
        return parts
    n, to, sender, account = len(parts), msg.to, msg.sender, msg.account
    if n == 1:  # most messages: no enumerate, no comprehension
        p = parts[0]
        return [[_TAG, _VERSION, msg_id, 1, 1, to, sender, p.data_coding, p.udh, p.body, ref,
                 account, 0]]
    return [[_TAG, _VERSION, msg_id, i, n, to, sender, p.data_coding, p.udh, p.body, ref,
             account, 0] for i, p in enumerate(parts, 1)]


async def run(
    inbox: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    finished: trio.abc.SendChannel[bytes],
    *,
    now: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Messages in (msgpack batches of Message), parts out (batches of SubmitPart).

    Refused messages go to ``finished`` as MessageFinished(NOT_SENT). Owns all three channels.
    """
    async with inbox, outbox, finished:
        task_status.started()
        async for item in inbox:
            t = now()
            rows: list[list[Any]] = []
            refused: list[MessageFinished] = []
            for data in with_waiting(inbox, item, MAX_BATCH):
                for msg in messages.decode_batch_of(Message, data):
                    planned = part_rows(msg, t)
                    if isinstance(planned, MessageFinished):
                        refused.append(planned)
                        _metrics.SEGMENT_REFUSED.labels(planned.code).inc()
                    else:
                        rows.extend(planned)
            if refused:
                await finished.send(messages.encode_batch(refused))
            if rows:
                _metrics.SEGMENTED.inc(len(rows))
                # the rows are encode_batch's rows of SubmitPart
                await outbox.send(msgpack.packb(rows, use_bin_type=True))