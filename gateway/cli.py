"""The ``septet`` command: serve the gateway, run the simulator, manage accounts and opt-out
lists, run benches.

    septet serve [--config septet.toml]       the gateway on its embedded defaults (make serve)
    septet simulator [options]                the SMSC simulator alone (adapters.simulator)
    septet accounts create NAME [--prefix 351] [--encoding ...] [--max-parts N]
                                [--callback-url URL] [--callback-secret S]   prints a new API key
    septet accounts list | show NAME | key NAME | revoke KEY|KEY_ID | set NAME [options]
                                              (show lists the keys: id, last use, expired)
    septet config [--config septet.toml]      print the resolved configuration (or every error)
    septet bench NAME|all                     python -m bench.NAME (bench/*.py)
    septet import FILE [--config septet.toml] import one mailing file (docs/campaigns.md)
    septet export ACCOUNT [--campaign C] [--status S] [--since T] [--until T] [--to N] [-o FILE]
                                              an account's message history as CSV
    septet optouts import FILE --account NAME [--source LABEL]
                                              add a STOP list (CSV or one number a line)
    septet optouts export --account NAME [-o FILE]
                                              an account's opt-out list as CSV (docs/optouts.md)

This module parses the arguments and dispatches; each job lives in its own module:
``gateway.serve`` (with ``gateway._serve_carriers`` and ``gateway._serve_tasks``),
``gateway._cli_accounts``, ``gateway._cli_import_export`` and ``gateway._cli_optouts``. The
names tests and tools have always imported from here (``serve``, ``callback_policy``,
``ReceiptTap``...) are re-exported.

This module is the composition root's entry point: the only place reading ``sys.argv``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import trio

from gateway import _cli_accounts, _cli_import_export, _cli_optouts, logs
from gateway import config as cfg
from gateway._cli_store import run_command
from gateway._serve_carriers import ReceiptTap, carrier_id_types, http_carrier
from gateway._serve_tasks import CALLBACK_MARKS_KEPT, prune_callback_marks
from gateway.errors import AccountError, ConfigError
from gateway.serve import (
    _account_endpoints,
    _dev_account,
    callback_policy,
    inbound_routes,
    open_pipeline,
    serve,
)

# The serve wiring moved to gateway.serve; what tests, benches and docs import from here stays
# importable (the underscored ones are tests' handles on the wiring's parts).
__all__ = ["BENCHES", "CALLBACK_MARKS_KEPT", "ReceiptTap", "_account_endpoints", "_dev_account",
           "_http_carrier", "callback_policy", "carrier_id_types", "inbound_routes", "main",
           "open_pipeline", "prune_callback_marks", "serve"]

_http_carrier = http_carrier


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``septet``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulator"]:  # its own options, --help included, go to it untouched
        from adapters.simulator import main as simulator_main

        return int(simulator_main(argv[1:]))
    if argv[:1] == ["bench"] and len(argv) > 1:
        return _bench(argv[1], argv[2:])
    args = _parser().parse_args(argv)
    try:
        config = cfg.load(args.config)
    except ConfigError as exc:
        print(f"septet: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        print(json.dumps(asdict(config), indent=2))
        return 0
    if args.command == "import":
        return trio.run(_cli_import_export.import_file, config, args.file)
    if args.command == "export":
        return run_command(_cli_import_export.export, config, args)
    if args.command == "optouts":
        return run_command(_cli_optouts.run, config, args)
    if args.command == "serve":
        logs.configure(config.log_level, config.log_format)
        failed = False
        try:
            trio.run(partial(serve, config, key_file=args.print_key_file))
        except* OSError as group:  # e.g. the port is taken: say so without a traceback
            failed = True
            for leaf in _leaves(group):
                print(f"septet: cannot serve on {config.http.host}:{config.http.port}: {leaf}",
                      file=sys.stderr)
        return 1 if failed else 0
    status = 1
    try:
        status = trio.run(_cli_accounts.run, config, args)
    except* AccountError as group:  # raised inside the store's nursery
        for leaf in _leaves(group):
            print(f"septet: {leaf}", file=sys.stderr)
    return status


def _leaves(group: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in _leaves(exc)]
    return [group]


def _parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand but ``simulator``'s and ``bench``'s options."""
    p = argparse.ArgumentParser(prog="septet", description="Septet SMS gateway")
    p.add_argument("--config", help="TOML configuration file")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    s.add_argument("--print-key-file", help="also write the dev account's key to this file")
    sim = sub.add_parser("simulator", help="run the SMSC simulator", add_help=False)
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    c = sub.add_parser("config", help="print the resolved configuration")
    c.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    _cli_import_export.add_parsers(sub)
    b = sub.add_parser("bench", help="run a benchmark: " + ", ".join(BENCHES) + " or all")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    _cli_accounts.add_parser(sub)
    _cli_optouts.add_parser(sub)
    return p


BENCHES = ("codec", "pipeline", "ingress", "smpp", "shaping", "backlog", "callbacks", "receipts",
           "e2e", "campaign")
"""What ``septet bench all`` runs, in order (bench/loadgen.py and bench/chart.py are tools)."""


def _bench(name: str, rest: list[str]) -> int:
    """``septet bench NAME|all``: each benchmark in its own ``python -m bench.NAME``."""
    root = Path(__file__).resolve().parent.parent / "bench"
    if name != "all" and name not in BENCHES:
        print(f"septet: no benchmark {name!r}; one of: all, {', '.join(BENCHES)}",
              file=sys.stderr)
        return 2
    names = [n for n in BENCHES if (root / f"{n}.py").exists()] if name == "all" else [name]
    status = 0
    for n in names:
        print(f"== bench.{n}", flush=True)
        status |= subprocess.call([sys.executable, "-m", f"bench.{n}", *rest])
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
