"""A wake-up signal between two tasks that coalesces rings (package-internal).

``ring()`` never blocks; ``wait_until(deadline)`` returns when rung or at ``deadline``. Many
rings before one wait count as one: the waiter drains all the work there is each time.
"""

from __future__ import annotations

import trio


class Doorbell:
    """Coalescing, non-blocking wake-up for one waiting task."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait_until(self, deadline: float) -> None:
        """Wait for a ring (consuming it) or for ``deadline`` (trio clock)."""
        if not self._event.is_set():
            with trio.move_on_at(deadline):
                await self._event.wait()
        if self._event.is_set():
            self._event = trio.Event()
