"""Lookup tables: the GSM 7-bit alphabets of 3GPP TS 23.038 and the transliteration table.

Data only (STYLE.md §7 exempts tables from size rules). Every table is checked against the spec
in tests/codec/test_tables.py. Imports nothing outside the standard library.

Tables are strings of 128 characters indexed by septet value, or dicts septet -> character for
the sparse single-shift (extension) tables. ``"\\x1b"`` marks the escape position and ``"\\x00"``
an unused position in a locking-shift string (real '@' is only in the default table, at 0x00).
"""

from __future__ import annotations

from typing import Final

ESC: Final = 0x1B

# TS 23.038 §6.2.1, the GSM 7 bit default alphabet (septets 0x00-0x7F).
DEFAULT_ALPHABET: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10
    " !\"#¤%&'()*+,-./"  # 0x20
    "0123456789:;<=>?"  # 0x30
    "¡ABCDEFGHIJKLMNO"  # 0x40
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50
    "¿abcdefghijklmno"  # 0x60
    "pqrstuvwxyzäöñüà"  # 0x70
)

# TS 23.038 §6.2.1.1, the default alphabet extension table (reached through ESC 0x1B).
DEFAULT_EXTENSION: Final[dict[int, str]] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

# Transliteration for the ``transliterate`` policy: character -> GSM 7-bit default-alphabet text
# (never an extension character, so a replacement always costs one septet per character).
# Letters the default alphabet already holds (é è ù ì ò à Ä Ö Ñ Ü ä ö ñ ü ß Ç Å å Ø ø Æ æ É)
# are absent on purpose: they stay as they are. docs/codec.md prints this table.
_LETTERS: Final = {
    # Latin-1 supplement (Portuguese, Spanish, French, German, Italian, ...)
    "A": "ÀÁÂÃĀĂĄǍ", "a": "áâãāăąǎ",
    "C": "ĆĈĊČ", "c": "çćĉċč",
    "D": "ÐĎĐ", "d": "ðďđ",
    "E": "ÈÊËĒĔĖĘĚ", "e": "êëēĕėęě",
    "G": "ĜĞĠĢ", "g": "ĝğġģ",
    "H": "ĤĦ", "h": "ĥħ",
    "I": "ÌÍÎÏĨĪĬĮİ", "i": "íîïĩīĭįı",
    "J": "Ĵ", "j": "ĵ",
    "K": "Ķ", "k": "ķĸ",
    "L": "ĹĻĽĿŁ", "l": "ĺļľŀł",
    "N": "ŃŅŇŊ", "n": "ńņňŋ",
    "O": "ÒÓÔÕŌŎŐ", "o": "óôõōŏő",
    "R": "ŔŖŘ", "r": "ŕŗř",
    "S": "ŚŜŞŠȘ", "s": "śŝşšșſ",
    "T": "ŢŤŦȚ", "t": "ţťŧț",
    "U": "ÙÚÛŨŪŬŮŰŲ", "u": "úûũūŭůűų",
    "W": "Ŵ", "w": "ŵ",
    "Y": "ÝŶŸ", "y": "ýÿŷ",
    "Z": "ŹŻŽ", "z": "źżž",
}
_MULTI: Final = {
    "Þ": "Th", "þ": "th", "Œ": "OE", "œ": "oe", "Ĳ": "IJ", "ĳ": "ij", "ŉ": "'n", "ẞ": "SS",
    "ª": "a", "º": "o", "°": "o", "µ": "u", "©": "(c)", "®": "(R)", "™": "TM",
    "¹": "1", "²": "2", "³": "3", "¼": "1/4", "½": "1/2", "¾": "3/4",
    "×": "x", "÷": "/", "±": "+-", "¬": "-", "·": ".", "´": "'", "¢": "c",
    # typographic punctuation
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "‹": "'", "›": "'",
    "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "…": "...", "•": "*", "`": "'", "\t": " ",
    # spaces become a plain space; invisible format characters are dropped
    "\u00a0": " ", "\u2000": " ", "\u2001": " ", "\u2002": " ", "\u2003": " ", "\u2004": " ",
    "\u2005": " ", "\u2006": " ", "\u2007": " ", "\u2008": " ", "\u2009": " ", "\u200a": " ",
    "\u202f": " ", "\u205f": " ", "\u3000": " ",
    "\u00ad": "", "\u200b": "", "\u200c": "", "\u200d": "", "\u2060": "", "\ufeff": "",
}
TRANSLITERATION: Final[dict[str, str]] = {
    **{src: dst for dst, sources in _LETTERS.items() for src in sources},
    **_MULTI,
}

# TS 23.038 §6.2.1.2.4: national language identifiers carried by IEs 0x24 / 0x25.
NATIONAL_LANGUAGE_IDS: Final[dict[str, int]] = {"tr": 1, "es": 2, "pt": 3}

# Annex A.3: national language locking shift tables (128 characters, as DEFAULT_ALPHABET).
NATIONAL_LOCKING: Final[dict[str, str]] = {
    # A.3.1 Turkish (identifier 1)
    "tr": (
        "@£$¥€éùıòÇ\nĞğ\rÅå"  # 0x00
        "Δ_ΦΓΛΩΠΨΣΘΞ\x1bŞşßÉ"  # 0x10
        " !\"#¤%&'()*+,-./"  # 0x20
        "0123456789:;<=>?"  # 0x30
        "İABCDEFGHIJKLMNO"  # 0x40
        "PQRSTUVWXYZÄÖÑÜ§"  # 0x50
        "çabcdefghijklmno"  # 0x60
        "pqrstuvwxyzäöñüà"  # 0x70
    ),
    # A.3.3 Portuguese (identifier 3); A.3.2 (Spanish) is void
    "pt": (
        "@£$¥êéúíóç\nÔô\rÁá"  # 0x00
        "Δ_ªÇÀ∞^\\€Ó|\x1bÂâÊÉ"  # 0x10
        " !\"#º%&'()*+,-./"  # 0x20
        "0123456789:;<=>?"  # 0x30
        "ÍABCDEFGHIJKLMNO"  # 0x40
        "PQRSTUVWXYZÃÕÚÜ§"  # 0x50
        "~abcdefghijklmno"  # 0x60
        "pqrstuvwxyzãõ`üà"  # 0x70
    ),
}

