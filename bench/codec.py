"""Benchmark of codec.count and codec.split against a gsm0338-based baseline (issue 2).

Run: ``python -m bench.codec [--messages N] [--seed S] [--repeat R]``.

The corpus is generated deterministically: Portuguese, Spanish, English and Ukrainian texts of
20-450 characters, about 10 % needing UCS-2 (Ukrainian, a few emoji) and about 5 % holding a GSM
extension character. The baseline does the same work the straightforward way: a per-character
transliteration loop, the PyPI ``gsm0338`` codec for GSM 03.38, and a splitter that walks the
septets in Python. Prints figures, then one JSON line. MB/s counts the corpus as UTF-8.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable

import gsm0338

from codec import Policy, count, split
from codec._tables import TRANSLITERATION


def _words(text: str) -> list[str]:
    return text.split()


WORDS = {
    "en": _words(
        "your order has been shipped and will arrive tomorrow between 9 and 12 please confirm "
        "the delivery address reply STOP to opt out code is valid for 10 minutes thank you for "
        "choosing us payment of $25.00 received account balance appointment reminder at the "
        "clinic on Monday call 0800 123 456 if you need help visit our website for details"
    ),
    "pt": _words(
        "olá a sua encomenda foi enviada e chegará amanhã entre as 9 e as 12 por favor confirme "
        "o endereço de entrega código de verificação válido por 10 minutos obrigado pela "
        "preferência pagamento recebido saldo da conta lembrete da consulta na clínica à "
        "segunda-feira não responda a esta mensagem informação atenção você está número cartão"
    ),
    "es": _words(
        "hola su pedido ha sido enviado y llegará mañana entre las 9 y las 12 por favor confirme "
        "la dirección de entrega código de verificación válido por 10 minutos gracias por su "
        "preferencia pago recibido saldo de la cuenta recordatorio de la cita en la clínica el "
        "lunes señor información número teléfono ¿necesita ayuda? ¡gracias! año día"
    ),
    "uk": _words(
        "вітаємо ваше замовлення відправлено і буде доставлено завтра між 9 та 12 будь ласка "
        "підтвердіть адресу доставки код підтвердження дійсний 10 хвилин дякуємо що обрали нас "
        "оплату отримано баланс рахунку нагадування про візит до клініки у понеділок"
    ),
}
TYPOGRAPHIC = ["“", "”", "–", "…", "’"]
EXTENSION = ["€", "[", "]", "{", "}", "~", "^", "|", "\\"]
EMOJI = ["😀", "👍", "🎉"]


def make_corpus(n: int, seed: int = 2) -> list[str]:
    """``n`` deterministic messages (see the module docstring for the mix)."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(n):
        roll = rng.random()
        lang = "uk" if roll < 0.08 else rng.choices(["en", "pt", "es"], [0.36, 0.30, 0.26])[0]
        target = rng.randint(20, 450)
        words = WORDS[lang]
        out: list[str] = []
        size = 0
        while size < target:
            word = rng.choice(words)
            if rng.random() < 0.002:  # about 8 % of messages get a typographic character
                word = rng.choice(TYPOGRAPHIC) + word
            out.append(word)
            size += len(word) + 1
        text = " ".join(out)[:target]
        if rng.random() < 0.05:
            pos = rng.randrange(len(text))
            text = text[:pos] + rng.choice(EXTENSION) + text[pos + 1 :]
        if lang != "uk" and rng.random() < 0.022:
            text = text[:-2] + rng.choice(EMOJI)
        corpus.append(text)
    return corpus


# --- the baseline: what a straightforward implementation on top of gsm0338 looks like ---------

_GSM = gsm0338.Codec()


def _baseline_encode(text: str) -> tuple[str, bytes | None]:
    translit = "".join([TRANSLITERATION.get(c, c) for c in text])
    try:
        return translit, _GSM.encode(translit)[0]
    except (UnicodeEncodeError, KeyError):
        return text, None


