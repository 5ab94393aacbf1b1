"""The calling account's settings (API v1).

    GET   /v1/account   200 {"name", "default_country_prefix", "encoding", "max_parts",
                             "callback_url", "inbound_url", "callback_secret_set"}
    PATCH /v1/account   the fields to change; 200 the account as GET gives it | 422

PATCH takes the API's field names (``default_country_prefix``, ``encoding``, ``max_parts``,
``callback_url``, ``callback_secret``, ``inbound_url``) and maps them onto the account book's.
A callback or inbound URL passes the same SSRF check as a submission's ``callback_url``; the
book's own checks come back as field errors under the API's names. Every bad field is named
in one 422 and nothing is changed then. The secret itself is never answered, only whether
one is set.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

from typing import Any, Final

from gateway.accounts import Account, AccountBook
from gateway.api import bodies
from gateway.api.messages import MessageRoutes
from gateway.api.problems import FieldError, invalid
from gateway.errors import AccountError
from gateway.http import Request, Response

_ACCOUNT_FIELDS: Final = {"default_country_prefix": "default_prefix", "encoding": "policy",
                          "max_parts": "max_parts", "callback_url": "callback_url",
                          "callback_secret": "callback_secret", "inbound_url": "inbound_url"}
_API_NAME: Final = {v: k for k, v in _ACCOUNT_FIELDS.items()}


class AccountRoutes:
    """GET and PATCH /v1/account over the account book.

    Args:
        accounts: the account book (changes are written there).
        messages: the message handlers, whose ``check_callback`` checks a URL.
    """

    def __init__(self, accounts: AccountBook, messages: MessageRoutes) -> None:
        self._accounts = accounts
        self._messages = messages

    async def read(self, request: Request, account: Account) -> Response:
        """GET /v1/account: the calling account's settings."""
        doc = {"name": account.name, "default_country_prefix": account.default_prefix or None,
               "encoding": account.policy, "max_parts": account.max_parts,
               "callback_url": account.callback_url or None,
               "inbound_url": account.inbound_url or None,
               "callback_secret_set": bool(account.callback_secret)}
        return Response(200, bodies.encode(doc, bodies.JSON))

    async def update(self, request: Request, account: Account) -> Response:
        """PATCH /v1/account: change the fields given, all or none.

        Raises:
            Problem: 400 for a body that is not JSON, 422 naming every bad field.
        """
        value, _fmt = bodies.decode(request.body, request.header("content-type"))
        if not isinstance(value, dict):
            raise invalid([FieldError("body", "must be an object")])
        changes: dict[str, Any] = {}
        errors = []
        for name, v in value.items():
            target = _ACCOUNT_FIELDS.get(name)
            if target is None:
                errors.append(FieldError(name, "unknown field"))
            elif not isinstance(v, int if target == "max_parts" else str) or isinstance(v, bool):
                errors.append(FieldError(name, "has the wrong type"))
            else:
                changes[target] = v
        for field in ("callback_url", "inbound_url"):  # the same SSRF check for both
            url = changes.get(field)
            if isinstance(url, str) and url:
                try:
                    changes[field] = await self._messages.check_callback(url)
                except ValueError as exc:
                    errors.append(FieldError(field,
                                             f"refused: {getattr(exc, 'reason', '') or exc}"))
        if not errors:
            try:
                account = await self._accounts.update(account.name, **changes)
            except AccountError as exc:  # check_settings: "field: reason; field: reason"
                for part in str(exc).split("; "):
                    field, _sep, reason = part.partition(": ")
                    errors.append(FieldError(_API_NAME.get(field, field), reason or part))
        if errors:
            raise invalid(errors)
        return await self.read(request, account)
