"""Subprocess for the import crash test: import one file with small chunks, durably.

    python -m tests.gateway._import_worker STORE FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

import gateway.importer  # noqa: F401  (registers its databases before open_store)
from gateway.campaigns import Campaigns
from gateway.importer import Importer
from gateway.store import open_store


async def main(store_path: str, file: str) -> int:
    async with open_store(store_path, sync=True) as store:
        importer = Importer(Campaigns(store), Path(file).parent, "acme", "Septet",
                            prefix="351", chunk=500)
        where = await importer.process(Path(file))
    print(where, flush=True)
    return 0 if where == "processed" else 1


if __name__ == "__main__":
    sys.exit(trio.run(main, sys.argv[1], sys.argv[2]))
