"""RFC 9457 problem documents: every refusal names the field at fault and the reason.

A handler raises :class:`Problem`; the router turns it into an ``application/problem+json``
answer. ``errors`` lists every field problem found (not just the first), each as
``{"field": "messages[3].to", "reason": "..."}``; ``field`` uses JSON-path-like notation
rooted at the request body (``body`` for the body as a whole, ``header:Name`` for a header,
``query:name`` for a query parameter).

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway.http import Response

PROBLEM_TYPE: Final = "urn:septet:problem:"
CONTENT_TYPE: Final = "application/problem+json"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One field problem."""

    field: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "reason": self.reason}


class Problem(Exception):
    """A refusal to answer as a problem document.

    Args:
        status: HTTP status.
        slug: short stable type name (the ``type`` is ``urn:septet:problem:<slug>``).
        title: short human summary of the type.
        detail: this occurrence, in a sentence.
        errors: field problems, when the refusal is about fields.
        headers: extra answer headers (Retry-After, WWW-Authenticate).
    """

    def __init__(self, status: int, slug: str, title: str, detail: str = "",
                 errors: Sequence[FieldError] = (), headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail or title
        self.errors = tuple(errors)
        self.headers = list(headers)

    def document(self) -> dict[str, object]:
        doc: dict[str, object] = {"type": PROBLEM_TYPE + self.slug, "title": self.title,
                                  "status": self.status, "detail": self.detail}
        if self.errors:
            doc["errors"] = [e.as_dict() for e in self.errors]
        return doc

    def response(self) -> Response:
        body = json.dumps(self.document(), ensure_ascii=False).encode()
        return Response(self.status, body, CONTENT_TYPE, list(self.headers))


def invalid(errors: Sequence[FieldError], detail: str = "") -> Problem:
    """422: the request is well-formed but fields are wrong."""
    if not detail:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        detail = f"{first.field}: {first.reason}{more}"
    return Problem(422, "validation", "Invalid fields", detail, errors)


def bad_body(reason: str, field: str = "body") -> Problem:
    """400: the body is not parseable as its declared type."""
    return Problem(400, "malformed-body", "Malformed body", f"{field}: {reason}",
                   [FieldError(field, reason)])


def not_found(detail: str = "no such resource") -> Problem:
    return Problem(404, "not-found", "Not found", detail)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail,
                   [FieldError("header:Authorization", detail)],
                   [("www-authenticate", 'Bearer realm="septet"')])


def unavailable(detail: str, retry_after: float) -> Problem:
    seconds = max(1, round(retry_after))
    return Problem(503, "saturated", "Service unavailable", detail,
                   headers=[("retry-after", str(seconds))])
