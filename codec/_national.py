"""National language shift tables (TS 23.038 §6.2.1.2, Annex A): pick the cheapest combination.

A combination is a locking-shift table (replacing the default alphabet; IE 0x25) and/or a
single-shift table (replacing the extension table; IE 0x24), each named in every part's UDH
(TS 23.040 §9.2.3.24.15-16), so even a one-part message carries a header. ``choose`` tries every
combination the policy allows and keeps the one with the fewest parts, then the smaller header,
then the fewer septets. Standard library only.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from codec import _tables, gsm7, udh
from codec._cuts import gsm_cuts

LANGUAGES: Final = tuple(_tables.NATIONAL_LANGUAGE_IDS)


class Choice(NamedTuple):
    """A combination that carries the text: its septets, cut points and shift IEs."""

    septets: bytes
    cuts: list[tuple[int, int]]
    ies: tuple[udh.InformationElement, ...]

    @property
    def units(self) -> int:
        """Septets, escapes included."""
        return len(self.septets)

    @property
    def parts(self) -> int:
        """Number of parts."""
        return len(self.cuts)


def _combinations() -> list[tuple[str | None, str | None, gsm7.Alphabet]]:
    out = []
    for lock in (None, *_tables.NATIONAL_LOCKING):
        for single in (None, *_tables.NATIONAL_SINGLE):
            if lock is None and single is None:
                continue  # the default alphabet: no national text reaches here with it
            basic = _tables.DEFAULT_ALPHABET if lock is None else _tables.NATIONAL_LOCKING[lock]
            ext = _tables.DEFAULT_EXTENSION if single is None else _tables.NATIONAL_SINGLE[single]
            out.append((lock, single, gsm7.Alphabet(basic, ext)))
    return out


_COMBINATIONS: Final = _combinations()


def _capacity(udh_octets: int) -> int:
    """Septets left in 140 octets after a UDH of ``udh_octets`` (TS 23.040 §9.2.3.16)."""
    return (8 * 140 - 8 * udh_octets) // 7


def choose(text: str, languages: tuple[str, ...], ref_bits: int) -> Choice | None:
    """The cheapest national combination within ``languages`` that carries ``text``, or None."""
    best: tuple[tuple[int, int, int], Choice] | None = None
    concat_octets = 5 if ref_bits == 8 else 6
    for lock, single, alphabet in _COMBINATIONS:
        if (lock is not None and lock not in languages) or (
            single is not None and single not in languages
        ):
            continue
        if alphabet.non_gsm.search(text):
            continue
        ies = []
        if lock is not None:
            ies.append((udh.IE_LOCKING_SHIFT, bytes((_tables.NATIONAL_LANGUAGE_IDS[lock],))))
        if single is not None:
            ies.append((udh.IE_SINGLE_SHIFT, bytes((_tables.NATIONAL_LANGUAGE_IDS[single],))))
        header = 1 + 3 * len(ies)
        septets = alphabet.encode(text)
        if len(septets) <= _capacity(header):
            cuts = [(0, len(septets))]
        else:
            cuts = gsm_cuts(septets, _capacity(header + concat_octets))
        key = (len(cuts), header, len(septets))
        if best is None or key < best[0]:
            best = key, Choice(septets, cuts, tuple(ies))
    return None if best is None else best[1]


_BY_LANGUAGE: Final = {(lock, single): alphabet for lock, single, alphabet in _COMBINATIONS}
_LANGUAGE_OF_ID: Final = {v: k for k, v in _tables.NATIONAL_LANGUAGE_IDS.items()}


def alphabet_for(locking: int | None, single: int | None) -> gsm7.Alphabet:
    """The alphabet a receiver uses for the national language ids of a part's UDH.

    An id without a table (unknown, or Spanish for locking shift) means the default table for
    that half (TS 23.038 §6.2.1.2.4: a receiver lacking a national table uses the default one).
    """
    lock = _LANGUAGE_OF_ID.get(locking) if locking is not None else None
    single_lang = _LANGUAGE_OF_ID.get(single) if single is not None else None
    if lock not in _tables.NATIONAL_LOCKING:
        lock = None
    if single_lang not in _tables.NATIONAL_SINGLE:
        single_lang = None
    return _BY_LANGUAGE.get((lock, single_lang), gsm7.DEFAULT)
