"""Where parts end: never between an escape and its code, never inside a surrogate pair.

TS 23.040 §9.2.3.24.1 leaves it to the sender; TS 23.038 §6.2.1.1 forbids splitting an escape
sequence. Standard library only.
"""

from __future__ import annotations


def gsm_cuts(septets: bytes, cap: int) -> list[tuple[int, int]]:
    """Part boundaries of at most ``cap`` septets that never separate an escape from its code."""
    cuts = []
    start, size = 0, len(septets)
    while size - start > cap:
        end = start + cap
        if septets[end - 1] == 0x1B:
            end -= 1
        cuts.append((start, end))
        start = end
    cuts.append((start, size))
    return cuts


def gsm_parts(marked: bytes, mark: int, cap: int) -> int:
    """``len(gsm_cuts(septets, cap))`` without the septets: ``marked`` holds ``mark`` where the
    text has an extension character (escape + code, two septets), one septet elsewhere."""
    escapes: set[int] = set()  # septet positions of the escapes
    at = marked.find(mark)
    while at >= 0:
        escapes.add(at + len(escapes))
        at = marked.find(mark, at + 1)
    parts, start, size = 1, 0, len(marked) + len(escapes)
    while size - start > cap:
        end = start + cap
        if end - 1 in escapes:
            end -= 1
        parts += 1
        start = end
    return parts


def ucs2_cuts(body: bytes, cap: int) -> list[tuple[int, int]]:
    """Part boundaries of at most ``cap`` octets that never separate a surrogate pair."""
    cuts = []
    start, size = 0, len(body)
    while size - start > cap:
        end = start + cap
        if 0xD8 <= body[end - 2] <= 0xDB:  # a high surrogate ends the part: move it on
            end -= 2
        cuts.append((start, end))
        start = end
    cuts.append((start, size))
    return cuts
