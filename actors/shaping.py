"""Rate shaping decisions (pure, clock-injected): rules and the deadline check.

First cut: ``ShapingRules()`` means "no limits"; only deadlines (``not_after``) are applied.
Token buckets, windows, campaigns and no-re-contact follow (issue 6).

Must not import: trio, lmdb, httpx, gateway, adapters.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.messages import Message


@dataclass(frozen=True, slots=True)
class ShapingRules:
    """Every shaping rule the rate limiter applies. No arguments: no limits."""


def deadline_of(message: Message, rules: ShapingRules) -> float:
    """The time after which ``message`` must not be sent (0.0: none)."""
    return message.not_after
