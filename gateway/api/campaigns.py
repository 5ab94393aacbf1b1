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

import codecs
import csv
import io
import json
import math
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl

import codec
from gateway.accounts import Account
from gateway.api import bodies
from gateway.api.problems import FieldError, Problem, bad_body, invalid, not_found
from gateway.api.views import rfc3339
from gateway.campaigns import MSGS, Campaign, CampaignError, Campaigns
from gateway.config import POLICIES
from gateway.http import Request, Response
from gateway.templates import MissingField, Template, TemplateError

MAX_ROW_FIELDS: Final = 64
MAX_VALUE: Final = 1024
CAMPAIGN_FIELDS: Final = frozenset({
    "name", "from", "text", "template", "on_missing", "defaults", "send_at", "not_after",
    "shaping", "recontact_hours", "default_country_prefix", "mobile_prefix", "encoding",
    "max_parts", "description", "recipients", "draft"})
EXPORT_COLUMNS: Final = ("row", "id", "to", "state", "code", "reason", "encoding", "parts",
                         "accepted_at", "updated_at", "carrier_ids", "events")
CSV_TYPES: Final = ("text/csv", "text/plain", "application/csv")
NDJSON_TYPES: Final = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines")
MAX_RECORD: Final = 1024 * 1024  # a CSV record / JSON line longer than this is cut (bad row)


def _json(doc: Any, status: int = 200) -> Response:
    return Response(status, bodies.encode(doc, bodies.JSON))


def _problem(exc: CampaignError) -> Problem:
    errors = [FieldError(f, r) for f, r in exc.errors]
    if exc.status == 404:
        return not_found(exc.errors[0][1])
    if exc.status == 409:
        return Problem(409, "conflict", "Conflict", exc.errors[0][1], errors)
    return invalid(errors)


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
        doc = _body_object(request)
        unknown = [k for k in doc if k not in ("name", "text", "on_missing", "defaults", "encoding")]
        if unknown:
            raise invalid([FieldError(k, "unknown field") for k in unknown])
        tpl = _template(doc, account)
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
            doc: dict[str, Any] = _query_doc(request.query)
            if request.body_stream is not None:
                streamed = _stream_rows(request.body_stream, kind)
            else:
                rows = _rows(request)
        else:
            doc = _body_object(request)
            recipients = doc.get("recipients")
            if recipients is not None and not isinstance(recipients, list):
                raise invalid([FieldError("recipients", "must be an array of objects")])
            rows = (_row(r, i) for i, r in enumerate(recipients)) if recipients is not None else None
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
        offset = _offset(request.query)
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
                                  f'attachment; filename="campaign-{_safe(c.name)}.csv"')],
                        stream=self._export(c))

    async def _export(self, c: Campaign) -> AsyncIterator[bytes]:
        yield _csv_line(EXPORT_COLUMNS)
        store = self.service.store
        buf: list[bytes] = []
        for row, _data, ref in self.service.rows(c.account, c.name):
            if not ref:
                buf.append(_csv_line((row, "", "", "STAGED", "", "", "", "", "", "", "", "")))
            elif ref.startswith("!"):
                code, _, detail = ref[1:].partition(": ")
                buf.append(_csv_line((row, "", "", "REFUSED", code, detail, "", "", "", "", "",
                                      "")))
            else:
                view = store.get_message(ref)
                if view is None:
                    continue
                m = view.message
                events = "; ".join(f"{e.event} {rfc3339(e.at)}" + (f" {e.code}" if e.code else "")
                                   for e in view.events)
                buf.append(_csv_line((
                    row, m.msg_id, m.to, str(view.state), view.code, view.reason, m.encoding,
                    m.parts, rfc3339(m.accepted_at), rfc3339(view.updated_at) or "",
                    " ".join(p.carrier_id for p in view.parts if p.carrier_id), events)))
            if len(buf) >= 500:
                yield b"".join(buf)
                buf = []
                import trio

                await trio.lowlevel.checkpoint()
        if buf:
            yield b"".join(buf)

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
        errors = [FieldError(k, "unknown field") for k in doc if k not in CAMPAIGN_FIELDS]
        text, template = doc.get("text"), doc.get("template")
        tpl: Template | None = None
        if isinstance(template, str) and template:
            tpl = self.service.templates.get(account.name, template)
            if tpl is None:
                errors.append(FieldError("template", f"no template named {template[:64]!r}"))
        elif not isinstance(text, str) or not text.strip():
            errors.append(FieldError("text", "give text or template"))
        shaping = doc.get("shaping") or {}
        if not isinstance(shaping, dict):
            errors.append(FieldError("shaping", "must be an object"))
            shaping = {}
        now = self._now()
        name = doc.get("name") or time.strftime("C%y%m%d%H%M%S", time.gmtime(now)) + \
            secrets.token_hex(2)
        encoding = doc.get("encoding") or (tpl.encoding if tpl else "") or account.policy
        if encoding not in POLICIES:
            errors.append(FieldError("encoding", f"must be one of {', '.join(POLICIES)}"))
        c = Campaign(
            name=str(name), account=account.name, sender=_s(doc.get("from")),
            text=tpl.text if tpl else _s(text), template=tpl.name if tpl else "",
            on_missing=tpl.on_missing if tpl else _s(doc.get("on_missing")) or "fail",
            defaults=dict(tpl.defaults) if tpl else _defaults(doc.get("defaults"), errors),
            encoding=str(encoding),
            max_parts=_number(doc, "max_parts", errors, account.max_parts, 1, 255, integer=True),
            default_prefix=_s(doc.get("default_country_prefix") or doc.get("mobile_prefix")
                              or account.default_prefix),
            send_at=_time(doc.get("send_at"), "send_at", errors),
            not_after=_time(doc.get("not_after"), "not_after", errors),
            slice_percent=_number(shaping, "slice_percent", errors, 0, 0, 100, where="shaping."),
            slice_every=60 * _number(shaping, "slice_every_minutes", errors, 0, 0, 525600,
                                     where="shaping."),
            per_minute=_number(shaping, "per_minute", errors, 0, 0, 1e7, where="shaping."),
            recontact_hours=_number(doc, "recontact_hours", errors, 0, 0, 8784),
            description=_s(doc.get("description"))[:256], created_at=now)
        if errors:
            raise invalid(errors)
        return c


