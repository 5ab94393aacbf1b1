"""``septet accounts``: create accounts, change their settings, issue and revoke API keys.

    septet accounts create NAME [--prefix 351] [--encoding ...] [--max-parts N]
                                [--callback-url URL] [--callback-secret S]   prints a new API key
    septet accounts list | show NAME | key NAME | revoke KEY|KEY_ID | set NAME [options]

Writes go through the store's writer like the gateway's own, so the command runs beside a
serving gateway on the same store (LMDB serialises writers across processes). Part of
``gateway.cli``; must not be imported by actors or adapters.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway import config as cfg
from gateway.accounts import Account, AccountBook, KeyInfo
from gateway.errors import AccountError


def add_parser(sub: Any) -> None:
    """``septet accounts ...`` on the subcommand parsers ``sub``."""
    a = sub.add_parser("accounts", help="manage accounts and API keys")
    a.add_argument("--config", help="TOML configuration file", default=argparse.SUPPRESS)
    asub = a.add_subparsers(dest="action", required=True)
    for name in ("create", "set"):
        x = asub.add_parser(name)
        x.add_argument("name")
        x.add_argument("--prefix", help="default country calling code, e.g. 351")
        x.add_argument("--encoding", choices=cfg.POLICIES)
        x.add_argument("--max-parts", type=int)
        x.add_argument("--callback-url")
        x.add_argument("--callback-secret")
        x.add_argument("--inbound-url", help="where inbound (MO) messages are pushed "
                       "(default: the callback URL); \"\" clears it")
    asub.add_parser("list")
    asub.add_parser("show").add_argument("name")
    asub.add_parser("key").add_argument("name")
    asub.add_parser("revoke").add_argument(
        "key", help="the key (sk_...), or its id as `septet accounts show NAME` lists it")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The account settings given on the command line (those left out are not changed)."""
    pairs = {"default_prefix": args.prefix, "policy": args.encoding, "max_parts": args.max_parts,
             "callback_url": args.callback_url, "callback_secret": args.callback_secret,
             "inbound_url": args.inbound_url}
    return {k: v for k, v in pairs.items() if v is not None}


async def run(config: cfg.Config, args: argparse.Namespace) -> int:
    """Run ``septet accounts ACTION``; its errors raise ``AccountError`` (exit 1 in ``main``)."""
    from gateway.store import open_store

    Path(config.store.path).mkdir(parents=True, exist_ok=True)
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        book = AccountBook(store, inactivity_days=config.api.key_inactivity_days)
        if args.action == "create":
            key = await book.create(Account(args.name, **_settings(args)))
            print(key)
        elif args.action == "set":
            print(_describe(await book.update(args.name, **_settings(args))))
        elif args.action == "list":
            for name in book.names():
                print(name)
        elif args.action == "show":
            account = book.get(args.name)
            if account is None:
                raise AccountError(f"no account named {args.name!r}")
            print(_describe(account, book.keys(account.name)))
        elif args.action == "key":
            print(await book.add_key(args.name))
        elif args.action == "revoke":  # a key, or a key's id as `show` lists it
            revoke = book.revoke_key if args.key.startswith("sk_") else book.revoke_key_id
            if not await revoke(args.key):
                raise AccountError("no such key")
            print("revoked")
    return 0


def _describe(account: Account, keys: Sequence[KeyInfo] | None = None) -> str:
    """An account as one JSON line; with ``keys``, its API keys (id, label, created,
    last used, expired; times as RFC 3339 UTC)."""
    doc: dict[str, Any] = asdict(account)
    doc["callback_secret"] = "(set)" if account.callback_secret else ""
    if keys is not None:
        doc["keys"] = [{"id": k.key_id, "label": k.label, "created_at": _utc(k.created_at),
                        "last_used": _utc(k.last_used), "expired": k.expired} for k in keys]
    return json.dumps(doc)


def _utc(t: float) -> str:
    """Unix seconds as RFC 3339 UTC, to the second."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