def baseline_count(text: str) -> tuple[str, int, int]:
    """(encoding, units, parts) the straightforward way."""
    _, septets = _baseline_encode(text)
    if septets is None:
        units = len(text.encode("utf-16-be")) // 2
        return "ucs2", units, 1 if units <= 70 else -(-units // 67)
    units = len(septets)
    return "gsm7", units, 1 if units <= 160 else -(-units // 153)


def baseline_split(text: str, reference: int) -> list[tuple[bytes, bytes, int]]:
    """Parts (udh, body, data_coding) the straightforward way."""
    sent, septets = _baseline_encode(text)
    if septets is None:
        body, limit, single, step, dcs = sent.encode("utf-16-be"), 134, 140, 2, 8
    else:
        body, limit, single, step, dcs = septets, 153, 160, 1, 0
    if len(body) <= single:
        return [(b"", body, dcs)]
    chunks = []
    start = 0
    while start < len(body):
        end = min(start + limit, len(body))
        if end < len(body):
            if dcs == 0 and body[end - 1] == 0x1B:
                end -= 1
            elif dcs == 8 and 0xD8 <= body[end - 2] <= 0xDB:
                end -= step
        chunks.append(body[start:end])
        start = end
    total = len(chunks)
    return [
        (bytes([5, 0, 3, reference & 0xFF, total, i + 1]), chunk, dcs)
        for i, chunk in enumerate(chunks)
    ]


def _time(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU time of ``repeat`` runs.

    CPU time (time.process_time) rather than wall time: the machine is shared, and the targets are
    per core; wall-clock figures are printed alongside for reference.
    """
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()  # as timeit does: results are dropped at once, nothing cyclic to collect
        try:
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        finally:
            gc.enable()
        best = min(best, cpu)
        _WALL.append(wall)
    return best


def _each(fn: Callable[[str], object], corpus: list[str]) -> Callable[[], None]:
    def loop() -> None:
        for text in corpus:
            fn(text)

    return loop


def _count_each(corpus: list[str], policy: Policy) -> Callable[[], None]:
    """``count`` over the corpus, called directly (a wrapping lambda would add a Python frame
    per message, about a tenth of what is being measured)."""

    def loop() -> None:
        for text in corpus:
            count(text, policy)

    return loop


def _split_each(corpus: list[str], policy: Policy) -> Callable[[], None]:
    """``split`` over the corpus, called directly, the message's index as reference."""

    def loop() -> None:
        for i, text in enumerate(corpus):
            split(text, policy, i)

    return loop


def _each_numbered(fn: Callable[[str, int], object], corpus: list[str]) -> Callable[[], None]:
    def loop() -> None:
        for i, text in enumerate(corpus):
            fn(text, i)

    return loop


_WALL: list[float] = []


def run(n: int, seed: int, repeat: int) -> dict[str, float]:
    """Measure everything; return the figures."""
    corpus = make_corpus(n, seed)
    policy = Policy(max_parts=255)
    mb = sum(len(t.encode("utf-8")) for t in corpus) / 1e6
    counted = [count(t, policy) for t in corpus]
    ucs2 = sum(c.encoding == "ucs2" for c in counted) / n
    ext = sum(any(e in t for e in EXTENSION) for t in corpus) / n
    # the two implementations must agree on the corpus before their speeds are compared
    for text, c in zip(corpus[:2000], counted, strict=False):
        assert baseline_count(text) == (c.encoding, c.units, c.parts), text

    t_count = _time(_count_each(corpus, policy), repeat)
    wall_count = min(_WALL[-repeat:])
    t_split = _time(_split_each(corpus, policy), repeat)
    wall_split = min(_WALL[-repeat:])
    t_bcount = _time(_each(baseline_count, corpus), 1)
    t_bsplit = _time(_each_numbered(baseline_split, corpus), 1)
    figures = {
        "messages": n,
        "corpus_mb": round(mb, 3),
        "ucs2_share": round(ucs2, 4),
        "extension_share": round(ext, 4),
        "count_msgs_per_s": round(n / t_count),
        "count_mb_per_s": round(mb / t_count, 2),
        "split_msgs_per_s": round(n / t_split),
        "split_mb_per_s": round(mb / t_split, 2),
        "baseline_count_msgs_per_s": round(n / t_bcount),
        "baseline_split_msgs_per_s": round(n / t_bsplit),
        "baseline_split_mb_per_s": round(mb / t_bsplit, 2),
        "count_wall_msgs_per_s": round(n / wall_count),
        "split_wall_msgs_per_s": round(n / wall_split),
        "count_vs_baseline": round(t_bcount / t_count, 1),
        "split_vs_baseline": round(t_bsplit / t_split, 1),
    }
    return figures


def breakdown(n: int, seed: int) -> None:
    """Print CPU cost per message for each kind of text in the corpus (where the time goes)."""
    corpus = make_corpus(n, seed)
    policy = Policy(max_parts=255)
    groups: dict[str, list[str]] = {}
    for text in corpus:
        c = count(text, policy)
        try:
            text.encode("latin-1")
            kind = "latin-1"
        except UnicodeEncodeError:
            kind = "wider"
        kind += f" {c.encoding}" + (" translit" if c.replacements else "")
        kind += " ext" if any(e in text for e in EXTENSION) else ""
        groups.setdefault(kind, []).append(text)
    print(f"{'kind of text':28} {'share':>6} {'count us':>9} {'split us':>9}")
    for kind, texts in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        t_c = _time(_count_each(texts, policy), 3)
        t_s = _time(_split_each(texts, policy), 3)
        print(f"{kind:28} {len(texts) / n:6.1%} {t_c / len(texts) * 1e6:9.2f} "
              f"{t_s / len(texts) * 1e6:9.2f}")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true", help="cost per kind of text, then exit")
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args.messages, args.seed)
        return
    figures = run(args.messages, args.seed, args.repeat)
    print(f"corpus: {figures['messages']} messages, {figures['corpus_mb']} MB UTF-8, "
          f"{figures['ucs2_share']:.1%} UCS-2, "
          f"{figures['extension_share']:.1%} with extension chars")
    print(f"count: {figures['count_msgs_per_s']:>12,} msgs/s {figures['count_mb_per_s']:>8} MB/s   "
          f"baseline {figures['baseline_count_msgs_per_s']:,} msgs/s   "
          f"ratio {figures['count_vs_baseline']}x")
    print(f"split: {figures['split_msgs_per_s']:>12,} msgs/s {figures['split_mb_per_s']:>8} MB/s   "
          f"baseline {figures['baseline_split_msgs_per_s']:,} msgs/s   "
          f"ratio {figures['split_vs_baseline']}x")
    print(f"wall clock (shared machine): count {figures['count_wall_msgs_per_s']:,} msgs/s, "
          f"split {figures['split_wall_msgs_per_s']:,} msgs/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
