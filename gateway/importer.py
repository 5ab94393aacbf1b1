"""Bulk file import: a watched drop folder and ``septet import FILE``.

A mailing file is named ``mailing_DDMMYY_SEQ[_params].csv|txt|zip``. The optional parameters,
each after an underscore:

=============== ==========================================================================
``_cCODE``      campaign name (letters, digits, ``-``); default ``mailing_DDMMYY_SEQ``
``_dTEXT``      description (letters, digits, ``-``, ``.``)
``_iDDMMYYHHMM`` start time
``_qPPMMM``     shaping: PP % of the list every MMM minutes
``_xHHH``       no re-contact within HHH hours
``_LEddMMyyHHmm`` deadline (``not_after``)
``_h``          clean-up: rows with invalid numbers are dropped (reported) instead of
                refusing the whole file
=============== ==========================================================================

Only files dated today are taken, and a sequence number may be used once a day. Content: a
CSV (``,`` ``;`` tab or ``|``) with a header naming a phone column (``mobile_phone``,
``mobilephone`` or ``phone``), optional ``mobile_prefix``, the template's fields and/or a
``message`` (or ``text``) column; a TXT is the same, or header-less lines of ``number`` or
``number;message``; a ZIP holds exactly one such CSV or TXT.

A file whose name or content is wrong moves to ``discarded/`` with ``<file>.error.txt``
beside it. A good one is staged into its campaign in chunks; each chunk's transaction also
advances the file's cursor in the ``imports`` journal, so after a crash the import resumes
at the first row not staged: no row is lost or imported twice. Once every row is staged
(durably accepted by the campaign, which the runner then expands into messages) and the
campaign started, the file moves to ``processed/`` (with ``<file>.report.txt`` listing the
rows dropped by ``_h``).

Must not import: gateway.api internals beyond the CSV row reader, gateway.http.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgpack
import trio

from gateway import store as store_mod
from gateway.campaigns import Campaign, CampaignError, Campaigns
from gateway.validation import PHONE_FIELDS, Invalid, NumberNormaliser

__all__ = ["ImportError_", "Importer", "MailingName", "parse_name", "watch"]

logger = logging.getLogger(__name__)

IMPORTS: Final = b"imports"
if IMPORTS not in store_mod.STORE_DATABASES:
    store_mod.STORE_DATABASES.append(IMPORTS)

_NAME: Final = re.compile(r"mailing_(\d{6})_(\d{1,6})((?:_[^_]*)*)\.(csv|txt|zip)", re.IGNORECASE)
_PARAMS: Final = (  # (prefix, value pattern, what)
    ("LE", r"\d{10}", "deadline ddMMyyHHmm"),
    ("c", r"[A-Za-z0-9-]{1,64}", "campaign code of letters, digits and -"),
    ("d", r"[A-Za-z0-9.-]{1,128}", "description of letters, digits, . and -"),
    ("i", r"\d{10}", "start DDMMYYHHMM"),
    ("q", r"\d{5}", "shaping PPMMM (PP % every MMM minutes)"),
    ("x", r"\d{1,4}", "re-contact window in hours"),
    ("h", r"", "clean-up flag (no value)"),
)
MESSAGE_COLUMNS: Final = ("message", "text", "sms")


class ImportError_(ValueError):
    """A file that is refused; ``reason`` goes into its error report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MailingName:
    """What a mailing file's name says."""

    day: date
    seq: int
    ext: str
    campaign: str
    description: str = ""
    start: float = 0.0
    slice_percent: float = 0.0
    slice_every: float = 0.0
    recontact_hours: float = 0.0
    not_after: float = 0.0
    cleanup: bool = False


def _stamp(digits: str, tz: ZoneInfo, what: str) -> float:
    try:
        return datetime.strptime(digits, "%d%m%y%H%M").replace(tzinfo=tz).timestamp()
    except ValueError:
        raise ImportError_(f"{what}: {digits} is not a valid date and time") from None


