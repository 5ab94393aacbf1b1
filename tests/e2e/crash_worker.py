"""The process the crash test kills: a gateway on a real LMDB file and a scripted carrier.

    python -m tests.e2e.crash_worker DIR accept N   # accept until DIR/acked holds ~N ids
                                                    # (paced), then run until killed
    python -m tests.e2e.crash_worker DIR finish     # run until every message is final

The carrier logs every accepted submission to DIR/carrier.log ("msg_id part carrier_id");
at start it redelivers a DELIVRD receipt for every logged submission, as an SMSC redelivers
receipts that were never acknowledged (duplicates are idempotent). Acknowledged ids are
appended to DIR/acked only after ``Gateway.accept`` returned. One JSON line is printed per
start with the in-doubt count recovery found.
"""

from __future__ import annotations

import json
import os
import sys
import time

import trio

from actors import messages as m
from actors.ingress import MsgIdFactory
from gateway.app import CoreSettings, open_gateway
from gateway.store import open_store
from tests.fakes import ScriptedCarrier

WINDOW = 300  # the pump's in-flight bound: duplicates per kill cannot exceed it


def _logged(path: str) -> list[m.CarrierReceipt]:
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    out.append(m.CarrierReceipt("sim", parts[2], "DELIVRD", "000", time.time()))
    return out


def _lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def _non_final(store: object) -> int:
    n = 0
    with store.read() as txn:  # type: ignore[attr-defined]
        for _, raw in txn.cursor(db=store.db(b"state")):  # type: ignore[attr-defined]
            from actors.correlation import StateRecord

            if StateRecord.unpack(raw).state not in ("DELIVERED", "NOT_DELIVERED", "NOT_SENT"):
                n += 1
    return n


async def main(path: str, mode: str, target: int) -> None:
    log = os.path.join(path, "carrier.log")
    carrier = ScriptedCarrier("sim", now=time.time, log_path=log, first_id=time.time_ns())
    carrier.queue_receipts(_logged(log))
    settings = CoreSettings(max_inflight=WINDOW, batch=50, receipt_timeout=None, grace=1.0)
    async with (open_store(os.path.join(path, "db")) as store,
                open_gateway(store, [carrier], settings) as gw):
        print(json.dumps({"in_doubt": gw.in_doubt}), flush=True)
        if mode == "accept":
            acked_path = os.path.join(path, "acked")
            done = _lines(acked_path)
            ids = MsgIdFactory()
            # A plain blocking append, line-buffered: each batch's ids are written before
            # anything else runs, only after accept returned (what the crash test checks).
            with open(acked_path, "a", buffering=1) as acked:  # noqa: ASYNC230
                while done < target:
                    batch = [m.Message(ids(), "acc", f"+3519{done + i:08d}", "S", "hi",
                                       "transliterate", time.time()) for i in range(50)]
                    await gw.accept(batch)
                    acked.write("".join(f"{x.msg_id}\n" for x in batch))
                    done += len(batch)
                    await trio.sleep(0.03)  # paced, so kills land during acceptance too
            await trio.sleep_forever()
        while _non_final(store):
            await trio.sleep(0.05)
        print(json.dumps({"final": True}), flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)
