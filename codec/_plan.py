"""What ``count``'s fast path precomputes per policy, so that a message costs a few C calls.

A :class:`~codec.segment.Policy` carries (as private attributes, set once when it is built):

* ``_fast``: the ``bytes.translate`` table of ``codec._latin1`` for its mode (transliterating
  or exact);
* ``_odd``: the memo of what a *set* of odd (non-basic) Latin-1 characters needs, shared by
  every policy of the same kind (see :func:`odd`);
* ``_gsm_parts`` / ``_ucs2_parts``: parts by units (septets / UTF-16 units with no surrogate
  pair) up to the most ``max_parts`` allows, so that a length becomes a part count, limit check
  included, in one tuple index (an index past the end is over the limit).

Pure data derived from the tables; standard library only.
"""

from __future__ import annotations

from functools import cache
from typing import Final

from codec import _latin1 as _L1

# Routes of an odd-character set (the second item of what ``odd`` returns).
SIMPLE: Final = 0  # only one-for-one transliterations (or nothing odd at all)
EXTENDED: Final = 1  # extension characters, perhaps transliterations too
GENERAL: Final = 2  # a character the fast path does not handle: the general path decides

GSM_SINGLE: Final = 160  # septets in one part
UCS2_SINGLE: Final = 70  # UTF-16 units in one part
GSM_CAP: Final = {8: 153, 16: 152}  # septets per concatenated part, by reference bits
UCS2_CAP: Final = {8: 67, 16: 66}  # UTF-16 units per concatenated part

Replacements = tuple[tuple[str, str], ...]
OddInfo = tuple[Replacements, int]

MEMO_LIMIT: Final = 4096
# Memos of ``odd``, one per table. Bounded (cleared when full); in practice the few dozen sets
# of accented letters a language uses recur, whatever the texts.
MEMO_TRANSLIT: Final[dict[frozenset[int], OddInfo]] = {}
MEMO_EXACT: Final[dict[frozenset[int], OddInfo]] = {}

_EXTENSION: Final = frozenset(_L1.EXTENSION)
_SIMPLE: Final = frozenset(_L1.SIMPLE)
_NOTHING: Final[frozenset[int]] = frozenset()


def odd(key: frozenset[int], memo: dict[frozenset[int], OddInfo]) -> OddInfo:
    """(replacements, route) for the set ``key`` of odd Latin-1 codes; memoised in ``memo``.

    ``memo`` is ``MEMO_TRANSLIT`` (one-for-one transliterations allowed) or ``MEMO_EXACT``.
    """
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    simple = _SIMPLE if memo is MEMO_TRANSLIT else _NOTHING
    found: OddInfo
    if not key <= simple | _EXTENSION:
        found = ((), GENERAL)
    else:
        replacements = tuple(sorted(_L1.PAIRS[c] for c in key & simple))
        found = (replacements, EXTENDED if key & _EXTENSION else SIMPLE)
    memo[key] = found
    return found


@cache  # at most 2 x 255 x 2 keys
def parts_table(single: int, cap: int, max_parts: int) -> tuple[int, ...]:
    """Parts by units, for every length ``max_parts`` parts can carry."""
    longest = single if max_parts == 1 else max(single, max_parts * cap)
    return tuple(1 if units <= single else -(-units // cap) for units in range(longest + 1))


@cache  # at most 4 x 255 x 2 keys
def for_policy(
    mode: str, max_parts: int, ref_bits: int
) -> tuple[bytes, dict[frozenset[int], OddInfo], tuple[int, ...], tuple[int, ...]]:
    """(``_fast``, ``_odd``, ``_gsm_parts``, ``_ucs2_parts``) for a policy."""
    translit = mode == "transliterate"
    return (
        _L1.FAST_TRANSLIT if translit else _L1.FAST_EXACT,
        MEMO_TRANSLIT if translit else MEMO_EXACT,
        parts_table(GSM_SINGLE, GSM_CAP[ref_bits], max_parts),
        parts_table(UCS2_SINGLE, UCS2_CAP[ref_bits], max_parts),
    )