_UTC: Final = ZoneInfo("UTC")


def parse_name(filename: str, today: date, now: float, tz: ZoneInfo = _UTC) -> MailingName:
    """Check a mailing file name against today's date.

    Raises:
        ImportError_: naming what is wrong.
    """
    m = _NAME.fullmatch(filename)
    if m is None:
        raise ImportError_("the name must be mailing_DDMMYY_SEQ[_params].csv, .txt or .zip")
    ddmmyy, seq, params, ext = m.groups()
    try:
        day = datetime.strptime(ddmmyy, "%d%m%y").date()
    except ValueError:
        raise ImportError_(f"{ddmmyy} is not a valid DDMMYY date") from None
    if day != today:
        raise ImportError_(f"the file is dated {day.isoformat()}, not today ({today.isoformat()})")
    values: dict[str, str] = {}
    for raw in params.split("_")[1:]:
        for prefix, pattern, what in _PARAMS:
            if raw.startswith(prefix):
                value = raw[len(prefix):]
                if not re.fullmatch(pattern, value):
                    raise ImportError_(f"parameter _{raw[:20]}: expected {what}")
                if prefix in values:
                    raise ImportError_(f"parameter _{prefix} given twice")
                values[prefix] = value
                break
        else:
            raise ImportError_(f"unknown parameter _{raw[:20]}")
    start = _stamp(values["i"], tz, "_i start") if "i" in values else 0.0
    deadline = _stamp(values["LE"], tz, "_LE deadline") if "LE" in values else 0.0
    if deadline and deadline <= max(start, now):
        raise ImportError_("_LE deadline is not after the start (or is past)")
    pct = every = 0.0
    if "q" in values:
        pct, every = float(values["q"][:2]), float(values["q"][2:]) * 60
        if not pct or not every:
            raise ImportError_("_q needs PP > 0 percent and MMM > 0 minutes")
    hours = float(values.get("x", 0))
    if "x" in values and not hours:
        raise ImportError_("_x needs a window of at least 1 hour")
    return MailingName(day, int(seq), ext.lower(),
                       values.get("c") or f"mailing_{ddmmyy}_{int(seq)}", values.get("d", ""),
                       start, pct, every, hours, deadline, "h" in values)


# ------------------------------------------------------------------------------ content


def open_text(path: Path, ext: str) -> Iterator[str]:
    """The lines of a mailing file (for a ZIP: of its single CSV/TXT member)."""
    if ext != "zip":
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from f
        return
    try:
        with zipfile.ZipFile(path) as z:
            members = [i for i in z.infolist() if not i.is_dir()]
            if len(members) != 1 or not members[0].filename.lower().endswith((".csv", ".txt")):
                raise ImportError_("a ZIP must hold exactly one .csv or .txt file")
            with z.open(members[0]) as raw:
                yield from io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    except zipfile.BadZipFile:
        raise ImportError_("not a valid ZIP file") from None


def read_rows(path: Path, ext: str) -> Iterator[dict[str, Any]]:
    """Recipient rows of a mailing file, lazily.

    Raises:
        ImportError_: no header with a phone column, undecodable bytes, bad ZIP.
    """
    from gateway.api.campaigns import csv_rows

    lines = open_text(path, ext)
    try:
        first = next(lines, None)
        if first is None or not first.strip():
            raise ImportError_("the file is empty")
        header = [h.strip().lower() for h in re.split(r"[,;\t|]", first)]
        if any(h in PHONE_FIELDS for h in header):
            yield from csv_rows(_chain(first, lines))
            return
        if ext == "csv" or any(c.isalpha() for c in first.split(";")[0].split(",")[0]):
            raise ImportError_("the header names no phone column (mobile_phone, mobilephone "
                               "or phone)")
        for line in _chain(first, lines):  # header-less TXT: number[;message]
            if line.strip():
                number, _, text = _split_plain(line)
                yield {"phone": number, "message": text} if text else {"phone": number}
    except UnicodeDecodeError:
        raise ImportError_("the file is not UTF-8 text") from None


