"""Errors raised by the codec; the codec raises nothing else on bad input.

Tree::

    CodecError(ValueError)
    ├── UnencodableText       a character the chosen policy cannot carry (.char, .position)
    ├── SegmentLimitExceeded  the text needs more parts than allowed (.parts_needed, .max_parts)
    └── InvalidUDH            a user data header or received payload that cannot be parsed

Imports nothing outside the standard library (STYLE.md §1).
"""

from __future__ import annotations


class CodecError(ValueError):
    """Root of every error the codec raises."""


class UnencodableText(CodecError):
    """The text holds a character the policy cannot carry.

    Attributes:
        char: the first offending character.
        position: its index in the text (in code points).
    """

    def __init__(self, char: str, position: int) -> None:
        super().__init__(
            f"character {char!r} (U+{ord(char):04X}) at position {position} "
            "is not in the GSM 7-bit alphabet"
        )
        self.char = char
        self.position = position


class SegmentLimitExceeded(CodecError):
    """The text would need more parts than the policy allows.

    Attributes:
        parts_needed: how many parts the text would take.
        max_parts: the policy's limit.
    """

    def __init__(self, parts_needed: int, max_parts: int) -> None:
        super().__init__(
            f"text needs {parts_needed} parts, more than the maximum of {max_parts}"
        )
        self.parts_needed = parts_needed
        self.max_parts = max_parts


class InvalidUDH(CodecError):
    """A user data header (or the payload carrying it) is malformed."""
