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

import trio

import codec
from actors import _metrics, messages
from actors.messages import Message, MessageFinished, State, SubmitPart

__all__ = ["plan_parts", "run"]


@functools.lru_cache(maxsize=64)
def _policy(mode: str, max_parts: int) -> codec.Policy:
    return codec.Policy(mode=mode or "transliterate", max_parts=max(1, min(255, max_parts)))


def _reference(msg_id: str) -> int:
    """A concatenation reference (8 bits) stable per message, so a resend reuses it."""
    return zlib.crc32(msg_id.encode()) & 0xFF


def plan_parts(msg: Message, now: float) -> list[SubmitPart] | MessageFinished:
    """The parts of ``msg``, or the NOT_SENT outcome when the codec refuses it."""
    ref = _reference(msg.msg_id)
    try:
        parts = codec.split(msg.text, _policy(msg.policy, msg.max_parts), ref)
    except codec.SegmentLimitExceeded as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "too_many_parts",
                               f"needs {exc.parts_needed} parts, at most {exc.max_parts}", now)
    except codec.UnencodableText as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "unencodable",
                               f"character at {exc.position} cannot be encoded", now)
    except (codec.CodecError, ValueError) as exc:
        return MessageFinished(msg.msg_id, State.NOT_SENT.value, "encoding_failed", str(exc), now)
    n = len(parts)
    return [
        SubmitPart(msg.msg_id, i + 1, n, msg.to, msg.sender, p.data_coding, p.udh, p.body, ref,
                   msg.account)
        for i, p in enumerate(parts)
    ]


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
            parts: list[SubmitPart] = []
            refused: list[MessageFinished] = []
            for msg in messages.decode_batch_of(Message, item):
                planned = plan_parts(msg, t)
                if isinstance(planned, MessageFinished):
                    refused.append(planned)
                    _metrics.SEGMENT_REFUSED.labels(planned.code).inc()
                else:
                    parts.extend(planned)
            if refused:
                await finished.send(messages.encode_batch(refused))
            if parts:
                _metrics.SEGMENTED.inc(len(parts))
                await outbox.send(messages.encode_batch(parts))
