"""Message templates with ``{placeholders}``: parse, validate, render. Pure: no I/O, no clock.

A template is text such as ``Hi {contact_firstname}, your invoice {invoice_number} is due
{invoice_duedate}``. Placeholder names are letters, digits and ``_`` (not starting with a
digit), at most 64 characters; ``{{`` and ``}}`` stand for literal braces. Anything else in
braces (``{ name }``, ``{1}``, an unclosed ``{``) is refused when the template is saved, with
the position, so that a typo is found before 200,000 recipients are expanded.

A recipient that lacks a field (absent, or empty after stripping) is handled by the
template's ``on_missing`` policy: ``fail`` (the default) refuses that recipient with
:class:`MissingField` naming the field; ``default`` uses ``defaults[name]`` (or the empty
string when no default is given for that name).

Templates are compiled once into a tuple of literal and field pieces, so rendering a
recipient is a join (about a microsecond), which matters when a campaign expands 50,000
recipients a second.

Must not import: trio, lmdb, gateway.api, gateway.http.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "NAME_RE",
    "MissingField",
    "Template",
    "TemplateError",
    "parse",
    "render",
]

OnMissing = Literal["fail", "default"]
MAX_TEMPLATE_CHARS: Final = 255 * 153
MAX_PLACEHOLDER: Final = 64
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIELD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    """A template that cannot be saved: ``reason`` says why, ``position`` where (or -1)."""

    def __init__(self, reason: str, position: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


class MissingField(ValueError):
    """A recipient lacks ``field`` and the template's policy is ``fail``."""

    def __init__(self, name: str) -> None:
        super().__init__(f"missing field {name!r}")
        self.field = name


Piece = tuple[bool, str]  # (is_field, literal text or field name)


def parse(text: str) -> tuple[Piece, ...]:
    """Split ``text`` into literal and placeholder pieces.

    Raises:
        TemplateError: a malformed or badly named placeholder, or an unbalanced brace.
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"must be at most {MAX_TEMPLATE_CHARS} characters")
    pieces: list[Piece] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            end = text.find("}", i + 1)
            if end < 0:
                raise TemplateError("unclosed '{' (write '{{' for a literal brace)", i)
            name = text[i + 1:end]
            if not _FIELD.fullmatch(name) or len(name) > MAX_PLACEHOLDER:
                raise TemplateError(
                    f"placeholder {{{name[:40]}}} must be a name of letters, digits and _ "
                    f"(not starting with a digit, at most {MAX_PLACEHOLDER} characters)", i)
            if literal:
                pieces.append((False, "".join(literal)))
                literal = []
            pieces.append((True, name))
            i = end + 1
        elif c == "}":
            raise TemplateError("unmatched '}' (write '}}' for a literal brace)", i)
        else:
            j = i + 1
            while j < n and text[j] not in "{}":
                j += 1
            literal.append(text[i:j])
            i = j
    if literal:
        pieces.append((False, "".join(literal)))
    return tuple(pieces)


@dataclass(frozen=True, slots=True)
class Template:
    """A saved template.

    Attributes:
        name: unique per account (``NAME_RE``).
        text: the template text.
        on_missing: ``fail`` (refuse the recipient) or ``default`` (use ``defaults``).
        defaults: value per field name for ``on_missing="default"`` (missing: empty string).
        encoding: codec policy name for its messages ("" = the account's).
        pieces: the compiled form (filled in by :meth:`build`).
    """

    name: str
    text: str
    on_missing: OnMissing = "fail"
    defaults: Mapping[str, str] = field(default_factory=dict)
    encoding: str = ""
    pieces: tuple[Piece, ...] = ()

    @classmethod
    def build(cls, name: str, text: str, on_missing: str = "fail",
              defaults: Mapping[str, object] | None = None, encoding: str = "") -> Template:
        """A checked, compiled template.

        Raises:
            TemplateError: bad name, text, policy or defaults.
        """
        if not NAME_RE.fullmatch(name):
            raise TemplateError("name: 1-64 characters of letters, digits, _ . - "
                                "starting with a letter or digit")
        if not text.strip():
            raise TemplateError("text must not be empty")
        if on_missing not in ("fail", "default"):
            raise TemplateError("on_missing must be 'fail' or 'default'")
        clean: dict[str, str] = {}
        for k, v in (defaults or {}).items():
            if not _FIELD.fullmatch(k) or isinstance(v, bool) or not isinstance(v, str | int | float):
                raise TemplateError(f"defaults.{k[:40]}: a field name with a string value")
            clean[k] = str(v)
        return cls(name, text, on_missing, clean, encoding, parse(text))  # type: ignore[arg-type]

    @property
    def fields(self) -> tuple[str, ...]:
        """Placeholder names in order of first use."""
        return tuple(dict.fromkeys(p for is_field, p in self.pieces if is_field))

    def render(self, values: Mapping[str, object]) -> str:
        """The text for one recipient. Raises :class:`MissingField` under the fail policy."""
        return render(self.pieces, values, self.on_missing, self.defaults)

    def to_doc(self) -> dict[str, object]:
        """JSON/msgpack form (stored and returned by the API)."""
        return {"name": self.name, "text": self.text, "on_missing": self.on_missing,
                "defaults": dict(self.defaults), "encoding": self.encoding or None,
                "fields": list(self.fields)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, object]) -> Template:
        """Inverse of :meth:`to_doc` (re-checked)."""
        defaults = doc.get("defaults") or {}
        assert isinstance(defaults, Mapping)
        return cls.build(str(doc["name"]), str(doc["text"]), str(doc.get("on_missing", "fail")),
                         defaults, str(doc.get("encoding") or ""))


def render(pieces: tuple[Piece, ...], values: Mapping[str, object],
           on_missing: OnMissing = "fail", defaults: Mapping[str, str] | None = None) -> str:
    """Fill compiled ``pieces`` from ``values``.

    Raises:
        MissingField: a field is absent or blank and ``on_missing`` is ``fail``.
    """
    out: list[str] = []
    for is_field, text in pieces:
        if not is_field:
            out.append(text)
            continue
        value = values.get(text)
        if value is None or (isinstance(value, str) and not value.strip()):
            if on_missing == "fail":
                raise MissingField(text)
            value = (defaults or {}).get(text, "")
        out.append(value if isinstance(value, str) else str(value))
    return "".join(out)
