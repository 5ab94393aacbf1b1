"""What the fairness tests share: a notifier that records when each message turned SENT, on a
virtual clock, and messages made quickly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from actors import messages as m
from actors.ingress import MsgIdFactory

BASE = dt.datetime(2026, 1, 5, 10, 0, tzinfo=dt.UTC).timestamp()  # a Monday, 10:00 UTC


def now() -> float:
    """Wall-clock time on trio's (virtual) clock."""
    return BASE + trio.current_time()


@dataclass
class SentTimes:
    """``notifier`` for ``open_gateway``: ``at`` maps each message id to when it turned SENT."""

    at: dict[str, float] = field(default_factory=dict)
    ids: Callable[[], m.MsgId] = field(default_factory=lambda: MsgIdFactory(now))

    async def notifier(self, inbox: trio.abc.ReceiveChannel[bytes],
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with inbox:
            async for item in inbox:
                for e in m.decode_batch_of(m.StatusEvent, item):
                    if e.event == "SMS_SENT":
                        self.at[e.msg_id] = now()

    def messages(self, account: str, numbers: list[str], text: str = "hi") -> list[m.Message]:
        """One message to each of ``numbers``, accepted now."""
        return [m.Message(self.ids(), account, to, "S", text, "transliterate", now())
                for to in numbers]

    async def all_sent(self, ids: list[str], *, within: float, step: float = 0.05) -> None:
        """Wait (virtual time) until every one of ``ids`` is SENT.

        Raises:
            trio.TooSlowError: not within ``within`` seconds.
        """
        with trio.fail_after(within):
            while not all(i in self.at for i in ids):
                await trio.sleep(step)
