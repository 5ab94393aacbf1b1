"""What the CLI's account commands share: the configured store, opened beside a serving
gateway or on a stopped one (LMDB serialises writers across processes), and the account the
command works on."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from gateway import config as cfg
from gateway.accounts import Account, AccountBook
from gateway.store import Store, open_store

__all__ = ["NoAccount", "account_store", "run_command"]


class NoAccount(Exception):
    """The command cannot start: no store where the configuration says, or no such account.
    Nothing was written; the message says which."""

    def report(self) -> None:
        """Tell standard error."""
        print(f"septet: {self}", file=sys.stderr)


@asynccontextmanager
async def account_store(config: cfg.Config, name: str) -> AsyncIterator[tuple[Store, Account]]:
    """The configured store and the account ``name`` in it.

    Raises:
        NoAccount: the store's folder does not exist (a command must not create an empty
            store by mistake), or it holds no account ``name``.
    """
    if not Path(config.store.path).is_dir():
        raise NoAccount(f"no store at {config.store.path}")
    async with open_store(config.store.path, sync=config.store.sync,
                          map_size=config.store.map_size) as store:
        account = AccountBook(store).get(name)
        if account is None:
            raise NoAccount(f"no account named {name!r}")
        yield store, account


def run_command(command: Callable[[cfg.Config, argparse.Namespace], Awaitable[int]],
                config: cfg.Config, args: argparse.Namespace) -> int:
    """Run ``command``; its exit status, or 2 after saying why it could not start."""
    status = 2
    try:
        status = trio.run(command, config, args)
    except* NoAccount as group:  # raised inside the store's nursery: in a group
        for leaf in group.exceptions:
            assert isinstance(leaf, NoAccount)
            leaf.report()
    return status
