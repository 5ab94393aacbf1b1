"""``septet import`` (one mailing file into a campaign) and ``septet export`` (an account's
message history as CSV).

Both open the store the way the gateway does and can run beside a serving one: import stages
the file for the running gateway's campaign runner (docs/campaigns.md), export only reads.
Part of ``gateway.cli``; must not be imported by actors or adapters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway import config as cfg
from gateway._cli_store import account_store


def add_parsers(sub: Any) -> None:
    """``septet import`` and ``septet export`` on the subcommand parsers ``sub``."""
    imp = sub.add_parser("import", help="import one mailing file into a campaign")
    imp.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    imp.add_argument("file")
    e = sub.add_parser(
        "export", help="write an account's message history as CSV",
        description="Write an account's messages, with their state, parts' carrier ids and text, "
                    "as CSV (the columns of GET /v1/messages with Accept: text/csv). Reads only: "
                    "it can run beside a serving gateway on the same store.")
    e.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    e.add_argument("account", help="the account whose messages to export")
    e.add_argument("--campaign", help="only this campaign (e.g. API_SMS_2026_11)")
    e.add_argument("--status", help="only these states, comma-separated (e.g. NOT_DELIVERED,NOT_SENT)")
    e.add_argument("--since", help="accepted at or after: RFC 3339 with offset, or Unix seconds")
    e.add_argument("--until", help="accepted before: RFC 3339 with offset, or Unix seconds")
    e.add_argument("--to", help="only this recipient (normalised like a submitted number)")
    e.add_argument("--text", help="only texts containing this (case-insensitive)")
    e.add_argument("-o", "--output", help="file to write (default: standard output)")


async def import_file(config: cfg.Config, file: str) -> int:
    """``septet import FILE``: stage one mailing file (processed/ or discarded/ beside it);
    the running gateway's campaign runner expands it."""
    from zoneinfo import ZoneInfo

    from gateway.campaigns import Campaigns
    from gateway.importer import Importer
    from gateway.store import open_store

    imp = config.importer
    Path(config.store.path).mkdir(parents=True, exist_ok=True)
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        importer = Importer(Campaigns(store), Path(file).resolve().parent, imp.account,
                            imp.sender, imp.template, imp.default_prefix, ZoneInfo(imp.timezone))
        where = await importer.process(Path(file))
    print(f"septet: {Path(file).name} {where}")
    return 0 if where == "processed" else 1


async def export(config: cfg.Config, args: argparse.Namespace) -> int:
    """``septet export``: the filters are parsed by the API's own query parser, so the command
    and ``GET /v1/messages`` accept and refuse the same values."""
    from urllib.parse import urlencode

    from gateway.api.problems import Problem
    from gateway.api.query import parse_search
    from gateway.export import csv_chunks
    from gateway.validation import NumberNormaliser

    filters = {"campaign": args.campaign, "status": args.status, "since": args.since,
               "until": args.until, "to": args.to, "q": args.text}
    async with account_store(config, args.account) as (store, account):
        query = urlencode({k: v for k, v in filters.items() if v is not None})
        try:
            q = parse_search(query, account, NumberNormaliser(1000), 1, 1)
        except Problem as exc:
            for error in exc.errors:
                name = error.field.removeprefix("query:")
                name = "text" if name == "q" else name
                print(f"septet: --{name}: {error.reason}", file=sys.stderr)
            return 2
        # A command-line run: nothing else shares this event loop, blocking writes are fine.
        out = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: ASYNC230, SIM115
        try:
            for chunk in csv_chunks(store, account.name, q):
                out.write(chunk)
        finally:
            if args.output:
                out.close()
            else:
                out.flush()
    return 0