# ------------------------------------------------------------------------------ helpers


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _csv_line(values: tuple[Any, ...]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(
        ["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") and i != 2 else v
         for i, v in enumerate(values)])
    return buf.getvalue().encode()


def _body_object(request: Request) -> dict[str, Any]:
    try:
        doc, _ = bodies.decode(request.body, request.header("content-type") or bodies.JSON)
    except ValueError as exc:
        raise bad_body(str(exc)[:120]) from None
    if not isinstance(doc, dict):
        raise bad_body("must be a JSON object")
    return doc


def _query_doc(query: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    shaping: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in ("slice_percent", "slice_every_minutes", "per_minute"):
            shaping[k] = _num_or_str(v)
        elif k in ("recontact_hours", "max_parts"):
            doc[k] = _num_or_str(v)
        else:
            doc[k] = v
    if shaping:
        doc["shaping"] = shaping
    return doc


def _num_or_str(v: str) -> Any:
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() else f


def _number(doc: dict[str, Any], key: str, errors: list[FieldError], default: float,
            low: float, high: float, *, integer: bool = False, where: str = "") -> Any:
    v = doc.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or (
            integer and not float(v).is_integer()) or not low <= v <= high:
        errors.append(FieldError(where + key, f"must be a number between {low:g} and {high:g}"))
        return default
    return int(v) if integer else float(v)


def _time(value: Any, where: str, errors: list[FieldError]) -> float:
    if value is None or value == "":
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed.timestamp()
        except ValueError:
            pass
    errors.append(FieldError(where, "must be an RFC 3339 time with an offset, or Unix seconds"))
    return 0.0


def _defaults(value: Any, errors: list[FieldError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("defaults", "must be an object"))
        return {}
    return {str(k): _s(v) for k, v in value.items()}


def _template(doc: dict[str, Any], account: Account) -> Template:
    encoding = _s(doc.get("encoding"))
    if encoding and encoding not in POLICIES:
        raise invalid([FieldError("encoding", f"must be one of {', '.join(POLICIES)}")])
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise invalid([FieldError("defaults", "must be an object")])
    try:
        return Template.build(_s(doc.get("name")), _s(doc.get("text")),
                              _s(doc.get("on_missing")) or "fail", defaults, encoding)
    except TemplateError as exc:
        where = "text" if exc.position >= 0 or "text" in exc.reason else (
            exc.reason.split(":")[0] if ":" in exc.reason else "template")
        reason = exc.reason + (f" (at position {exc.position})" if exc.position >= 0 else "")
        raise invalid([FieldError(where, reason)]) from None


def _row(value: Any, index: int) -> dict[str, Any]:
    """One recipient as a flat dict of strings; a bad one carries ``__error__`` (refused
    per row when expanded, not failing the campaign)."""
    if not isinstance(value, dict):
        return {"__error__": f"recipient {index} is not an object"}
    fields = value.get("fields")
    flat = {k: v for k, v in value.items() if k != "fields"}
    if isinstance(fields, dict):
        flat.update(fields)
    if len(flat) > MAX_ROW_FIELDS:
        return {"__error__": f"recipient {index} has more than {MAX_ROW_FIELDS} fields"}
    out: dict[str, Any] = {}
    for k, v in flat.items():
        if isinstance(v, bool) or v is None:
            continue
        s = v if isinstance(v, str) else str(v)
        out[str(k)] = s[:MAX_VALUE]
    return out


def _rows(request: Request) -> Iterator[dict[str, Any]]:
    """Recipients from a body, parsed lazily (CSV with a header, JSON lines or a JSON array)."""
    kind = bodies.media_type(request.header("content-type") or "text/csv")[0]
    body = request.body
    if kind in NDJSON_TYPES:
        return _ndjson(body)
    if kind in CSV_TYPES:
        return csv_rows(io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline=""))
    try:
        doc, _ = bodies.decode(body, request.header("content-type") or bodies.JSON)
    except ValueError as exc:
        raise bad_body(str(exc)[:120]) from None
    if isinstance(doc, dict):
        doc = doc.get("recipients")
    if not isinstance(doc, list):
        raise bad_body("expected an array of recipients (or CSV / JSON lines)")
    return (_row(r, i) for i, r in enumerate(doc))


def _ndjson(body: bytes) -> Iterator[dict[str, Any]]:
    for i, line in enumerate(body.splitlines()):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield {"__error__": f"line {i + 1} is not JSON"}
            continue
        yield _row(value, i)


def _offset(query: str) -> int | None:
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k == "offset":
            if not v.isdigit() or len(v) > 15:
                raise invalid([FieldError("offset", "must be a row number >= 0")])
            return int(v)
    return None


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
    parser: CsvStream | NdjsonStream = NdjsonStream() if kind in NDJSON_TYPES else CsvStream()
    async for piece in body:
        rows = parser.feed(piece)
        if rows:
            yield rows
    rows = parser.feed(b"", final=True)
    if rows:
        yield rows


class CsvStream:
    """Incremental CSV with a header line (delimiter , ; tab or | taken from the header):
    ``feed(bytes)`` returns the rows completed so far. A record is cut only at a newline
    outside quotes; a record longer than ``MAX_RECORD`` is cut at its last newline anyway
    (an unbalanced quote then becomes one bad row rather than unbounded memory)."""

    def __init__(self) -> None:
        self._decode = codecs.getincrementaldecoder("utf-8-sig")(errors="replace").decode
        self._carry = ""
        self._names: list[str] | None = None
        self._delimiter = ","

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        text = self._carry + self._decode(data, final)
        cut = len(text) if final else text.rfind("\n") + 1
        if not final and text.count('"', 0, cut) % 2 and len(text) <= MAX_RECORD:
            cut = 0  # the last newline is inside a quoted field: wait for more
        done, self._carry = text[:cut], text[cut:]
        if not done:
            return []
        if self._names is None:
            header, _, done = done.partition("\n")
            if not header.strip():
                self._names = []
            else:
                self._delimiter = max((",", ";", "\t", "|"), key=header.count)
                self._names = [h.strip().lower() for h in
                               next(csv.reader([header], delimiter=self._delimiter))]
        names = self._names
        if not names:
            return []
        out = []
        try:
            for values in csv.reader(io.StringIO(done, newline=""), delimiter=self._delimiter):
                if values and values != [""]:
                    out.append({k: v.strip()[:MAX_VALUE]
                                for k, v in zip(names, values, strict=False) if k})
        except csv.Error as exc:
            out.append({"__error__": f"CSV: {str(exc)[:80]}"})
        return out


class NdjsonStream:
    """Incremental JSON lines: ``feed(bytes)`` returns the rows of the lines completed."""

    def __init__(self) -> None:
        self._carry = b""
        self._line = 0

    def feed(self, data: bytes, *, final: bool = False) -> list[dict[str, Any]]:
        data = self._carry + data
        cut = len(data) if final else data.rfind(b"\n") + 1
        if not cut and len(data) > MAX_RECORD:
            cut = len(data)  # one line longer than MAX_RECORD: judged (and refused) now
        done, self._carry = data[:cut], data[cut:]
        if not done:
            return []
        lines = done.split(b"\n")
        if done.endswith(b"\n"):
            lines.pop()  # the empty piece after the last newline
        out = []
        for line in lines:
            self._line += 1
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                out.append({"__error__": f"line {self._line} is not JSON"})
                continue
            out.append(_row(value, self._line - 1))
        return out


def csv_rows(text: io.TextIOBase | Iterator[str]) -> Iterator[dict[str, Any]]:
    """Rows of a CSV with a header line; the delimiter (, ; tab |) is taken from the header."""
    lines = iter(text)
    header = next(lines, "")
    if not header.strip():
        return
    delimiter = max((",", ";", "\t", "|"), key=header.count)
    names = [h.strip().lower() for h in next(csv.reader([header], delimiter=delimiter))]
    for values in csv.reader(lines, delimiter=delimiter):
        if not values or values == [""]:
            continue
        yield {k: v.strip()[:MAX_VALUE] for k, v in zip(names, values, strict=False) if k}


__all__ = ["MSGS", "CampaignRoutes", "CsvStream", "NdjsonStream", "csv_rows"]