def _split_plain(line: str) -> tuple[str, str, str]:
    parts = re.split(r"[,;\t|]", line.rstrip("\r\n"), maxsplit=1)
    return parts[0].strip(), "", parts[1].strip() if len(parts) > 1 else ""


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


# ------------------------------------------------------------------------------ importer


@dataclass
class Importer:
    """Imports mailing files into campaigns of ``account`` sent from ``sender``.

    Args:
        campaigns: the campaign service (its store holds the ``imports`` journal).
        folder: the drop folder; ``processed/`` and ``discarded/`` are made inside it.
        account, sender: whose campaigns, from which sender id.
        template: a saved template of the account for files without a message column.
        tz: time zone of "today" and of the ``_i``/``_LE`` times.
    """

    campaigns: Campaigns
    folder: Path
    account: str
    sender: str
    template: str = ""
    prefix: str = ""  # default country calling code for numbers written without one
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    now: Any = time.time
    chunk: int = 5000

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        for sub in ("processed", "discarded"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    async def process(self, path: Path) -> str:
        """Import one file; returns ``processed`` or ``discarded`` (where it went)."""
        path = Path(path)
        now = self.now()
        today = datetime.fromtimestamp(now, self.tz).date()
        try:
            name = parse_name(path.name, today, now, self.tz)
            await self._import(path, name)
        except ImportError_ as exc:
            logger.warning("import: %s discarded: %s", path.name, exc.reason)
            self._move(path, "discarded", exc.reason, ".error.txt")
            return "discarded"
        except CampaignError as exc:
            reason = "; ".join(f"{f}: {r}" for f, r in exc.errors)
            self._move(path, "discarded", reason, ".error.txt")
            return "discarded"
        return "processed"

    def _journal(self, key: bytes) -> dict[str, Any] | None:
        store = self.campaigns.store
        with store.read() as txn:
            raw = txn.get(key, db=store.db(IMPORTS))
        return None if raw is None else msgpack.unpackb(raw, raw=False)

    async def _import(self, path: Path, name: MailingName) -> None:
        key = f"{name.day.isoformat()}\x00{name.seq}".encode()
        entry = self._journal(key)
        if entry is not None and entry["file"] != path.name:
            raise ImportError_(f"sequence {name.seq} was already used today by {entry['file']}")
        if entry is None:
            # one full read of the file: in a thread, so a big file does not stall the server
            dropped = await trio.to_thread.run_sync(self._check_content, path, name)
            entry = await self._begin(key, path.name, name, dropped)
        if entry["state"] == "staging":
            await self._stage(key, path, name, entry)
        self._move(path, "processed", entry.get("report", ""), ".report.txt")

    def _check_content(self, path: Path, name: MailingName) -> list[str]:
        """Read the file once: refuse it for bad content; return the rows ``_h`` drops."""
        problems: list[str] = []
        rows = 0
        has_message = None
        numbers = NumberNormaliser(cache_size=1000)  # its own: this runs in a worker thread
        for i, row in enumerate(read_rows(path, name.ext), start=2):
            rows += 1
            if has_message is None:
                has_message = any(k in row for k in MESSAGE_COLUMNS)
                if not has_message and not self.template:
                    raise ImportError_("no message column (message, text) and no import "
                                       "template configured")
            number = next((row[f] for f in PHONE_FIELDS if row.get(f)), "")
            try:
                numbers.normalise(number, row.get("mobile_prefix") or self.prefix)
            except Invalid as exc:
                if len(problems) < 10_000:
                    problems.append(f"line {i}: {exc.reason}")
        if not rows:
            raise ImportError_("the file has no recipient rows")
        if problems and not name.cleanup:
            raise ImportError_(f"{len(problems)} invalid numbers (add _h to drop them):\n"
                               + "\n".join(problems[:1000]))
        return problems

    async def _begin(self, key: bytes, filename: str, name: MailingName,
                     dropped: list[str]) -> dict[str, Any]:
        tpl = self.campaigns.templates.get(self.account, self.template) if self.template else None
        c = Campaign(
            name=name.campaign, account=self.account, sender=self.sender,
            text=tpl.text if tpl else "{message}", template=tpl.name if tpl else "",
            on_missing=tpl.on_missing if tpl else "fail",
            defaults=dict(tpl.defaults) if tpl else {}, send_at=name.start,
            not_after=name.not_after, slice_percent=name.slice_percent,
            slice_every=name.slice_every, recontact_hours=name.recontact_hours,
            description=name.description, default_prefix=self.prefix,
            source=f"file:{filename}")
        if tpl is None:  # the message column is the text; its value is not a template
            c.text = "{message}"
        from gateway.campaigns import check

        errors = check(c)
        if errors:
            raise CampaignError(422, errors)
        entry = {"file": filename, "campaign": c.name, "state": "staging", "cursor": 0,
                 "report": ("rows dropped by _h (invalid numbers):\n" + "\n".join(dropped))
                 if dropped else ""}
        store = self.campaigns.store

        def op(txn: Any) -> None:
            if not self.campaigns.op_create(txn, c):
                raise CampaignError(409, [("campaign", f"campaign {c.name!r} already exists")])
            txn.put(key, msgpack.packb(entry, use_bin_type=True), db=store.db(IMPORTS))

        await store.write(op)
        return entry

    async def _stage(self, key: bytes, path: Path, name: MailingName, entry: dict[str, Any]
                     ) -> None:
        store = self.campaigns.store
        skip = int(entry["cursor"])
        rows = read_rows(path, name.ext)
        for _ in range(skip):  # already staged before a crash
            next(rows, None)

        def also(txn: Any, n: int) -> None:
            raw = txn.get(key, db=store.db(IMPORTS))
            cur = msgpack.unpackb(raw, raw=False)
            cur["cursor"] += n
            txn.put(key, msgpack.packb(cur, use_bin_type=True), db=store.db(IMPORTS))

        c = self.campaigns.get(self.account, entry["campaign"])
        if c is not None and not c.sealed:
            await self.campaigns.stage(self.account, entry["campaign"], rows, also=also,
                                       chunk=self.chunk)
            c = await self.campaigns.transition(self.account, entry["campaign"], "start")

        def done(txn: Any) -> None:
            cur = msgpack.unpackb(txn.get(key, db=store.db(IMPORTS)), raw=False)
            cur["state"] = "done"
            txn.put(key, msgpack.packb(cur, use_bin_type=True), db=store.db(IMPORTS))

        await store.write(done)
        entry["state"] = "done"

    def _move(self, path: Path, where: str, report: str, suffix: str) -> None:
        target = self.folder / where / path.name
        if target.exists():
            target = target.with_name(f"{target.stem}.{int(self.now())}{target.suffix}")
        if path.exists():
            shutil.move(os.fspath(path), target)
        if report:
            target.with_name(target.name + suffix).write_text(report + "\n", encoding="utf-8")


async def watch(importer: Importer, *, poll: float = 5.0,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Import every file that appears in the drop folder (once its size stops changing)."""
    seen: dict[str, int] = {}
    task_status.started()
    while True:
        for path in sorted(importer.folder.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            size = path.stat().st_size
            if seen.get(path.name) != size:  # still being written? look again next time
                seen[path.name] = size
                continue
            seen.pop(path.name, None)
            try:
                await importer.process(path)
            except Exception:  # a bug or a store failure: keep the file, retry later
                logger.exception("import of %s failed; will retry", path.name)
        await trio.sleep(poll)