# Annex A.2: national language single shift tables (septet -> character, as DEFAULT_EXTENSION).
NATIONAL_SINGLE: Final[dict[str, dict[int, str]]] = {
    # A.2.1 Turkish
    "tr": {
        0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]",
        0x40: "|", 0x47: "Ğ", 0x49: "İ", 0x53: "Ş", 0x63: "ç", 0x65: "€", 0x67: "ğ", 0x69: "ı",
        0x73: "ş",
    },
    # A.2.2 Spanish
    "es": {
        0x09: "ç", 0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
        0x3E: "]", 0x40: "|", 0x41: "Á", 0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x61: "á", 0x65: "€",
        0x69: "í", 0x6F: "ó", 0x75: "ú",
    },
    # A.2.3 Portuguese
    "pt": {
        0x05: "ê", 0x09: "ç", 0x0A: "\f", 0x0B: "Ô", 0x0C: "ô", 0x0E: "Á", 0x0F: "á", 0x12: "Φ",
        0x13: "Γ", 0x14: "^", 0x15: "Ω", 0x16: "Π", 0x17: "Ψ", 0x18: "Σ", 0x19: "Θ", 0x1F: "Ê",
        0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x41: "À",
        0x49: "Í", 0x4F: "Ó", 0x55: "Ú", 0x5B: "Ã", 0x5C: "Õ", 0x61: "Â", 0x65: "€", 0x69: "í",
        0x6F: "ó", 0x75: "ú", 0x7B: "ã", 0x7C: "õ", 0x7F: "â",
    },
}
