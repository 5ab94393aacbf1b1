"""A generic HTTP provider connector (JSON or form over httpx) and its receipt parser.

``HttpCarrier`` satisfies ``actors.ports.Carrier``: each part becomes one request built from
``HttpProviderConfig`` (URL, method, headers such as the auth header, a field mapping from
part attributes to request fields, static fields), and the carrier id is read at
``id_path`` (a dotted path, integers index lists: ``messages.0.message-id``) in the JSON
answer. HTTP statuses in ``transient_statuses`` (429, 5xx by default) and transport errors
are transient; other non-2xx are permanent. A timeout or a connection broken after the
request went out is "in doubt".

Receipts arrive at ``POST /v1/receipts/{connector}`` (the gateway mounts the route) and are
read by the pure ``parse_receipts(config, body, content_type)``. Carrier ids stay verbatim.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
import trio

from actors.messages import CarrierReceipt, ReceiptState, SubmitPart
from actors.ports import ReceiptSink, SubmitResult
from adapters.errors import InvalidReceipt
from adapters.smpp.receipts import receipt_state
from codec import CodecError, decode_part

logger = logging.getLogger(__name__)

DEFAULT_STATUS_MAP: tuple[tuple[str, str], ...] = (
    ("delivered", ReceiptState.DELIVRD),
    ("delivrd", ReceiptState.DELIVRD),
    ("failed", ReceiptState.UNDELIV),
    ("undelivered", ReceiptState.UNDELIV),
    ("expired", ReceiptState.EXPIRED),
    ("rejected", ReceiptState.REJECTD),
    ("accepted", ReceiptState.ACCEPTD),
    ("sent", ReceiptState.ENROUTE),
    ("buffered", ReceiptState.ENROUTE),
    ("deleted", ReceiptState.DELETED),
)


@dataclass(frozen=True, slots=True)
class HttpProviderConfig:
    """One HTTP provider. ``fields`` maps request field -> part attribute.

    Part attributes: ``to``, ``to_digits`` (no '+'), ``sender``, ``text`` (the part decoded),
    ``msg_id``, ``part``, ``parts``, ``udh_hex``, ``body_hex``, ``data_coding``,
    ``concat_ref``, ``account``.
    """

    name: str
    url: str
    method: str = "POST"
    body_format: str = "json"  # "json" or "form"
    headers: tuple[tuple[str, str], ...] = ()
    fields: tuple[tuple[str, str], ...] = (("to", "to"), ("from", "sender"), ("text", "text"))
    static_fields: tuple[tuple[str, str], ...] = ()
    id_path: str = "id"
    error_path: str = ""  # a 2xx whose JSON has a truthy value here is refused (permanent)
    transient_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})
    timeout: float = 10.0
    concurrency: int = 32
    receipt_list_path: str = ""  # where a list of receipts sits in a JSON body ("" = body)
    receipt_id_path: str = "id"
    receipt_status_path: str = "status"
    receipt_error_path: str = "error_code"
    receipt_done_path: str = ""
    receipt_status_map: tuple[tuple[str, str], ...] = DEFAULT_STATUS_MAP
    # inbound (MO) messages posted to POST /v1/inbound/{name} (adapters.http_inbound)
    inbound_list_path: str = ""  # where a list of messages sits in a JSON body ("" = body)
    inbound_from_path: str = "from"  # the handset's number
    inbound_to_path: str = "to"  # our number (routes the message to an account)
    inbound_text_path: str = "text"
    inbound_id_path: str = ""  # the provider's message id: "" = no duplicate detection
    inbound_time_path: str = ""  # when the provider received it: "" = when we did
    # a concatenated message sent part by part (Vonage's concat-ref, concat-total, concat-part):
    # the store joins the parts; all three or none ("" = every message is whole)
    inbound_concat_ref_path: str = ""
    inbound_concat_total_path: str = ""
    inbound_concat_part_path: str = ""


def json_path(document: Any, path: str) -> Any:
    """The value at dotted ``path`` in ``document`` (integers index lists); None if absent."""
    value = document
    for key in path.split(".") if path else ():
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def part_values(part: SubmitPart) -> dict[str, Any]:
    """The attributes a field mapping may name, for one part."""
    try:
        text = decode_part(part.udh + part.body, part.data_coding, udhi=bool(part.udh)).text
    except CodecError:
        text = ""
    return {
        "to": part.to,
        "to_digits": part.to.lstrip("+"),
        "sender": part.sender,
        "text": text,
        "msg_id": part.msg_id,
        "part": part.part,
        "parts": part.parts,
        "udh_hex": part.udh.hex(),
        "body_hex": part.body.hex(),
        "data_coding": part.data_coding,
        "concat_ref": part.concat_ref,
        "account": part.account,
    }


def build_request(config: HttpProviderConfig, part: SubmitPart) -> dict[str, Any]:
    """The request fields for ``part`` (pure)."""
    values = part_values(part)
    body: dict[str, Any] = dict(config.static_fields)
    for name, attribute in config.fields:
        body[name] = values[attribute]
    return body


def classify_response(config: HttpProviderConfig, status: int, content: bytes) -> SubmitResult:
    """The result for one HTTP answer (pure)."""
    if not 200 <= status < 300:
        transient = status in config.transient_statuses
        return SubmitResult(error=f"HTTP {status}", code=f"http_{status}", transient=transient)
    try:
        document = json.loads(content) if content else None
    except ValueError:
        document = None
    if config.error_path and json_path(document, config.error_path):
        code = str(json_path(document, config.error_path))
        return SubmitResult(error="provider refused", code=code[:64], transient=False)
    carrier_id = json_path(document, config.id_path)
    if carrier_id is None or carrier_id == "":
        return SubmitResult(error="no carrier id in the answer", code="no_carrier_id",
                            transient=False, in_doubt=True)
    return SubmitResult(carrier_id=str(carrier_id))


class HttpCarrier:
    """``Carrier`` over one HTTP provider; ``run`` owns the httpx client."""

    def __init__(self, config: HttpProviderConfig, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._limiter = trio.CapacityLimiter(config.concurrency)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def ready(self) -> bool:
        return self._client is not None

    async def run(self, receipts: ReceiptSink, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the connection pool open; receipts come through the HTTP route, not here."""
        headers = dict(self.config.headers)
        async with httpx.AsyncClient(transport=self._transport, headers=headers,
                                     timeout=self.config.timeout) as client:
            self._client = client
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._client = None

    async def submit_many(self, parts: Sequence[SubmitPart]) -> list[SubmitResult]:
        """One request per part, at most ``concurrency`` at a time; results in order."""
        results: list[SubmitResult] = [SubmitResult(error="not started", code="not_bound",
                                                    transient=True)] * len(parts)
        client = self._client
        if client is None:
            return results

        async def one(index: int, part: SubmitPart) -> None:
            async with self._limiter:
                results[index] = await self._submit_one(client, part)

        async with trio.open_nursery() as nursery:
            for index, part in enumerate(parts):
                nursery.start_soon(one, index, part)
        return results

    async def _submit_one(self, client: httpx.AsyncClient, part: SubmitPart) -> SubmitResult:
        body = build_request(self.config, part)
        kwargs: dict[str, Any] = {"json": body} if self.config.body_format == "json" else {
            "data": {k: str(v) for k, v in body.items()}}
        try:
            with trio.fail_after(self.config.timeout + 1.0):  # every call has a deadline
                response = await client.request(self.config.method, self.config.url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return SubmitResult(error=f"connect failed: {type(exc).__name__}", code="connect",
                                transient=True)
        except (httpx.TransportError, trio.TooSlowError) as exc:
            logger.warning("http %s: %s", self.name, type(exc).__name__,
                           extra={"carrier": self.name})
            return SubmitResult(error=f"no answer: {type(exc).__name__}", code="timeout",
                                transient=True, in_doubt=True)
        return classify_response(self.config, response.status_code, response.content)


# --------------------------------------------------------------------------------------------
# Receipts posted to POST /v1/receipts/{connector}.


def _done_at(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(value).timestamp()  # 3.11+: a final "Z" is UTC
        except ValueError:
            return 0.0
    return 0.0


def _records(config: HttpProviderConfig, body: bytes, content_type: str) -> list[Any]:
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            return [dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))]
        except (UnicodeDecodeError, ValueError) as exc:
            raise InvalidReceipt(f"form body does not parse: {exc}") from exc
    if kind == "application/json" or kind.endswith("+json"):
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise InvalidReceipt(f"JSON body does not parse: {exc}") from exc
        if config.receipt_list_path:
            document = json_path(document, config.receipt_list_path)
        return document if isinstance(document, list) else [document]
    raise InvalidReceipt(f"content type {content_type!r} is not JSON or a form")


