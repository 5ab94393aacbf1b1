"""The lookup tables, checked against TS 23.038 and an independent implementation (gsm0338)."""

from __future__ import annotations

import unicodedata

from gsm0338.charset import (
    BASIC_CHARACTER_SET,
    BASIC_CHARACTER_SET_EXTENSION,
    SINGLE_SHIFT_CHARACTER_SET_SPANISH,
)

import codec
from codec import _tables, gsm7


def _named(table: dict[int, str]) -> dict[int, str]:
    return {k: unicodedata.lookup(v) for k, v in table.items() if v != "ESCAPE"}


def test_default_alphabet_matches_gsm0338() -> None:
    ours = {i: c for i, c in enumerate(_tables.DEFAULT_ALPHABET) if i != 0x1B}
    assert len(_tables.DEFAULT_ALPHABET) == 128
    assert _named(BASIC_CHARACTER_SET) == ours


def test_extension_and_spanish_single_shift_match_gsm0338() -> None:
    assert _named(BASIC_CHARACTER_SET_EXTENSION) == _tables.DEFAULT_EXTENSION
    assert _tables.NATIONAL_SINGLE["es"] == _named(SINGLE_SHIFT_CHARACTER_SET_SPANISH)


def test_locking_tables_differ_from_default_only_where_the_spec_says() -> None:
    # TS 23.038 A.3.1 (Turkish) and A.3.3 (Portuguese): positions that differ from 6.2.1.
    default = _tables.DEFAULT_ALPHABET
    changed = {
        lang: {i: c for i, c in enumerate(table) if c != default[i]}
        for lang, table in _tables.NATIONAL_LOCKING.items()
    }
    assert changed["tr"] == {
        0x04: "€", 0x07: "ı", 0x0B: "Ğ", 0x0C: "ğ", 0x1C: "Ş", 0x1D: "ş", 0x40: "İ", 0x60: "ç",
    }
    assert changed["pt"] == {
        0x04: "ê", 0x06: "ú", 0x07: "í", 0x08: "ó", 0x09: "ç", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á",
        0x0F: "á", 0x12: "ª", 0x13: "Ç", 0x14: "À", 0x15: "∞", 0x16: "^", 0x17: "\\", 0x18: "€",
        0x19: "Ó", 0x1A: "|", 0x1C: "Â", 0x1D: "â", 0x1E: "Ê", 0x24: "º", 0x40: "Í", 0x5B: "Ã",
        0x5C: "Õ", 0x5D: "Ú", 0x60: "~", 0x7B: "ã", 0x7C: "õ", 0x7D: "`",
    }


def test_single_shift_tables_keep_the_default_extension_characters() -> None:
    for table in _tables.NATIONAL_SINGLE.values():
        assert _tables.DEFAULT_EXTENSION.items() <= table.items()
        assert 0x1B not in table and all(code < 0x80 for code in table)


def test_transliteration_targets_are_basic_gsm_and_sources_are_not_gsm() -> None:
    gsm = gsm7.DEFAULT.basic_chars | gsm7.DEFAULT.extension_chars
    for source, target in _tables.TRANSLITERATION.items():
        assert source not in gsm, source
        assert set(target) <= gsm7.DEFAULT.basic_chars, (source, target)


def test_transliteration_covers_the_issue_languages() -> None:
    letters = (
        "áàâãçéêíóôõú"  # Portuguese
        "áéíóúüñ"  # Spanish
        "àâæçéèêëîïôœùûüÿ"  # French
        "äöüß"  # German
        "àèéìíîòóùú"  # Italian
        "ąćęłńóśźż"  # Polish
        "áčďéěíňóřšťúůýž"  # Czech
        "ăâîșțşţ"  # Romanian
        "çğıİöşü"  # Turkish
    )
    gsm = gsm7.DEFAULT.basic_chars
    for letter in letters + letters.upper():
        assert letter in gsm or letter in _tables.TRANSLITERATION, letter


def test_public_names_match_all() -> None:
    public = {name for name in vars(codec) if not name.startswith("_")}
    modules = {"annotations", "errors", "gsm7", "receive", "segment", "udh"}
    assert set(codec.__all__) == public - modules


def test_docs_list_every_transliteration() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "codec.md").read_text(encoding="utf-8")
    table = doc[doc.index("## Transliteration table") :]
    for source in _tables.TRANSLITERATION:
        shown = source if source.isprintable() and not source.isspace() else f"U+{ord(source):04X}"
        if source == "`":
            shown = "U+0060"
        assert shown in table, repr(source)
