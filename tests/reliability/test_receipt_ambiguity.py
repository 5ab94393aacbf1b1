"""A receipt that arrives before its own submit response must not be taken by another
message whose id shares its digits under another reading (found by bench/torture.py: 7 of
50,000 messages stayed SENT under the ``resend`` policy with kills every 2 s).

With decimal ids, receipt "130" is looked up as #130 (decimal), #304 (read as hex) and #82
(its hex spelling "82" read as decimal, for SMSCs that answer hex and report decimal). If the
message submitted as "82" is still waiting for its own receipt and "130"'s submit response has
not been stored yet, the receipt is applied to "82"; "130" then never gets one, and "82"'s own
receipt is dropped as a duplicate. The connector's id format is not configurable yet
(``actors.correlation.ID_TYPES`` exists, not wired to ``[[smpp]]``), so the guessing mode
applies. Marked xfail(strict) until it is fixed, so the fix flips it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from actors import messages as m
from tests.gateway.test_store_correlator import _msgs, _parts, _state, rig


@pytest.mark.xfail(strict=True, reason="secondary id reading takes an early receipt (auto ids)")
async def test_an_early_receipt_is_not_taken_by_a_pending_message_sharing_digits(
        tmp_path: Path) -> None:
    async with rig(tmp_path / "db", now=lambda: 1000.0) as r:
        a, b = _msgs(2, 1000.0)
        await r.pstore.accept([a, b])
        await r.pstore.mark_submitting([*_parts(a), *_parts(b)], 1.0)
        await r.outcome(m.PartSubmitted(a.msg_id, 1, 1, "smsc", m.CarrierId("82"), 1000.1))
        await r.sink([m.CarrierReceipt("smsc", "130", "DELIVRD", "000", 1000.2)])  # early
        await r.outcome(m.PartSubmitted(b.msg_id, 1, 1, "smsc", m.CarrierId("130"), 1000.3))
        await r.sink([m.CarrierReceipt("smsc", "82", "UNDELIV", "001", 1000.4)])
        await r.finish()
        assert (_state(r.pstore, a.msg_id), _state(r.pstore, b.msg_id)) == \
            ("NOT_DELIVERED", "DELIVERED")
