"""The message state machine of DESIGN.md §3, in ONE place, as a table.

Theory of operation
-------------------
::

    ACCEPTED ──▶ QUEUED ──▶ SUBMITTING ──▶ SENT ──▶ DELIVERED
       │           │  ▲          │            └───▶ NOT_DELIVERED
       │           │  └──────────┤ (re-queued: transient failure, recovery of an in-doubt part)
       └───────────┴─────────────┴──▶ NOT_SENT

``TRANSITIONS`` is the table the code reads. A move to a state further along the forward
path is legal when every step is (``ACCEPTED → SENT`` implies QUEUED and SUBMITTING: the
store does not spend a write on every intermediate state). Final states (DELIVERED,
NOT_DELIVERED, NOT_SENT) are absorbing: nothing leaves them, so a late SENT never overwrites
DELIVERED. A refused move is reported to the caller, which counts it
(``septet_core_illegal_transitions_total``) and keeps the stored state.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from actors.messages import FINAL_STATES, State

__all__ = ["FORWARD", "TRANSITIONS", "can_move", "is_final", "move"]

TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    State.ACCEPTED: frozenset({State.QUEUED, State.NOT_SENT}),
    State.QUEUED: frozenset({State.SUBMITTING, State.NOT_SENT}),
    State.SUBMITTING: frozenset({State.SENT, State.QUEUED, State.NOT_SENT}),
    State.SENT: frozenset({State.DELIVERED, State.NOT_DELIVERED}),
    State.DELIVERED: frozenset(),
    State.NOT_DELIVERED: frozenset(),
    State.NOT_SENT: frozenset(),
}
"""Direct legal moves. Staying in the same state is not a move (and always allowed)."""

BACKWARD: Final[frozenset[tuple[State, State]]] = frozenset({(State.SUBMITTING, State.QUEUED)})
"""Legal moves that go back; they are never implied by a longer forward jump."""


def _forward_closure() -> dict[State, frozenset[State]]:
    out: dict[State, frozenset[State]] = {}
    for start in TRANSITIONS:
        seen: set[State] = set()
        todo = [start]
        while todo:
            s = todo.pop()
            for nxt in TRANSITIONS[s]:
                if (s, nxt) not in BACKWARD and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[start] = frozenset(seen)
    return out


FORWARD: Final[Mapping[State, frozenset[State]]] = _forward_closure()
"""States reachable from a state through forward moves (implied intermediate states)."""


def is_final(state: State) -> bool:
    """True for DELIVERED, NOT_DELIVERED and NOT_SENT."""
    return state in FINAL_STATES


def can_move(current: State, target: State) -> bool:
    """True if ``current → target`` is legal (directly or along the forward path)."""
    return target in TRANSITIONS[current] or target in FORWARD[current]


def move(current: State, target: State) -> tuple[State, bool]:
    """Apply a requested move.

    Returns:
        ``(new_state, refused)``: the state to keep and whether the request was illegal
        (the caller counts refusals). Asking for the current state is a no-op, not refused.
    """
    if target == current:
        return current, False
    if can_move(current, target):
        return target, False
    return current, True
