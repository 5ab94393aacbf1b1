"""``septet optouts``: load an account's opt-out (STOP) list from a file, or write it as CSV.

    septet optouts import FILE --account NAME [--source LABEL]
    septet optouts export --account NAME [--output FILE]

Import reads either a CSV whose header row names a ``number`` column (``added_at`` and
``source`` optional, other columns ignored; comma, semicolon or tab separated), or a plain
list, one number a line. Each number is normalised as the API normalises ``{number}``
(``gateway.validation.NumberNormaliser``: E.164 with ``+`` or ``00``, else national with the
account's default country prefix). :func:`read_entries` is that reading, pure: lines in,
:class:`Entry` or :class:`Refused` (line number, reason) out. The entries are written
``BATCH`` at a time, each batch one op of the store's writer calling ``gateway.optouts.op_add``
per entry: durable once its write returns, and idempotent (an entry already on the list keeps
its first record), so running an import twice, or again after a failure, changes nothing
more. Refused lines are reported on stderr by line number and reason, never by the number.

Export streams the list in number order, one page (one read transaction) at a time.

Both open the store as the other commands do and can run beside a serving gateway (LMDB
serialises writers across processes); a serving gateway enforces an import within
``[optouts] refresh_seconds`` (docs/optouts.md, staleness rule). Part of ``gateway.cli``; must
not be imported by actors or adapters.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Final, TextIO

import lmdb

from actors.errors import StoreError
from gateway import config as cfg
from gateway._cli_store import account_store
from gateway.accounts import Account
from gateway.api.optouts import BULK_SOURCE, SOURCE
from gateway.api.problems import FieldError
from gateway.api.query import _time
from gateway.optouts import DB, OptOutList, op_add
from gateway.validation import Invalid, NumberNormaliser

BATCH: Final = 1000
"""Entries per write: small enough that a serving gateway's writer waits at most a few
milliseconds for the write lock, large enough that a big list is not one fsync per number."""
PAGE: Final = 1000
"""Opt-outs read per read transaction by the export."""
COLUMNS: Final = ("number", "added_at", "source")
MAX_NUMBER: Final = 32  # as the API: a longer text is not a number
SOURCE_RULE: Final = "must be a label of 1 to 32 characters: a-z first, then a-z, 0-9, _ . -"

EXIT_CODES: Final = """\
exit status:
  0  every line was added or already present
  1  some lines were refused (each reported on stderr with its line number;
     the other lines were still added)
  2  unknown account, unreadable file, a header row without a number column,
     or the store could not commit (importing again is safe)
"""
IMPORT_HELP: Final = """\
Add the numbers of FILE to the account's opt-out list, normalised as the API
normalises them: E.164 (+ or 00), or national with the account's default
country prefix (refused when it has none). Idempotent: a number already on the
list keeps its first record. Safe beside a serving gateway, which enforces the
new entries within [optouts] refresh_seconds.
"""


def add_parser(sub: Any) -> None:
    """``septet optouts import`` and ``export`` on the subcommand parsers ``sub``."""
    o = sub.add_parser("optouts", help="load or write out an account's opt-out (STOP) list")
    o.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    osub = o.add_subparsers(dest="action", required=True)
    i = osub.add_parser(
        "import", help="add the numbers of a file to an account's opt-out list",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES,
        description=IMPORT_HELP)
    i.add_argument("file", metavar="FILE", help="a CSV whose header names a number column "
                   "(added_at, source optional), or one number a line")
    i.add_argument("--account", required=True, metavar="NAME",
                   help="the account (national numbers take its default country prefix)")
    i.add_argument("--source", default=BULK_SOURCE, metavar="LABEL",
                   help=f"the source label of lines without one (default: {BULK_SOURCE})")
    i.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    e = osub.add_parser("export", help="write an account's opt-out list as CSV",
                        description="Write the account's opt-out list as CSV (number, added_at "
                                    "in UTC, source), in number order. Reads only.")
    e.add_argument("--account", required=True, metavar="NAME", help="the account")
    e.add_argument("-o", "--output", metavar="FILE", help="default: standard output")
    e.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)


async def run(config: cfg.Config, args: argparse.Namespace) -> int:
    """Run ``septet optouts import|export``; the exit status (:data:`EXIT_CODES`)."""
    if args.action == "import" and SOURCE.fullmatch(args.source) is None:
        print(f"septet: --source {SOURCE_RULE}", file=sys.stderr)
        return 2
    async with account_store(config, args.account) as (store, account):
        if args.action == "import":
            return await import_file(store, account, Path(args.file), source=args.source)
        return export(store, account.name, args.output)


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class Entry:
    """One readable line: its number (E.164), when and how it opted out."""

    line: int
    number: str
    at: float
    source: str


@dataclass(frozen=True, slots=True)
class Refused:
    """One line that cannot be imported, and why (the reason names the column)."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reading:
    """How to read a file's lines: the account's default country prefix, the source of the
    lines that give none, the time of those that give none (Unix seconds)."""

    prefix: str
    source: str
    now: float
    numbers: NumberNormaliser


class BadHeader(ValueError):
    """The first line has several columns and none is ``number``."""


