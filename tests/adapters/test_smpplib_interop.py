"""The simulator checked against an SMPP client nobody here wrote: PyPI ``smpplib``.

smpplib is synchronous; it runs in a worker thread (trio.to_thread) with socket timeouts, while
the simulator serves on the trio loop.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import smpplib.client
import smpplib.consts
import trio

from adapters.simulator import SimulatorConfig, SimulatorStats, serve_simulator

N = 5


def _smpplib_session(port: int) -> dict[str, Any]:
    """Bind, submit N messages with receipts requested, read responses and receipts, unbind."""
    sent: list[str] = []
    receipts: list[bytes] = []
    receipt_ids: list[bytes] = []
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)

    def on_sent(pdu: Any, **_: Any) -> None:
        sent.append(pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else pdu.message_id)

    def on_received(pdu: Any, **_: Any) -> None:
        receipts.append(pdu.short_message)
        receipt_ids.append(pdu.receipted_message_id)

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.connect()
    try:
        client.bind_transceiver(system_id="smpplib", password="secret")
        for i in range(N):
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="Septet",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr=f"4915100000{i:03d}",
                short_message=f"interop {i}".encode(),
                registered_delivery=1,
            )
        while len(sent) < N or len(receipts) < N:
            client.read_once()
        client.unbind()
    finally:
        client.disconnect()
    return {"sent": sent, "receipts": receipts, "receipt_ids": receipt_ids}


async def test_smpplib_binds_submits_and_receives_receipts() -> None:
    stats = SimulatorStats()
    config = SimulatorConfig(system_id="smpplib", password="secret", id_format="hex")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_simulator, config, stats=stats))
        with trio.fail_after(20):
            got = await trio.to_thread.run_sync(_smpplib_session, port)
        with trio.fail_after(5):
            while stats.receipts_acked < N:
                await trio.sleep(0.005)  # polling a counter, not timing logic
        nursery.cancel_scope.cancel()
    assert got["sent"] == [f"{i:X}" for i in range(1, N + 1)]
    assert sorted(r.split(b" ")[0] for r in got["receipts"]) == [
        f"id:{i:X}".encode() for i in range(1, N + 1)]
    assert all(b"stat:DELIVRD" in r for r in got["receipts"])
    assert stats.binds == 1 and stats.unbinds == 1
    assert stats.submits_accepted == N and stats.duplicates() == 0
    assert sorted(k[1] for k in stats.accepted) == [f"interop {i}".encode() for i in range(N)]


def _smpplib_bad_password(port: int) -> int:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    try:
        client.bind_transmitter(system_id="smpplib", password="wrong")
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1])
    finally:
        client.disconnect()
    return 0


async def test_smpplib_sees_a_refused_bind() -> None:
    config = SimulatorConfig(system_id="smpplib", password="secret")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve_simulator, config))
        with trio.fail_after(20):
            status = await trio.to_thread.run_sync(_smpplib_bad_password, port)
        nursery.cancel_scope.cancel()
    assert status == 0x0E  # ESME_RINVPASWD
