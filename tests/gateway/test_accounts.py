"""gateway.accounts over a real store: keys stored hashed, authentication, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.accounts import Account, AccountBook, bearer_token
from gateway.errors import AccountError
from gateway.store import open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Any]:
    async with open_store(tmp_path / "db", sync=False) as s:
        yield s


async def test_create_authenticate_and_keys_are_stored_hashed(store: Any) -> None:
    clock = [0.0]
    book = AccountBook(store, monotonic=lambda: clock[0])
    key = await book.create(Account("shop", default_prefix="+351", policy="ucs2"))
    assert key.startswith("sk_") and len(key) > 40
    acct = book.authenticate(key)
    assert acct is not None and acct.name == "shop" and acct.default_prefix == "351"
    assert book.authenticate("sk_wrong") is None and book.authenticate("") is None
    with store.read() as txn:
        values = [v for _, v in txn.cursor(db=store.db(b"accounts"))]
        keys = [k for k, _ in txn.cursor(db=store.db(b"accounts"))]
    assert not any(key.encode() in x for x in values + keys)  # never in clear

    second = await book.add_key("shop")
    assert book.authenticate(second).name == "shop"  # type: ignore[union-attr]
    other = AccountBook(store)  # e.g. `septet accounts revoke` in another process
    assert await other.revoke_key(key)
    assert book.authenticate(key) is not None  # cached for a few seconds...
    clock[0] += 10
    assert book.authenticate(key) is None  # ...then gone
    assert not await book.revoke_key(key)
    assert book.authenticate(second) is not None


async def test_duplicates_and_bad_settings_are_refused(store: Any) -> None:
    book = AccountBook(store)
    await book.create(Account("shop"))
    with pytest.raises(AccountError, match="exists"):
        await book.create(Account("shop"))
    for bad in (Account("Bad Name"), Account("x", default_prefix="12345"),
                Account("y", policy="utf8"), Account("z", max_parts=0)):
        with pytest.raises(AccountError):
            await book.create(bad)
    assert book.names() == ["shop"]


async def test_update_settings(store: Any) -> None:
    book = AccountBook(store)
    key = await book.create(Account("shop"))
    updated = await book.update("shop", default_prefix="44", callback_url="https://x.example/cb",
                                callback_secret="s3cret")
    assert updated.default_prefix == "44"
    acct = book.authenticate(key)
    assert acct is not None and acct.callback_url == "https://x.example/cb"
    with pytest.raises(AccountError):
        await book.update("nobody", policy="ucs2")
    with pytest.raises(AccountError):
        await book.update("shop", colour="blue")


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") == ""
    assert bearer_token("") == ""
