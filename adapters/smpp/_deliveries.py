"""deliver_sm to their sinks: receipts to the ``ReceiptSink``, MO parts to the ``InboundSink``.

Each connection's read loop sends the deliver_sm it reads, in batches, to ``Deliveries.serve``
(the connection's "receipt task"). It drains what is waiting so that one sink call takes all of
it, parses each PDU as a receipt (``adapters.smpp.receipts``) or a mobile-originated part
(``adapters.smpp.inbound``), calls the sinks within ``sink_timeout`` and only then answers
every deliver_sm (§4.6.2): 0x00 when stored, 0x64 (resend) when a sink failed or timed out,
0x65 for good when an MO part cannot be decoded; MO with no inbound sink is acknowledged and
dropped. The answers are queued on the session; ringing the link's bell makes its writer send them.

Must not import: gateway, any actor module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import repeat
from typing import Any

import trio

from actors.messages import CarrierReceipt
from actors.ports import ReceiptSink
from adapters.smpp import pdu as p
from adapters.smpp import status as st
from adapters.smpp._fast import ReceiptFields
from adapters.smpp._link import Link
from adapters.smpp._stats import CarrierStats
from adapters.smpp.inbound import ESME_RX_P_APPN, InboundPart, InboundSink, InvalidMo, parse_mo
from adapters.smpp.receipts import parse_receipt
from adapters.smpp.session import EsmeSession

logger = logging.getLogger(__name__)

Delivered = p.DeliverSm | ReceiptFields
"""What the session hands over per deliver_sm (``DeliverReceived.pdu``)."""


class Deliveries:
    """The deliver_sm hand-off of one connector (see the module docstring).

    Args:
        name: connector name (stored with receipts and MO, used in logs).
        inbound: where MO parts go; None acknowledges and drops them.
        packed_gsm7: MO GSM 7-bit bodies are packed.
        sink_timeout: each sink call's deadline; past it the deliver_sm are refused (0x64).
        clock: wall clock for ``received_at``.
        stats: the carrier's counters (receipts, inbound*, other_deliveries).
    """

    __slots__ = ("clock", "inbound", "name", "packed_gsm7", "sink_timeout", "stats")

    def __init__(self, name: str, *, inbound: InboundSink | None, packed_gsm7: bool,
                 sink_timeout: float, clock: Callable[[], float], stats: CarrierStats) -> None:
        self.name = name
        self.inbound = inbound
        self.packed_gsm7 = packed_gsm7
        self.sink_timeout = sink_timeout
        self.clock = clock
        self.stats = stats

    async def serve(self, link: Link, recv: trio.MemoryReceiveChannel[list[Delivered]],
                    sink: ReceiptSink) -> None:
        """Until ``recv`` ends: store each batch, answer it, wake the writer to send the answers."""
        async with recv:
            async for batch in recv:
                while True:  # drain what is waiting: one sink call for all of it
                    try:
                        batch += recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self.store_and_acknowledge(link.session, batch, sink)
                link.bell.ring()

    async def store_and_acknowledge(self, session: EsmeSession, batch: list[Delivered],
                                    sink: ReceiptSink) -> None:
        """Hand receipts and MO parts to their sinks; answer each deliver_sm after (§4.6.2)."""
        received_at = self.clock()
        name = self.name
        receipts: list[CarrierReceipt] = []
        receipt_seqs: list[int] = []  # the receipts' deliver_sm sequences, in batch order
        mo: list[tuple[int, InboundPart]] = []
        answers: dict[int, int] = {}  # sequence -> status, for what needs no sink
        for d in batch:
            if type(d) is ReceiptFields:  # read by the session's fast path
                receipts.append(d.receipt(name, received_at))
                receipt_seqs.append(d.sequence)
                continue
            assert isinstance(d, p.DeliverSm)
            receipt = parse_receipt(d, connector=name, received_at=received_at)
            if receipt is not None:
                receipts.append(receipt)
                receipt_seqs.append(d.sequence)
            elif self.inbound is None:
                self.stats.other_deliveries += 1  # MO without a sink: acknowledged, not kept
                answers[d.sequence] = st.ESME_ROK
            else:
                try:
                    mo.append((d.sequence, parse_mo(d, connector=self.name,
                                                    received_at=received_at,
                                                    packed_gsm7=self.packed_gsm7)))
                except InvalidMo as exc:  # resending cannot help: refuse it for good
                    logger.warning("smpp %s: MO refused: %s", self.name, exc,
                                   extra={"carrier": self.name})
                    self.stats.inbound_invalid += 1
                    answers[d.sequence] = ESME_RX_P_APPN
        if receipts:
            status = await self._to_sink(sink, receipts, "receipt")
            self.stats.receipts += len(receipts) if status == st.ESME_ROK else 0
            if not answers and not mo:  # receipts only (the common case): one status for all
                session.acknowledge_all(receipt_seqs, status)
                return
            answers.update(zip(receipt_seqs, repeat(status)))
        if mo:
            assert self.inbound is not None
            status = await self._to_sink(self.inbound, [m for _, m in mo], "inbound")
            if status == st.ESME_ROK:
                self.stats.inbound += len(mo)
            else:
                self.stats.inbound_refused += len(mo)
            answers.update((seq, status) for seq, _ in mo)
        for d in batch:
            session.acknowledge(d.sequence, answers[d.sequence])

    async def _to_sink(self, sink: Callable[[Any], Any], items: list[Any], what: str) -> int:
        """Call ``sink`` within ``sink_timeout``; the deliver_sm_resp status to answer with."""
        try:
            with trio.fail_after(self.sink_timeout):
                await sink(items)
        except Exception:  # not stored: refuse them so that the SMSC resends (§4.6.2)
            logger.exception("smpp %s: %s sink failed", self.name, what,
                             extra={"carrier": self.name})
            return st.ESME_RX_T_APPN
        return st.ESME_ROK