def parse_receipts(config: HttpProviderConfig, body: bytes, content_type: str, *,
                   received_at: float | None = None) -> list[CarrierReceipt]:
    """The receipts in a provider's callback body (pure apart from the default clock).

    Raises:
        InvalidReceipt: the body does not parse, or a record has no carrier id.
    """
    now = time.time() if received_at is None else received_at
    status_map = {k.lower(): v for k, v in config.receipt_status_map}
    out = []
    for record in _records(config, body, content_type):
        if not isinstance(record, Mapping):
            raise InvalidReceipt("a receipt must be an object")
        carrier_id = json_path(record, config.receipt_id_path)
        if carrier_id is None or carrier_id == "":
            raise InvalidReceipt(f"receipt without {config.receipt_id_path!r}")
        status = str(json_path(record, config.receipt_status_path) or "")
        state = status_map.get(status.lower()) or receipt_state(status)
        error = json_path(record, config.receipt_error_path) if config.receipt_error_path else None
        done = json_path(record, config.receipt_done_path) if config.receipt_done_path else None
        out.append(CarrierReceipt(
            connector=config.name,
            carrier_id=str(carrier_id),
            state=str(state),
            error_code="" if error in (None, "", 0, "0") else str(error),
            received_at=now,
            done_at=_done_at(done),
        ))
    return out


__all__ = ["HttpCarrier", "HttpProviderConfig", "build_request", "classify_response",
           "json_path", "parse_receipts"]
