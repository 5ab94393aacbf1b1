"""Taking what already waits in an inbox: the stages' natural batching.

Under load several items wait in a stage's inbox by the time it runs. Taking them together
makes one pass, one store write and one item on instead of one per item; nothing is held back
to wait for more, so an idle stage handles an item at once (no timer).
"""

from __future__ import annotations

import math

import trio

from actors._wire import array_header

__all__ = ["item_length", "with_waiting"]


def with_waiting(inbox: trio.abc.ReceiveChannel[bytes], first: bytes,
                 limit: float = math.inf) -> list[bytes]:
    """``first`` and the items already waiting in ``inbox`` (never waits), while they hold
    fewer than ``limit`` messages in all (the last item taken may pass it). Only a memory
    channel can be read without waiting: from any other channel, ``[first]``."""
    items = [first]
    receive_nowait = getattr(inbox, "receive_nowait", None)
    if receive_nowait is None:
        return items
    size = item_length(first) if limit != math.inf else 0
    while size < limit:
        try:
            more = receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        items.append(more)
        if limit != math.inf:
            size += item_length(more)
    return items


def item_length(item: bytes) -> int:
    """Messages in a channel item, from its msgpack array header (1 for an item that is not an
    array: it fails in the stage's decode, which names the fault)."""
    try:
        return array_header(item)[0]
    except ValueError:
        return 1
