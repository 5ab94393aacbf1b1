"""The OpenAPI 3.1 document of API v1, built from the route table the server routes by.

Paths and methods come from ``gateway.api.routes.ROUTES`` (so they cannot drift from the
server; a test also checks it); request and answer schemas are written out here and mirror
gateway.api.submit (field names, limits) — the tests post every example below.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from gateway.api.submit import MAX_CAMPAIGN, MAX_CLIENT_REF
from gateway.config import POLICIES

_TIME: Final = {"oneOf": [{"type": "string", "format": "date-time"},
                          {"type": "number", "minimum": 0, "maximum": 4102444800}]}
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}

MESSAGE: Final = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "to": {"type": "string", "maxLength": 32,
               "description": "Recipient, E.164 (+CC…) or national with a default country prefix"},
        "from": {"type": "string", "description": "Sender id: up to 15 digits, or up to 11 "
                                                  "characters with at least one letter"},
        "text": {"type": "string", "minLength": 1,
                 "description": "Text; {name} placeholders are filled from fields"},
        "fields": {"type": "object", "maxProperties": 64,
                   "additionalProperties": {"type": ["string", "number"]},
                   "description": "Template values; mobile_phone, mobilephone or phone give the "
                                  "recipient when to is absent"},
        "campaign": {"type": "string", "maxLength": MAX_CAMPAIGN},
        "client_ref": {"type": "string", "maxLength": MAX_CLIENT_REF},
        "send_at": _TIME,
        "not_after": _TIME,
        "encoding": {"type": "string", "enum": list(POLICIES)},
        "max_parts": {"type": "integer", "minimum": 1, "maximum": 255},
        "callback_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "default_country_prefix": {"type": "string", "pattern": "^\\+?[0-9]{1,3}$"},
    },
    "required": ["from", "text"],
}

SCHEMAS: Final[dict[str, Any]] = {
    "Message": MESSAGE,
    "Batch": {"type": "object", "required": ["messages"],
              "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": 1000,
                                          "items": {"$ref": "#/components/schemas/Message"}}},
              "description": "Other Message fields beside messages are defaults for every item"},
    "Accepted": {"type": "object", "properties": {
        "index": {"type": "integer"}, "id": {"type": "string"}, "status": {"const": "ACCEPTED"},
        "to": {"type": "string"}, "encoding": {"enum": ["gsm7", "ucs2", "gsm7-national"]},
        "parts": {"type": "integer"}, "client_ref": {"type": "string"},
        "replacements": {"type": "array", "items": {"type": "array", "minItems": 2,
                                                    "maxItems": 2, "items": {"type": "string"}}}}},
    "BatchAccepted": {"type": "object", "properties": {
        "accepted": {"type": "integer"}, "rejected": {"type": "integer"},
        "messages": {"type": "array", "items": {"oneOf": [
            {"$ref": "#/components/schemas/Accepted"},
            {"type": "object", "properties": {"index": {"type": "integer"},
                                              "status": {"const": 422},
                                              "errors": {"type": "array", "items": {
                                                  "$ref": "#/components/schemas/FieldError"}}}}]}}}},
    "Preview": {"type": "object", "properties": {
        "encoding": {"type": "string"}, "parts": {"type": "integer"}, "units": {"type": "integer"},
        "replacements": {"type": "array"}, "text": {"type": "string"}}},
    "MessageView": {"type": "object", "properties": {
        "id": {"type": "string"}, "to": {"type": "string"}, "from": {"type": "string"},
        "text": {"type": "string"}, "state": {"type": "string"}, "parts": {"type": "integer"},
        "part_status": {"type": "array"}, "events": {"type": "array"}}},
    "Page": {"type": "object", "properties": {
        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/MessageView"}},
        "next_cursor": {"type": ["string", "null"]}}},
    "InboundMessage": {"type": "object", "description": "A mobile-originated message "
                       "(docs/api.md, Inbound); also the data of an SMS_RECEIVED push",
                       "properties": {
        "id": {"type": "string", "pattern": "^[0-9]{16}$"},
        "from": {"type": "string", "description": "the handset's number"},
        "to": {"type": "string", "description": "our number it was sent to"},
        "text": {"type": "string"}, "received_at": {"type": "string", "format": "date-time"},
        "connector": {"type": "string"},
        "encoding": {"type": "string", "enum": ["gsm7", "ucs2", "latin1", "ascii", "utf-8"],
                     "description": "as the carrier coded it (SMPP data_coding); utf-8: an "
                                    "HTTP provider handed over decoded text"},
        "parts": {"type": "integer", "minimum": 1}}},
    "InboundPage": {"type": "object", "required": ["messages", "next_cursor"], "properties": {
        "messages": {"type": "array", "items": {"$ref": "#/components/schemas/InboundMessage"}},
        "next_cursor": {"type": ["string", "null"], "description": "pass as cursor; null: "
                        "nothing newer yet (keep your cursor and ask again later)"}}},
    "OptOut": {"type": "object", "description": "A number on the account's opt-out list "
               "(docs/optouts.md): messages to it end NOT_SENT with code opted_out",
               "required": ["number", "opted_out_at", "source"], "properties": {
        "number": {"type": "string", "pattern": "^\\+[0-9]{2,15}$"},
        "opted_out_at": {"type": "string", "format": "date-time"},
        "source": {"type": "string", "description": "how: api (PUT), keyword (the handset "
                   "replied STOP), or the label given to PUT (import, crm...)"}}},
    "OptOutPage": {"type": "object", "required": ["optouts", "next_cursor"], "properties": {
        "optouts": {"type": "array", "items": {"$ref": "#/components/schemas/OptOut"}},
        "next_cursor": {"type": ["string", "null"], "description": "pass as cursor; null: "
                        "the list was read to its end"}}},
    "CancelRequest": {"type": "object", "additionalProperties": False, "required": ["ids"],
                      "properties": {"ids": {"type": "array", "minItems": 1, "maxItems": 1000,
                                             "items": {"type": "string", "maxLength": 64}}}},
    "CancelResults": {"type": "object", "required": ["results"], "properties": {
        "results": {"type": "array", "description": "one per id, in request order", "items": {
            "type": "object", "required": ["id", "outcome", "state", "code"], "properties": {
                "id": {"type": "string"},
                "outcome": {"enum": ["cancelled", "too_late", "not_found"],
                            "description": "cancelled: NOT_SENT with code cancelled (now or "
                                           "already); too_late: handed to a carrier, being "
                                           "submitted, or final for another reason; not_found: "
                                           "no such message in this account"},
                "state": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}},
    "CancelTooLate": {"type": "object", "description": "409 problem: the message's current "
                      "state and code as extension members", "properties": {
        "type": {"const": "urn:septet:problem:cancel-too-late"}, "title": {"type": "string"},
        "status": {"const": 409}, "detail": {"type": "string"}, "id": {"type": "string"},
        "state": {"type": "string"}, "code": {"type": ["string", "null"]}}},
    "FieldError": {"type": "object", "properties": {"field": {"type": "string"},
                                                    "reason": {"type": "string"}}},
    "Problem": {"type": "object", "description": "RFC 9457 problem details", "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}}},
}

_SEARCH_PARAMS: Final = [
    {"name": n, "in": "query", "required": False, "schema": s, "description": d}
    for n, s, d in (
        ("to", {"type": "string"}, "recipient number"),
        ("campaign", {"type": "string"}, "campaign name"),
        ("status", {"type": "string"}, "states, comma-separated"),
        ("since", {"type": "string"}, "RFC 3339 or Unix seconds, inclusive"),
        ("until", {"type": "string"}, "RFC 3339 or Unix seconds, exclusive"),
        ("q", {"type": "string"}, "case-insensitive text substring"),
        ("cursor", {"type": "string"}, "next_cursor of the previous page"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
    )
]


_NUMBER: Final = {"type": "string", "pattern": "^[+ ]?[0-9]{1,20}$"}
_INBOUND_PARAMS: Final = [
    {"name": n, "in": "query", "required": False, "schema": s, "description": d}
    for n, s, d in (
        ("cursor", {"type": "string", "pattern": "^[0-9]{1,32}$"},
         "next_cursor of the previous answer (absent: from the oldest)"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
         "messages per answer at most (default [api] page_size, at most [api] max_page_size)"),
        ("since", {"type": "string"}, "received at or after: RFC 3339 or Unix seconds"),
        ("to", _NUMBER, "only those sent to this number of ours (with or without +)"),
        ("from", _NUMBER, "only those sent by this number (with or without +)"),
    )
]


_OPTOUT_PARAMS: Final = [
    {"name": n, "in": "query", "required": False, "schema": s, "description": d}
    for n, s, d in (
        ("cursor", _NUMBER, "next_cursor of the previous answer (absent: from the start)"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
         "opt-outs per answer at most (default [api] page_size, at most [api] max_page_size)"),
        ("source", {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,31}$"},
         "only those recorded with this source (api, keyword...)"),
        ("since", {"type": "string"}, "opted out at or after: RFC 3339 or Unix seconds"),
    )
]
_OPTOUT_NUMBER: Final = [{
    "name": "number", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^\\+?[0-9]{3,20}$"},
    "description": "E.164 (+ written %2B, or 00), or national with the account's default "
                   "country prefix: normalised as a submission's to"}]
_OPTOUT_ANSWER: Final = {"application/json": {"schema": {
    "$ref": "#/components/schemas/OptOut"}}}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}},
            "application/msgpack": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _problems(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "problem", "content": {"application/problem+json":
                                                           {"schema": _PROBLEM_REF}}}
            for c in codes}


_INBOUND_STORED: Final = {
    "description": "stored (duplicates: already stored, skipped)",
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["received", "duplicates"],
        "properties": {"received": {"type": "integer", "minimum": 0},
                       "duplicates": {"type": "integer", "minimum": 0}}}}}}
"""The inbound webhook's answer, POST and GET alike."""

