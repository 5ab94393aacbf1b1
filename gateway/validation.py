"""Validation of what clients submit: phone numbers to E.164, sender ids, texts.

Phone numbers. ``phonenumbers.parse`` + ``is_valid_number`` costs ~17–27 µs a number here,
too much at 50,000 messages/s. Two things keep it off the hot path:

* a fast path for numbers already in international form (``+`` or ``00`` then digits, with
  the usual separators): the country calling code is found by prefix (calling codes are
  prefix-free), and the national significant number is matched against one compiled
  regular expression per calling code, the union of every number-type pattern (fixed line,
  mobile, VoIP, …) of every region sharing that code — the same test ``is_valid_number``
  makes, costing ~1–2 µs. A hypothesis test checks the two agree;
* a bounded cache of results (numbers repeat: retries, campaigns to the same list).

National numbers (no ``+``/``00``) need a default country prefix, per account or per request;
they go through ``phonenumbers`` (which knows trunk prefixes such as the UK's leading 0). A
number with letters or non-ASCII digits is refused before parsing: ``phonenumbers`` would
quietly read vanity letters and Arabic-Indic digits, and nobody means those in an API.

Every refusal is a :class:`Invalid` carrying the reason; the API layer adds the field name.
Must not import: gateway.api, gateway.http.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Final

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

MAX_E164_DIGITS: Final = 15
PHONE_FIELDS: Final = ("mobile_phone", "mobilephone", "phone")
_SEPARATORS: Final = str.maketrans("", "", " -.()/\t")
_TYPES: Final = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
                 "personal_number", "voip", "pager", "uan", "voicemail")


class Invalid(ValueError):
    """A value that cannot be accepted; ``reason`` is a sentence for the problem document."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Phone numbers


class NumberNormaliser:
    """Numbers to E.164 with a bounded result cache. One per process; not thread-safe."""

    def __init__(self, cache_size: int = 200_000) -> None:
        self._cache: dict[tuple[str, str], str | Invalid] = {}
        self._cache_size = cache_size

    def normalise(self, raw: str, default_prefix: str = "") -> str:
        """``raw`` as ``+<digits>`` (E.164).

        Args:
            raw: the number as given.
            default_prefix: calling code (``"351"`` or ``"+351"``) applied only when ``raw``
                has no international prefix.

        Raises:
            Invalid: with the reason.
        """
        key = (raw, default_prefix)
        hit = self._cache.get(key)
        if hit is None:
            hit = _normalise(raw, default_prefix)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()  # crude but bounded; refills at ~2 µs a number
            self._cache[key] = hit
        if isinstance(hit, Invalid):
            raise hit
        return hit


def _normalise(raw: str, default_prefix: str) -> str | Invalid:
    if raw[:1] == "+" and raw.isascii() and raw[1:].isdigit() and len(raw) <= MAX_E164_DIGITS + 1:
        # Already E.164 in form (the common case): what the general path below does with
        # it, without the strip/translate copies. The validity check is the same one.
        return raw if valid_international(raw[1:]) else _NOT_IN_PLAN
    return _normalise_general(raw, default_prefix)


_NOT_IN_PLAN: Final = Invalid("is not a valid number in its country's numbering plan")


def _normalise_general(raw: str, default_prefix: str) -> str | Invalid:
    text = raw.strip()
    if not text:
        return Invalid("must not be empty")
    if not text.isascii():
        return Invalid("must be written with ASCII digits")
    cleaned = text.translate(_SEPARATORS)
    if cleaned.startswith("+"):
        digits = cleaned[1:]
    elif cleaned.startswith("00"):
        digits = cleaned[2:]
    else:
        digits = ""
    check = digits or cleaned
    if not check.isdigit():
        if any(c.isalpha() for c in check):
            return Invalid("must not contain letters")
        return Invalid("must contain only digits after an optional leading +")
    if digits:
        if len(digits) > MAX_E164_DIGITS:
            return Invalid(f"has more than {MAX_E164_DIGITS} digits")
        return "+" + digits if valid_international(digits) else Invalid(
            "is not a valid number in its country's numbering plan")
    return _national(cleaned, default_prefix)


