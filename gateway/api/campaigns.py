"""The campaign and template resources of API v1 (see docs/campaigns.md).

Templates: ``POST /v1/templates`` (create or replace), ``GET /v1/templates[/{name}]``,
``DELETE /v1/templates/{name}``, ``POST /v1/templates/{name}/preview`` (sample fields →
text, encoding, parts).

Campaigns: ``POST /v1/campaigns`` (JSON definition with optional inline ``recipients``; or a
CSV / JSON-lines body with the definition in the query string), ``POST
/v1/campaigns/{id}/recipients`` (append recipients: CSV or JSON lines of any size in one
streamed request, ``?offset=N`` to resume; or a JSON array up to 1 MiB), ``POST
/v1/campaigns/{id}/{start|pause|resume|cancel}``, ``GET /v1/campaigns[/{id}]`` (live
statistics from the counters), ``GET /v1/campaigns/{id}/messages.csv`` (every row, its
message and its events, streamed).

Recipient uploads stream: the server hands ``POST /v1/campaigns/{id}/recipients`` (and
``POST /v1/campaigns`` with a CSV / JSON-lines body) over with ``request.body_stream``
(:meth:`gateway.api.routes.Api.streaming`), bounded by ``http.max_stream_bytes`` rather
than ``http.max_body_bytes``. CSV and JSON lines are parsed incrementally from the chunks
(:class:`CsvStream`, :class:`NdjsonStream`: whole records only; a record cut by a chunk
boundary waits for the next) and staged in durable chunks as they come, so a request holds
one receive of its body plus one chunk of rows, whatever its size. A JSON array is read whole
(bounded by ``max_array_bytes``). ``?offset=N`` says the body's first row is row N of the
campaign's list: rows already staged are skipped, so re-sending a whole list after a dropped
connection finishes it without duplicates.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any

import codec
from gateway.accounts import Account
from gateway.api import bodies
from gateway.api._campaign_doc import campaign_of, offset_of, query_doc, template_of
from gateway.api._campaign_export import export_csv, export_filename
from gateway.api._recipients import (
    CSV_TYPES,
    NDJSON_TYPES,
    CsvStream,
    NdjsonStream,
    body_rows,
    csv_rows,
    parser_for,
    recipient,
)
from gateway.api.problems import FieldError, Problem, bad_body, invalid, not_found
from gateway.campaigns import MSGS, Campaign, CampaignError, Campaigns
from gateway.http import Request, Response
from gateway.templates import MissingField, Template


class CampaignRoutes:
    """Handlers for /v1/templates and /v1/campaigns (``Api`` dispatches here)."""

    def __init__(self, service: Campaigns, *, now: Callable[[], float] = time.time,
                 max_array_bytes: int = 1024 * 1024) -> None:
        self.service = service
        self._now = now
        self.max_array_bytes = max_array_bytes  # a streamed JSON-array body is read whole

    def streams(self, content_type: str) -> bool:
        """Whether ``POST /v1/campaigns`` of this content type carries a recipient list (CSV
        or JSON lines) that the server should stream in."""
        kind = bodies.media_type(content_type or bodies.JSON)[0]
        return kind in CSV_TYPES or kind in NDJSON_TYPES

    # ------------------------------------------------------------------ templates

    async def template_put(self, request: Request, account: Account, _: Any) -> Response:
        tpl = template_of(_body_object(request))
        existed = self.service.templates.get(account.name, tpl.name) is not None
        await self.service.templates.put(account.name, tpl)
        return _json(tpl.to_doc(), 200 if existed else 201)

    async def template_list(self, request: Request, account: Account, _: Any) -> Response:
        return _json({"templates": [t.to_doc() for t in self.service.templates.of_account(account.name)]})

    async def template_get(self, request: Request, account: Account, name: str) -> Response:
        return _json(self._template_of(account, name).to_doc())

    async def template_delete(self, request: Request, account: Account, name: str) -> Response:
        if not await self.service.templates.delete(account.name, name):
            raise not_found(f"no template named {name[:64]!r}")
        return Response(204)

    async def template_preview(self, request: Request, account: Account, name: str) -> Response:
        tpl = self._template_of(account, name)
        doc = _body_object(request)
        fields = doc.get("fields") or {}
        if not isinstance(fields, dict):
            raise invalid([FieldError("fields", "must be an object")])
        try:
            text = tpl.render(fields)
        except MissingField as exc:
            raise invalid([FieldError(f"fields.{exc.field}", "is missing (the template's "
                                                             "on_missing policy is fail)")]) from None
        mode = tpl.encoding or account.policy
        try:
            count = codec.count(text, codec.Policy(mode=mode, max_parts=account.max_parts))
        except codec.CodecError as exc:
            raise invalid([FieldError("text", str(exc)[:120])]) from None
        return _json({"text": count.text, "encoding": count.encoding, "units": count.units,
                      "parts": count.parts, "fields": list(tpl.fields),
                      "replacements": [list(r) for r in count.replacements]})

    def _template_of(self, account: Account, name: str) -> Template:
        tpl = self.service.templates.get(account.name, name)
        if tpl is None:
            raise not_found(f"no template named {name[:64]!r}")
        return tpl

    # ------------------------------------------------------------------ campaigns

    async def create(self, request: Request, account: Account, _: Any) -> Response:
        kind = bodies.media_type(request.header("content-type") or bodies.JSON)[0]
        streamed: AsyncIterator[list[dict[str, Any]]] | None = None
        rows: Iterator[dict[str, Any]] | None = None
        if kind in CSV_TYPES or kind in NDJSON_TYPES:
            doc: dict[str, Any] = query_doc(request.query)
            if request.body_stream is not None:
                streamed = _stream_rows(request.body_stream, kind)
            else:
                rows = _rows(request)
        else:
            doc = _body_object(request)
            recipients = doc.get("recipients")
            if recipients is not None and not isinstance(recipients, list):
                raise invalid([FieldError("recipients", "must be an array of objects")])
            rows = (recipient(r, i) for i, r in enumerate(recipients)) if recipients is not None else None
        draft = doc.get("draft") in (True, "true", "1")
        c = self._campaign(doc, account)
        try:
            await self.service.create(c)
            if streamed is not None:  # a dropped body leaves a draft: resume with .../recipients
                await self.service.stage_batches(account.name, c.name, streamed, offset=0)
            elif rows is not None:
                await self.service.stage(account.name, c.name, rows)
            if not draft:
                c = await self.service.transition(account.name, c.name, "start")
            else:
                c = self.service.get(account.name, c.name) or c
        except CampaignError as exc:
            raise _problem(exc) from None
        return _json(self._doc(c), 201)

    async def append(self, request: Request, account: Account, name: str) -> Response:
        """Stage a chunk of recipients (202 once every row is durable): ``staged``,
        ``skipped`` (rows before the campaign's end, with ``?offset``), ``recipients``."""
        offset = offset_of(request.query)
        if self.service.get(account.name, name) is None:
            raise not_found(f"no campaign named {name[:64]!r}")
        kind = bodies.media_type(request.header("content-type") or "text/csv")[0]
        body = request.body_stream
        try:
            if body is not None and (kind in CSV_TYPES or kind in NDJSON_TYPES):
                n, skipped = await self.service.stage_batches(
                    account.name, name, _stream_rows(body, kind), offset=offset)
            else:
                if body is not None:  # a JSON array (or msgpack) is parsed whole
                    request.body = await _read_all(body, self.max_array_bytes)
                n, skipped = await self.service.stage_batches(
                    account.name, name, _batches(_rows(request)), offset=offset)
        except CampaignError as exc:
            raise _problem(exc) from None
        self.service.wake()
        c = self.service.get(account.name, name)
        assert c is not None
        return _json({"staged": n, "skipped": skipped, "recipients": c.rows}, 202)

    async def list_all(self, request: Request, account: Account, _: Any) -> Response:
        return _json({"campaigns": [c.doc() for c in self.service.of_account(account.name)]})

    async def read(self, request: Request, account: Account, name: str) -> Response:
        return _json(self._doc(self._campaign_of(account, name)))

    async def act(self, request: Request, account: Account, name: str, action: str) -> Response:
        try:
            c = await self.service.transition(account.name, name, action)
        except CampaignError as exc:
            raise _problem(exc) from None
        return _json(self._doc(c))

    async def export(self, request: Request, account: Account, name: str) -> Response:
        c = self._campaign_of(account, name)
        return Response(200, content_type="text/csv; charset=utf-8",
                        headers=[("content-disposition",
                                  f'attachment; filename="{export_filename(c.name)}"')],
                        stream=export_csv(self.service, c))

    def _campaign_of(self, account: Account, name: str) -> Campaign:
        c = self.service.get(account.name, name)
        if c is None:
            raise not_found(f"no campaign named {name[:64]!r}")
        return c

    def _doc(self, c: Campaign) -> dict[str, Any]:
        doc = c.doc()
        doc["statistics"] = self.service.statistics(c)
        return doc

    def _campaign(self, doc: dict[str, Any], account: Account) -> Campaign:
        return campaign_of(doc, account, partial(self.service.templates.get, account.name),
                           self._now())


# ------------------------------------------------------------------------------ helpers


def _json(doc: Any, status: int = 200) -> Response:
    return Response(status, bodies.encode(doc, bodies.JSON))


def _problem(exc: CampaignError) -> Problem:
    errors = [FieldError(f, r) for f, r in exc.errors]
    if exc.status == 404:
        return not_found(exc.errors[0][1])
    if exc.status == 409:
        return Problem(409, "conflict", "Conflict", exc.errors[0][1], errors)
    return invalid(errors)


def _body_object(request: Request) -> dict[str, Any]:
    try:
        doc, _ = bodies.decode(request.body, request.header("content-type") or bodies.JSON)
    except ValueError as exc:
        raise bad_body(str(exc)[:120]) from None
    if not isinstance(doc, dict):
        raise bad_body("must be a JSON object")
    return doc


def _rows(request: Request) -> Iterator[dict[str, Any]]:
    """Recipients from a body read whole (CSV with a header, JSON lines or a JSON array)."""
    return body_rows(request.body, request.header("content-type") or "")


async def _read_all(body: AsyncIterable[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for piece in body:
        size += len(piece)
        if size > limit:
            raise Problem(413, "body-too-large", "Content Too Large",
                          f"a JSON recipients body is limited to {limit} bytes; send text/csv "
                          "or application/x-ndjson, which stream", [])
        parts.append(piece)
    return b"".join(parts)


async def _batches(rows: Iterator[dict[str, Any]], size: int = 5000
                   ) -> AsyncIterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _stream_rows(body: AsyncIterable[bytes], kind: str
                       ) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of a streamed CSV or JSON-lines body, a list per received chunk."""
    parser = parser_for(kind)
    async for piece in body:
        rows = parser.feed(piece)
        if rows:
            yield rows
    rows = parser.feed(b"", final=True)
    if rows:
        yield rows


__all__ = ["MSGS", "CampaignRoutes", "CsvStream", "NdjsonStream", "csv_rows"]