_OPERATIONS: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("POST", "/v1/messages"): {
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "maxLength": 255}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Message"},
                                                      {"$ref": "#/components/schemas/Batch"}]}},
            "application/msgpack": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Message"}, {"$ref": "#/components/schemas/Batch"}]}}}},
        "responses": {"202": {"description": "accepted and committed", "content": {
            "application/json": {"schema": {"oneOf": [{"$ref": "#/components/schemas/Accepted"},
                                                      {"$ref": "#/components/schemas/BatchAccepted"}]}}}},
                      **_problems(400, 401, 409, 413, 415, 422, 503)}},
    ("GET", "/v1/messages"): {
        "parameters": _SEARCH_PARAMS,
        "responses": {"200": {"description": "a page (or the whole result as CSV)", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
            "text/csv": {"schema": {"type": "string"}}}}, **_problems(401, 422)}},
    ("GET", "/v1/messages/{id}"): {
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the message", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/MessageView"}}}},
            **_problems(401, 404)}},
    ("POST", "/v1/messages/{id}/cancel"): {
        "description": "End a message NOT_SENT with code cancelled if no part of it has reached "
                       "a carrier (ACCEPTED, QUEUED, e.g. waiting for its send_at). Idempotent. "
                       "A message handed to a carrier cannot be recalled (409).",
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the message, now NOT_SENT cancelled", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/MessageView"}}}},
            "409": {"description": "too late: its current state and code", "content": {
                "application/problem+json": {"schema": {
                    "$ref": "#/components/schemas/CancelTooLate"}}}},
            **_problems(401, 404, 503)}},
    ("POST", "/v1/messages/cancel"): {
        "description": "Cancel up to 1000 messages in one request (one store commit); ids of "
                       "other accounts are not_found and left untouched.",
        "requestBody": {"required": True, "content": _json("CancelRequest")},
        "responses": {"200": {"description": "one outcome per id, in request order",
                              "content": _json("CancelResults")},
                      **_problems(400, 401, 413, 415, 422, 503)}},
    ("GET", "/v1/inbound"): {
        "description": "The account's inbound (MO) messages, oldest first, as a feed. A request "
                       "reads at most [api] max_scan stored messages, so a sparse filter may "
                       "answer fewer than limit with a non-null next_cursor: follow it.",
        "parameters": _INBOUND_PARAMS,
        "responses": {"200": {"description": "a page of inbound messages",
                              "content": {"application/json": {"schema": {
                                  "$ref": "#/components/schemas/InboundPage"}}}},
                      **_problems(401, 422)}},
    ("GET", "/v1/optouts"): {
        "description": "The account's opt-out list in number order. A request reads at most "
                       "[api] max_scan records, so a sparse filter may answer fewer than limit "
                       "with a non-null next_cursor: follow it.",
        "parameters": _OPTOUT_PARAMS,
        "responses": {"200": {"description": "a page of opt-outs", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/OptOutPage"}}}},
                      **_problems(401, 422)}},
    ("POST", "/v1/optouts"): {
        "description": "Put a list of numbers on the account's opt-out list in one write "
                       "(an existing suppression list, a CRM's unsubscribes). Numbers that "
                       "cannot be read are named in rejected and skipped; the others are "
                       "added (already: were there, unchanged).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["numbers"],
            "properties": {
                "numbers": {"type": "array", "minItems": 1, "maxItems": 10000,
                            "items": {"type": "string", "maxLength": 32}},
                "source": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,31}$",
                           "description": "where they came from (default import)"}}}}}},
        "responses": {"200": {"description": "added", "content": {"application/json": {
            "schema": {"type": "object", "required": ["added", "already", "rejected"],
                       "properties": {
                           "added": {"type": "integer", "minimum": 0},
                           "already": {"type": "integer", "minimum": 0},
                           "rejected": {"type": "array", "items": {
                               "$ref": "#/components/schemas/FieldError"}}}}}}},
                      **_problems(400, 401, 413, 415, 422, 503)}},
    ("PUT", "/v1/optouts/{number}"): {
        "description": "Put the number on the account's opt-out list: every later message "
                       "of the account to it ends NOT_SENT opted_out. Idempotent: a number "
                       "already there keeps its first record (200).",
        "parameters": _OPTOUT_NUMBER,
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "source": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,31}$",
                           "description": "where the opt-out came from (default api)"}}}}}},
        "responses": {"201": {"description": "added", "content": _OPTOUT_ANSWER},
                      "200": {"description": "already on the list (unchanged)",
                              "content": _OPTOUT_ANSWER},
                      **_problems(400, 401, 415, 422, 503)}},
    ("GET", "/v1/optouts/{number}"): {
        "parameters": _OPTOUT_NUMBER,
        "responses": {"200": {"description": "the number opted out",
                              "content": _OPTOUT_ANSWER},
                      **_problems(401, 404, 422)}},
    ("DELETE", "/v1/optouts/{number}"): {
        "parameters": _OPTOUT_NUMBER,
        "responses": {"204": {"description": "removed: the account may send to it again"},
                      **_problems(401, 404, 422, 503)}},
    ("POST", "/v1/preview"): {
        "requestBody": {"required": True, "content": _json("Message")},
        "responses": {"200": {"description": "what the text costs", "content": _json("Preview")},
                      **_problems(400, 401, 415, 422)}},
    ("PATCH", "/v1/account"): {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {
                "default_country_prefix": {"type": "string", "pattern": "^\\+?[0-9]{0,3}$"},
                "encoding": {"type": "string", "enum": list(POLICIES)},
                "max_parts": {"type": "integer", "minimum": 1, "maximum": 255},
                "callback_url": {"type": "string", "format": "uri"},
                "callback_secret": {"type": "string"},
                "inbound_url": {"type": "string", "format": "uri"}}}}}},
        "responses": {"200": {"description": "the updated settings"},
                      **_problems(400, 401, 415, 422)}},
    ("GET", "/v1/callbacks/dead-letters"): {
        "parameters": [
            {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "the next of the previous page"},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
        "responses": {"200": {"description": "a page of dead letters (id, dead_at, attempts, "
                                             "error, event as its callback payload) and next"},
                      **_problems(401, 422)}},
    ("POST", "/v1/callbacks/dead-letters/replay"): {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["ids"],
            "properties": {"ids": {"oneOf": [
                {"const": "all"},
                {"type": "array", "minItems": 1, "maxItems": 10000,
                 "items": {"type": "string", "minLength": 1, "maxLength": 64}}]}}}}}},
        "responses": {"200": {"description": "how many were queued again"},
                      **_problems(400, 401, 415, 422)}},
    ("POST", "/v1/receipts/{connector}"): {
        "parameters": [{"name": "connector", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "receipts stored"},
                      **_problems(400, 401, 404, 503)}},
    ("POST", "/v1/inbound/{connector}"): {
        "description": "An HTTP provider's inbound-message webhook: authenticated by the "
                       "connector's inbound_token (else its receipt_token) as a bearer token, "
                       "not an API key. The body is the provider's own (one message or a list, "
                       "JSON or a form), read at the connector's inbound_*_path settings "
                       "(docs/carriers.md). 200 once stored; a message whose provider id "
                       "(inbound_id_path) is already stored is not stored again.",
        "parameters": [{"name": "connector", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [{"type": "object"},
                                                      {"type": "array",
                                                       "items": {"type": "object"}}]}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
        "responses": {"200": _INBOUND_STORED,
                      **_problems(400, 401, 404, 503)}},
    ("GET", "/v1/inbound/{connector}"): {
        "description": "The same webhook for providers that send one message as a GET with "
                       "query parameters (Vonage's default): the query is read at the "
                       "connector's inbound_*_path settings as a form body would be, with the "
                       "same token (bearer, or the connector's inbound_token_param), duplicate "
                       "check and answer; an unreadable query is 422 naming query:<field>.",
        "parameters": [{"name": "connector", "in": "path", "required": True,
                        "schema": {"type": "string"}},
                       {"name": "fields", "in": "query", "required": False, "style": "form",
                        "explode": True, "description": "the provider's own fields",
                        "schema": {"type": "object",
                                   "additionalProperties": {"type": "string"}}}],
        "responses": {"200": _INBOUND_STORED,
                      **_problems(401, 404, 422, 503)}},
}


def document(routes: Iterable[Any]) -> dict[str, Any]:
    """The OpenAPI document for ``routes`` (``gateway.api.routes.ROUTES``)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"operationId": r.handler, "summary": r.summary,
                              "responses": {"200": {"description": "OK"}}}
        op.update(_OPERATIONS.get((r.method, r.template), {}))
        if r.auth:
            op["security"] = [{"apiKey": []}]
        else:
            op["security"] = []
        paths.setdefault(r.template, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Septet SMS gateway", "version": "1",
                 "description": "See docs/api.md for limits and error types."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}],
    }
