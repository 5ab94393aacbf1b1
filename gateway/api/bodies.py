"""Strict request bodies: JSON (RFC 8259 with I-JSON's rules, RFC 7493) and msgpack.

Refused, each with a problem document naming the place: bytes that are not UTF-8, duplicate
object keys (I-JSON §2.3; ``json`` would silently keep the last), ``NaN``/``Infinity`` (not
JSON at all, though Python writes them), lone surrogates (``"\\ud800"``; I-JSON §2.1), nesting
beyond the parser's recursion limit, msgpack extension types and trailing bytes.

Content types: ``application/json`` (charset utf-8 only), ``application/msgpack`` (and the
older ``application/x-msgpack``). A body sent with ``application/x-www-form-urlencoded`` that
begins with ``{`` or ``[`` is read as JSON, because that is what ``curl -d '{...}'`` sends
by default; a real form body is refused with 415 like every other type.

Must not import: gateway.http.server internals.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring
from typing import Any, Final

import msgpack

from gateway.api.problems import FieldError, Problem, bad_body

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(str(k))
            seen.add(k)
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


_MEDIA_CACHE: dict[str, tuple[str, dict[str, str]]] = {}


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` in lower case and the parameters of a Content-Type value (cached)."""
    hit = _MEDIA_CACHE.get(content_type)
    if hit is None:
        hit = _media_type(content_type)
        if len(_MEDIA_CACHE) < 256:
            _MEDIA_CACHE[content_type] = hit
    return hit


def _media_type(content_type: str) -> tuple[str, dict[str, str]]:
    kind, *params = content_type.split(";")
    out = {}
    for p in params:
        name, _, value = p.strip().partition("=")
        out[name.lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), out


def decode(body: bytes, content_type: str) -> tuple[Any, str]:
    """Parse ``body``; return the value and the format (``JSON`` or ``MSGPACK``).

    Raises:
        Problem: 415 for an unsupported type, 400 for a body that does not parse.
    """
    kind, params = media_type(content_type) if content_type else (JSON, {})
    if kind in ("application/msgpack", "application/x-msgpack"):
        return decode_msgpack(body), MSGPACK
    if kind == "application/x-www-form-urlencoded" and body[:1] in (b"{", b"["):
        kind = JSON  # curl -d without -H Content-Type
    if kind != JSON and not (kind.startswith("application/") and kind.endswith("+json")):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"Content-Type {kind or '(none)'} is not accepted; send {JSON} or {MSGPACK}",
                      [FieldError("header:Content-Type", "must be application/json or "
                                                         "application/msgpack")])
    charset = params.get("charset", "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"charset {charset} is not accepted; JSON is UTF-8",
                      [FieldError("header:Content-Type", "charset must be utf-8")])
    return decode_json(body), JSON


def decode_json(body: bytes) -> Any:
    """Strict JSON from bytes (see the module docstring)."""
    if not body:
        raise bad_body("the body is empty; a JSON document was expected")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_body(f"not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise bad_body("a byte order mark is not allowed")
    try:
        stripped = text.strip(" \t\r\n")
        value, end = _DECODER.raw_decode(stripped)
        if end != len(stripped):
            raise json.JSONDecodeError("extra data after the document", stripped, end)
    except _Duplicate as dup:
        raise bad_body(f"duplicate key {dup.key!r} in an object", dup.key) from None
    except json.JSONDecodeError as exc:
        raise bad_body(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise bad_body("nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, integers with thousands of digits
        raise bad_body(str(exc)[:120]) from None
    if _SURROGATE_ESCAPE.search(text):
        path = _lone_surrogate(value, "")
        if path is not None:
            raise bad_body("contains a lone UTF-16 surrogate escape", path or "body")
    return value


def _lone_surrogate(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if _lone_surrogate(k, sub) is not None:
                return sub
            found = _lone_surrogate(v, sub)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _lone_surrogate(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not accepted")


def decode_msgpack(body: bytes) -> Any:
    """Strict msgpack: UTF-8 strings, string map keys, no duplicates, no extension types."""
    if not body:
        raise bad_body("the body is empty; a msgpack document was expected")
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, object_pairs_hook=_pairs,
                               ext_hook=_no_ext)
    except _Duplicate as dup:
        raise bad_body(f"duplicate key {dup.key!r} in a map", dup.key) from None
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise bad_body(f"invalid msgpack: {str(exc)[:100]}") from None


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(value: Any, fmt: str) -> bytes:
    """Answer body in the request's format."""
    if fmt == MSGPACK:
        return bytes(msgpack.packb(value, use_bin_type=True))
    return _ENCODER.encode(value).encode()


_REPLACEMENTS: dict[tuple[tuple[str, str], ...], str] = {}  # replacements → their JSON


def accepted_json(msg_id: str, to: str, count: Any, client_ref: str) -> bytes:
    """The 202 document of one accepted message, byte for byte what :func:`encode` makes of
    ``{"id", "status", "to", "encoding", "parts", "replacements"[, "client_ref"]}``, formatted
    directly (a third of the encoder's cost; this is every single-message answer)."""
    return accepted_text(None, msg_id, to, count, client_ref).encode()


def accepted_text(index: int | None, msg_id: str, to: str, count: Any, client_ref: str) -> str:
    """One accepted message's JSON object (with ``"index"`` first when given), as the encoder
    would write it."""
    q = encode_basestring  # the encoder's own quoting (ensure_ascii=False)
    reps = count.replacements
    if reps:
        r = _REPLACEMENTS.get(reps)
        if r is None:
            r = "[" + ",".join([f"[{q(a)},{q(b)}]" for a, b in reps]) + "]"
            if len(_REPLACEMENTS) < 4096:
                _REPLACEMENTS[reps] = r
    else:
        r = "[]"
    ref = f',"client_ref":{q(client_ref)}' if client_ref else ""
    at = "{" if index is None else f'{{"index":{int(index)},'
    return (f'{at}"id":{q(msg_id)},"status":"ACCEPTED","to":{q(to)},'
            f'"encoding":{q(count.encoding)},"parts":{int(count.parts)},"replacements":{r}{ref}}}')


def text(value: Any) -> str:
    """``value`` as compact JSON text (what :func:`encode` writes, before UTF-8)."""
    return _ENCODER.encode(value)


def batch_json(accepted: int, rejected: int, items: list[str]) -> bytes:
    """The 202 document of a batch from its items' JSON texts (see :func:`accepted_text`)."""
    return (f'{{"accepted":{int(accepted)},"rejected":{int(rejected)},"messages":['
            + ",".join(items) + "]}").encode()