def read_entries(lines: Iterable[str], reading: Reading) -> Iterator[Entry | Refused]:
    """Every non-blank line of a CSV or plain list, read (see the module docstring).

    Raises:
        BadHeader: before anything is yielded.
    """
    numbered = enumerate(lines, 1)
    for first_line, first in numbered:
        if first.strip():
            break
    else:
        return  # an empty file
    delimiter = max(",;\t", key=first.count)
    header = [c.strip().lower() for c in next(csv.reader([first], delimiter=delimiter))]
    if "number" in header:
        rest = (line for _, line in numbered)
        yield from _csv_entries(first_line, rest, header, delimiter, reading)
    elif len([c for c in header if c]) > 1:  # (a plain list's trailing tab is no column)
        raise BadHeader(f"line {first_line}: a CSV needs a header row naming a number column")
    else:
        for n, line in chain([(first_line, first)], numbered):
            if line.strip():
                yield _entry(n, line, "", "", reading)


def _csv_entries(header_line: int, lines: Iterator[str], header: list[str], delimiter: str,
                 reading: Reading) -> Iterator[Entry | Refused]:
    """The rows after a header (``header_line``: its line number in the file)."""
    column = {name: header.index(name) for name in COLUMNS if name in header}
    reader = csv.reader(lines, delimiter=delimiter)
    while True:
        line = header_line + reader.line_num + 1  # where the next row starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Refused(line, f"is not CSV ({exc})")
            continue
        if any(cell.strip() for cell in row):
            # a short row leaves its last columns empty
            number, added_at, source = (row[i] if (i := column.get(c, len(row))) < len(row)
                                        else "" for c in COLUMNS)
            yield _entry(line, number, added_at, source, reading)


def _entry(line: int, number: str, added_at: str, source: str, reading: Reading
           ) -> Entry | Refused:
    """One line's cells read, or why not."""
    raw = number.strip()
    if not raw:
        return Refused(line, "number is empty")
    if len(raw) > MAX_NUMBER:
        return Refused(line, f"number is longer than {MAX_NUMBER} characters")
    try:
        e164 = reading.numbers.normalise(raw, reading.prefix)
    except Invalid as exc:
        return Refused(line, f"number {exc.reason}")
    at = reading.now
    if added_at.strip():  # the API's reading of a time: RFC 3339 with an offset, Unix seconds
        errors: list[FieldError] = []
        parsed = _time(added_at.strip(), "added_at", errors)
        if parsed is None:
            return Refused(line, f"added_at {errors[0].reason}")
        at = parsed
    label = source.strip() or reading.source
    if SOURCE.fullmatch(label) is None:
        return Refused(line, f"source {SOURCE_RULE}")
    return Entry(line, e164, at, label)


# ------------------------------------------------------------------------------ import


def op_import(txn: lmdb.Transaction, *, db: Any, account: str,
              entries: Sequence[Entry]) -> int:
    """A store op: ``gateway.optouts.op_add`` for each entry; how many were added."""
    return sum(op_add(txn, db=db, account=account, number=e.number, at=e.at,
                      source=e.source)[1] for e in entries)


async def import_file(store: Any, account: Account, path: Path, *, source: str) -> int:
    """``septet optouts import``: add ``path``'s numbers, print a summary; the exit status."""
    reading = Reading(account.default_prefix, source, time.time(), NumberNormaliser(10_000))
    added = already = refused = 0
    batch: list[Entry] = []
    try:
        # A command-line run: nothing else shares this event loop, blocking reads are fine.
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:  # noqa: ASYNC230
            for item in read_entries(f, reading):
                if isinstance(item, Refused):
                    refused += 1
                    print(f"septet: {path.name}:{item.line}: {item.reason}", file=sys.stderr)
                    continue
                batch.append(item)
                if len(batch) == BATCH:
                    new = await _write(store, account.name, batch)
                    added, already, batch = added + new, already + len(batch) - new, []
            if batch:
                new = await _write(store, account.name, batch)
                added, already = added + new, already + len(batch) - new
    except (OSError, BadHeader, StoreError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"septet: {path}: {why}", file=sys.stderr)
        if added or already:
            print(f"septet: {account.name}: {added} added and {already} already present "
                  "before that (importing again is safe)", file=sys.stderr)
        return 2
    print(f"septet: {account.name}: {added} added, {already} already present, "
          f"{refused} refused")
    return 1 if refused else 0


async def _write(store: Any, account: str, entries: Sequence[Entry]) -> int:
    """One batch in one durable write; how many were added (fail fast: a full disk stops the
    import rather than retrying forever)."""
    op = partial(op_import, db=store.db(DB), account=account, entries=list(entries))
    added: int = await store.write(op, fail_fast=True)
    return added


# ------------------------------------------------------------------------------ export


def export(store: Any, account: str, output: str | None) -> int:
    """``septet optouts export``: the list as CSV to ``output`` (a path) or stdout."""
    try:
        out: TextIO = open(output, "w", encoding="utf-8", newline="") if output \
            else sys.stdout  # noqa: SIM115  (closed below when it is a file)
    except OSError as exc:
        print(f"septet: {exc}", file=sys.stderr)
        return 2
    try:
        write_csv(out, OptOutList(store), account)
    finally:
        if output:
            out.close()
        else:
            out.flush()
    return 0


def write_csv(out: TextIO, optouts: OptOutList, account: str) -> None:
    """``account``'s list as CSV (``number,added_at,source``; times RFC 3339 UTC to the
    millisecond, as the API shows them), one :data:`PAGE` at a time."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    cursor: str | None = None
    while True:
        page, cursor = optouts.page(account, after=cursor, limit=PAGE, max_scan=PAGE)
        writer.writerows((o.number, _utc(o.at), o.source) for o in page)
        if cursor is None:
            return


def _utc(t: float) -> str:
    """Unix seconds as ``2026-01-31T09:00:00.000Z``."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
