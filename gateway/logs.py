"""Log output: plain text or JSON lines, with phone numbers masked whatever the format.

Modules log with ``logging.getLogger(__name__)`` and ``extra={...}`` (STYLE.md §8) and never
log message bodies; this module is the safety net for numbers. Any E.164 number that reaches
a log line (``+`` and 7 to 15 digits) is shown as its first four and last two digits, so
``+351912345678`` becomes ``+351*******78``: enough to tell a country and match a complaint,
not enough to identify a person.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Final

_E164: Final = re.compile(r"\+\d{7,15}\b")
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def mask_number(number: str) -> str:
    """``+351912345678`` → ``+351*******78``."""
    return number[:4] + "*" * (len(number) - 6) + number[-2:]


def mask_numbers(text: str) -> str:
    """Every E.164 number in ``text`` masked."""
    return _E164.sub(lambda m: mask_number(m.group()), text)


class MaskNumbers(logging.Filter):
    """Masks numbers in the rendered message and in ``extra`` string values, in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = mask_numbers(record.getMessage())
        record.msg, record.args = message, None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, mask_numbers(value))
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ``extra`` fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            doc["error"] = mask_numbers(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str, fmt: str = "text") -> None:
    """Root logging for ``septet serve``: ``fmt`` is ``text`` or ``json`` (JSON lines)."""
    handler = logging.StreamHandler()
    handler.addFilter(MaskNumbers())
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
