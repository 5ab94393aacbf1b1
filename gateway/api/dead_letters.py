"""Dead-lettered status callbacks of API v1: list them, queue them again.

    GET  /v1/callbacks/dead-letters?after=<id>&limit=<n>
    POST /v1/callbacks/dead-letters/replay   {"ids": ["<msg_id>:<seq>", ...]} or {"ids": "all"}

Both are scoped to the authenticated account: the store keys dead letters by account
(``gateway.callback_outbox``), so another account's dead letters can be neither listed nor
replayed (an id of theirs is simply unknown here and ignored).

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from gateway.accounts import Account
from gateway.api import bodies
from gateway.api.problems import FieldError, invalid
from gateway.callback_outbox import DeadLetter, list_dead_letters, replay_dead_letters
from gateway.callbacks import event_payload
from gateway.http import Request, Response

MAX_LIMIT: Final = 1000
MAX_IDS: Final = 10_000
_MAX_ID_LENGTH: Final = 64


class DeadLetterRoutes:
    """Handlers of /v1/callbacks/dead-letters for an authenticated account."""

    def __init__(self, store: Any, *, page_size: int = 100,
                 now: Callable[[], float] = time.time) -> None:
        self._store = store
        self._page_size = min(page_size, MAX_LIMIT)
        self._now = now

    async def list(self, request: Request, account: Account) -> Response:
        """A page of the account's dead letters in message order; ``next`` is the ``after``
        of the following page (null on the last one)."""
        after, limit = self._query(request.query)
        rows = list_dead_letters(self._store, account.name, after=after, limit=limit + 1)
        page = rows[:limit]
        doc = {"dead_letters": [_doc(d) for d in page],
               "next": page[-1].id if len(rows) > limit else None}
        return Response(200, bodies.encode(doc, bodies.JSON))

    async def replay(self, request: Request, account: Account) -> Response:
        """Queue the named dead letters (or ``"all"``) for delivery again."""
        value, _fmt = bodies.decode(request.body, request.header("content-type"))
        ids = value.get("ids") if isinstance(value, dict) else None
        extra = sorted(set(value) - {"ids"}) if isinstance(value, dict) else []
        if extra:
            raise invalid([FieldError(k, "unknown field") for k in extra])
        if ids != "all" and not (
                isinstance(ids, list) and 0 < len(ids) <= MAX_IDS
                and all(isinstance(i, str) and 0 < len(i) <= _MAX_ID_LENGTH for i in ids)):
            raise invalid([FieldError("ids", f'"all" or a list of 1-{MAX_IDS} dead-letter ids')])
        replayed = await replay_dead_letters(self._store, account.name,
                                             "all" if ids == "all" else set(ids), now=self._now())
        return Response(200, bodies.encode({"replayed": replayed}, bodies.JSON))

    def _query(self, query: str) -> tuple[str | None, int]:
        after: str | None = None
        limit = self._page_size
        errors = []
        for key, v in parse_qsl(query, keep_blank_values=True):
            if key == "after":
                after = v or None
            elif key == "limit":
                if v.isdigit() and 1 <= int(v) <= MAX_LIMIT:
                    limit = int(v)
                else:
                    errors.append(FieldError("query:limit", f"an integer from 1 to {MAX_LIMIT}"))
            else:
                errors.append(FieldError(f"query:{key[:40]}", "unknown parameter"))
        if errors:
            raise invalid(errors)
        return after, limit


def _doc(d: DeadLetter) -> dict[str, Any]:
    return {"id": d.id, "dead_at": d.dead_at, "attempts": d.attempts, "error": d.error,
            "event": event_payload(d.event)}
