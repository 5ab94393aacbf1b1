"""The rate_limiter actor: releases messages when they may go (issue 6).

Decisions live in :mod:`actors.shaping`; this module is the loop around them.

Must not import: gateway, adapters, lmdb, httpx.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from actors import messages
from actors.messages import ConnectorThrottled, Message, MessageFinished, State
from actors.ports import RecentContacts
from actors.shaping import ShapingRules, deadline_of


async def run(
    inbox: trio.abc.ReceiveChannel[bytes],
    outbox: trio.abc.SendChannel[bytes],
    finished: trio.abc.SendChannel[bytes],
    *,
    rules: ShapingRules,
    contacts: RecentContacts | None = None,
    feedback: trio.abc.ReceiveChannel[bytes] | None = None,
    now: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Pass-through with deadline expiry (first cut)."""
    async with inbox, outbox, finished, trio.open_nursery() as nursery:
        if feedback is not None:
            nursery.start_soon(_drain, feedback)
        task_status.started()
        await _loop(inbox, outbox, finished, rules, now)
        nursery.cancel_scope.cancel()


async def _drain(feedback: trio.abc.ReceiveChannel[bytes]) -> None:
    async with feedback:
        async for _ in feedback:
            pass


async def _loop(inbox, outbox, finished, rules, now) -> None:  # type: ignore[no-untyped-def]
        async for batch in inbox:
            t = now()
            out: list[Message] = []
            done: list[MessageFinished] = []
            for m in messages.decode_batch_of(Message, batch):
                d = deadline_of(m, rules)
                if d and t >= d:
                    done.append(MessageFinished(m.msg_id, State.NOT_SENT.value, "expired",
                                                "deadline passed before sending", t))
                else:
                    out.append(m)
            if done:
                await finished.send(messages.encode_batch(done))
            if out:
                await outbox.send(messages.encode_batch(out))