def _national(number: str, default_prefix: str) -> str | Invalid:
    prefix = default_prefix.lstrip("+")
    if not prefix:
        return Invalid("has no country prefix (+CC) and no default country prefix is set")
    if not prefix.isdigit() or not prefix.isascii() or int(prefix) not in COUNTRY_CODE_TO_REGION_CODE:
        return Invalid(f"default country prefix {default_prefix!r} is not a calling code")
    region = COUNTRY_CODE_TO_REGION_CODE[int(prefix)][0]
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return Invalid("is not a phone number")
    if not phonenumbers.is_valid_number(parsed):
        return Invalid("is not a valid number in its country's numbering plan")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def valid_international(digits: str) -> bool:
    """Whether ``digits`` (ASCII digits: calling code + national number) is a valid number,
    as ``phonenumbers.is_valid_number`` judges it."""
    for size in (1, 2, 3):
        if len(digits) <= size:
            return False
        code = _CODES.get(digits[:size])
        if code is not None:  # calling codes are prefix-free: the first match is the code
            pattern = _pattern_for(code)
            return pattern is not None and pattern.fullmatch(digits[size:]) is not None
    return False


_CODES: Final = {str(code): code for code in COUNTRY_CODE_TO_REGION_CODE}  # "351" → 351


@cache
def _pattern_for(code: int) -> re.Pattern[str] | None:
    """One regex: every number-type pattern of every region using calling code ``code``."""
    alternatives: list[str] = []
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        if region == "001":
            meta = PhoneMetadata.metadata_for_nongeo_region(code)
        else:
            meta = PhoneMetadata.metadata_for_region(region)
        if meta is None:
            continue
        general = _desc_pattern(meta.general_desc)
        types = [p for p in (_desc_pattern(getattr(meta, t)) for t in _TYPES) if p]
        if general and types:
            # is_valid_number: general description AND one specific type.
            alternatives.append(f"(?=(?:{general})$)(?:{'|'.join(types)})")
        # Codes shared by several regions (+1, +7, +44, +262...) are judged as the union of
        # their regions; phonenumbers picks one region first. tests/gateway/test_validation.py
        # compares both on random numbers of every calling code (no disagreement found).
    return re.compile("|".join(alternatives)) if alternatives else None


def _desc_pattern(desc: object) -> str | None:
    if desc is None:
        return None
    pattern: str | None = getattr(desc, "national_number_pattern", None)
    lengths = getattr(desc, "possible_length", None)
    if pattern is None or lengths == (-1,):
        return None
    if lengths:
        sizes = "|".join(rf"\d{{{n}}}" for n in lengths)
        return f"(?=(?:{sizes})$)(?:{pattern})"
    return pattern


def pick_phone(record: Mapping[str, object]) -> tuple[str, str] | None:
    """The (field, value) of the first non-empty phone field: mobile_phone, mobilephone, phone."""
    for name in PHONE_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return name, value
    return None


# ---------------------------------------------------------------------------------------------
# Sender ids

MAX_NUMERIC_SENDER: Final = 15
MAX_ALPHA_SENDER: Final = 11
_ALPHA_OK: Final = re.compile(r"[A-Za-z0-9 .\-_&+!?'#@:,]+")


def check_sender(sender: str) -> str:
    """Validate a sender id: numeric up to 15 digits (optional leading +), or alphanumeric up
    to 11 characters with at least one letter. Returns it unchanged.

    Raises:
        Invalid: with the reason.
    """
    if not sender:
        raise Invalid("must not be empty")
    digits = sender.removeprefix("+")
    if digits.isascii() and digits.isdigit():
        if len(digits) > MAX_NUMERIC_SENDER:
            raise Invalid(f"a numeric sender has at most {MAX_NUMERIC_SENDER} digits")
        return sender
    if not sender.isascii() or _ALPHA_OK.fullmatch(sender) is None:
        raise Invalid("an alphanumeric sender uses ASCII letters, digits, spaces and .-_&+!?'#@:,")
    if len(sender) > MAX_ALPHA_SENDER:
        raise Invalid(f"an alphanumeric sender has at most {MAX_ALPHA_SENDER} characters")
    if not any(c.isalpha() for c in sender):
        raise Invalid("an alphanumeric sender needs at least one letter")
    if sender != sender.strip():
        raise Invalid("must not start or end with a space")
    return sender


# ---------------------------------------------------------------------------------------------
# Templates

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, fields: Mapping[str, object]) -> str:
    """Fill ``{name}`` placeholders from ``fields`` (``{{``/``}}`` are literal braces).

    Raises:
        Invalid: a placeholder with no value.
    """
    if "{" not in template:
        return template
    missing: list[str] = []

    def fill(match: re.Match[str]) -> str:
        value = fields.get(match.group(1))
        if value is None:
            missing.append(match.group(1))
            return ""
        return str(value)

    out = _PLACEHOLDER.sub(fill, template.replace("{{", "\x00").replace("}}", "\x01"))
    if missing:
        raise Invalid(f"placeholder {{{missing[0]}}} has no value in fields")
    return out.replace("\x00", "{").replace("\x01", "}")
