"""``CarrierStats``: the plain counters one ``SmppCarrier`` keeps for metrics and the benchmark.

Shared by the submit queue (``_queue``), the deliver_sm hand-off (``_deliveries``) and the
connection code in ``client``; re-exported from ``adapters.smpp.client`` and ``adapters.smpp``.
Must not import: gateway, any actor module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CarrierStats:
    """Cheap counters for metrics and the benchmark."""

    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    throttled: int = 0
    in_doubt: int = 0
    receipts: int = 0
    other_deliveries: int = 0  # MO acknowledged and dropped: no inbound sink
    inbound: int = 0  # MO parts stored by the inbound sink
    inbound_refused: int = 0  # MO parts refused (0x64) because the sink failed
    inbound_invalid: int = 0  # MO parts that cannot be decoded, refused for good (0x65)
    connects: int = 0
    binds: int = 0
