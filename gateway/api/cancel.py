"""Cancelling messages that have not reached a carrier yet (API v1).

    POST /v1/messages/{id}/cancel            200 the message (NOT_SENT, code cancelled) | 409 | 404
    POST /v1/messages/cancel  {"ids": [...]} 200 {"results": [{"id", "outcome", "state", "code"}]}

A booking or billing system schedules a reminder with ``send_at`` and must take it back when
the appointment goes. ``Gateway.cancel`` decides, in the store, whether a message may still
end NOT_SENT ``cancelled`` (no part of it handed to a carrier); these handlers only choose the
ids, call it once per request, and read each message back to tell the caller what happened:

    outcome     when                                                        single route
    cancelled   NOT_SENT with code cancelled now (or already was)           200
    too_late    SENT, DELIVERED, NOT_DELIVERED, NOT_SENT for another        409
                reason, or being submitted (SUBMITTING)
    not_found   no such id, or another account's (never touched)            404

A message already SENT or final cannot become cancelled, so it is answered without asking the
gateway; only ACCEPTED, QUEUED and SUBMITTING ones are passed on (the store refuses a move
that is no longer legal when the cancel is applied). Cancelling is idempotent: a repeat finds
the message NOT_SENT ``cancelled`` and answers the same.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from actors.errors import StoreError
from actors.messages import State
from gateway import metrics
from gateway.accounts import Account
from gateway.api import bodies
from gateway.api.problems import FieldError, Problem, invalid, not_found, unavailable
from gateway.api.views import message_json
from gateway.http import Request, Response

if TYPE_CHECKING:
    from gateway._store_views import MessageView

Outcome = Literal["cancelled", "too_late", "not_found"]

MAX_IDS: Final = 1000
CANCELLED: Final = "cancelled"  # the NOT_SENT code Gateway.cancel writes
# States in which a message may still be cancellable: the store has the last word.
_OPEN: Final = frozenset({State.ACCEPTED.value, State.QUEUED.value, State.SUBMITTING.value})
_WHY: Final = {
    State.SUBMITTING.value: "it is being submitted to a carrier",
    State.SENT.value: "it was handed to a carrier (SENT) and cannot be recalled",
    State.DELIVERED.value: "it was delivered",
    State.NOT_DELIVERED.value: "the carrier reported it not delivered",
}


def outcome(view: MessageView | None) -> Outcome:
    """What a cancel request came to for a message, from the message as read back."""
    if view is None:
        return "not_found"
    if view.state == State.NOT_SENT.value and view.code == CANCELLED:
        return "cancelled"
    return "too_late"


def parse_ids(value: Any, max_ids: int = MAX_IDS) -> list[str]:
    """The ``ids`` of a bulk cancel body, in request order (repeats kept).

    Raises:
        Problem: 422 naming every field at fault (``body``, ``ids``, ``ids[3]``, unknown keys).
    """
    if not isinstance(value, dict):
        raise invalid([FieldError("body", 'must be an object: {"ids": ["<message id>", ...]}')])
    errors = [FieldError(str(k)[:64], "unknown field") for k in value if k != "ids"]
    ids = value.get("ids")
    if "ids" not in value:
        errors.append(FieldError("ids", "is required"))
    elif not isinstance(ids, list):
        errors.append(FieldError("ids", "must be an array of message ids"))
    elif not 1 <= len(ids) <= max_ids:
        errors.append(FieldError("ids", f"must hold 1 to {max_ids} message ids"))
    else:
        errors += [FieldError(f"ids[{i}]", "must be a string (a message id)")
                   for i, v in enumerate(ids) if not isinstance(v, str)]
    if errors:
        raise invalid(errors)
    assert isinstance(ids, list)
    return ids


class TooLate(Problem):
    """409: the message can no longer be cancelled. The document names its current ``state``
    and ``code`` (RFC 9457 extension members), as GET /v1/messages/{id} shows them."""

    def __init__(self, view: MessageView) -> None:
        state, code = str(view.state), view.code or None
        why = _WHY.get(state) or f"it ended {state}" + (f" ({code})" if code else "")
        super().__init__(409, "cancel-too-late", "Too late to cancel",
                         f"message {view.message.msg_id} cannot be cancelled: {why}")
        self.id, self.state, self.code = view.message.msg_id, state, code

    def document(self) -> dict[str, object]:
        return {**super().document(), "id": self.id, "state": self.state, "code": self.code}


class CancelRoutes:
    """Handlers of the two cancel routes for an authenticated account.

    Args:
        gateway: ``gateway.app.Gateway`` (``cancel`` and ``store``).
        max_ids: most ids in one bulk request.
    """

    def __init__(self, gateway: Any, *, max_ids: int = MAX_IDS) -> None:
        self._gateway = gateway
        self._max_ids = max_ids

    async def one(self, request: Request, account: Account, msg_id: str) -> Response:
        """``POST /v1/messages/{id}/cancel``: 200 with the message's view once it is NOT_SENT
        ``cancelled``; 409 (``TooLate``) when it is too late; 404 for an id the account does
        not own, worded exactly as GET /v1/messages/{id} words it."""
        view = self._own(account, msg_id)
        if view is not None and view.state in _OPEN:
            await self._cancel([view.message.msg_id])
            view = self._own(account, msg_id)
        result = outcome(view)
        metrics.CANCELS.labels(result).inc()
        if view is None:
            raise not_found(f"no message {msg_id[:64]!r} in this account")
        if result == "too_late":
            raise TooLate(view)
        return Response(200, bodies.encode(message_json(view), bodies.JSON))

    async def many(self, request: Request, account: Account) -> Response:
        """``POST /v1/messages/cancel``: one outcome per id, in request order, after one
        ``Gateway.cancel`` for every id of the account that may still be cancellable."""
        value, fmt = bodies.decode(request.body, request.header("content-type"))
        ids = parse_ids(value, self._max_ids)
        views = {i: self._own(account, i) for i in dict.fromkeys(ids)}
        todo = [i for i, v in views.items() if v is not None and v.state in _OPEN]
        if todo:
            await self._cancel(todo)
            views.update((i, self._own(account, i)) for i in todo)
        results = [_result(i, views[i]) for i in ids]
        for r in results:
            metrics.CANCELS.labels(r["outcome"]).inc()
        return Response(200, bodies.encode({"results": results}, fmt),
                        bodies.MSGPACK if fmt == bodies.MSGPACK else bodies.JSON)

    def _own(self, account: Account, msg_id: str) -> MessageView | None:
        """The message if ``msg_id`` could be an id and the account owns it, else None."""
        if not (0 < len(msg_id) <= 64 and msg_id.isascii() and msg_id.isalnum()):
            return None
        view: MessageView | None = self._gateway.store.get_message(msg_id)
        return view if view is not None and view.message.account == account.name else None

    async def _cancel(self, msg_ids: Sequence[str]) -> None:
        """``Gateway.cancel``; a store failure or a gateway that cannot take it now is a 503
        with Retry-After (cancelling again is safe: it is idempotent)."""
        try:
            await self._gateway.cancel(msg_ids)
        except StoreError:
            raise unavailable("the store could not commit the cancel; retry", 1) from None
        except Exception as exc:  # gateway.errors.Saturated and its kin carry retry_after
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is None:
                raise
            metrics.SATURATED.inc()
            raise unavailable("the gateway cannot cancel now; retry", retry_after) from None


def _result(msg_id: str, view: MessageView | None) -> dict[str, Any]:
    """One item of the bulk answer."""
    return {"id": msg_id, "outcome": outcome(view),
            "state": str(view.state) if view is not None else None,
            "code": (view.code or None) if view is not None else None}
