"""SMPP 3.4 command_status values (§5.1.3), their names, and whether a retry may succeed.

The classification is the table ``TRANSIENT``: a status in it means "try again later"
(throttled, queue full, system error, wrong bind state); every other non-zero status is
permanent for the part. A connector can widen the transient set (vendor codes 0x400-0x4FF)
through its configuration. Pure data, no I/O.
"""

from __future__ import annotations

from typing import Final

ESME_ROK: Final = 0x00
ESME_RINVMSGLEN: Final = 0x01
ESME_RINVCMDLEN: Final = 0x02
ESME_RINVCMDID: Final = 0x03
ESME_RINVBNDSTS: Final = 0x04
ESME_RALYBND: Final = 0x05
ESME_RSYSERR: Final = 0x08
ESME_RINVSRCADR: Final = 0x0A
ESME_RINVDSTADR: Final = 0x0B
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RMSGQFUL: Final = 0x14
ESME_RSUBMITFAIL: Final = 0x45
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64
ESME_RINVOPTPARSTREAM: Final = 0xC0
ESME_RUNKNOWNERR: Final = 0xFF

NAMES: Final[dict[int, str]] = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}

TRANSIENT: Final[frozenset[int]] = frozenset(
    {
        ESME_RINVBNDSTS,  # we are not (yet) bound as we think: rebind and resend
        ESME_RSYSERR,  # SMSC-side failure, "system error"
        ESME_RMSGQFUL,  # SMSC queue full: slow down (§5.1.3)
        ESME_RSUBMITFAIL,  # "submit_sm failed" without a reason; SMSCs use it for overload
        ESME_RTHROTTLED,  # above the agreed rate: slow down (§5.1.3)
        ESME_RX_T_APPN,  # "ESME receiver temporary app error"
        ESME_RUNKNOWNERR,  # unknown: retried a bounded number of times by the dispatcher
    }
)
"""Statuses after which the same part may succeed later."""

SLOW_DOWN: Final[frozenset[int]] = frozenset({ESME_RTHROTTLED, ESME_RMSGQFUL})
"""Statuses that mean "too fast": the connector pauses and resends without failing the part."""


def name(status: int) -> str:
    """The spec name of ``status`` (``ESME_R...``) or a hex form for vendor codes."""
    return NAMES.get(status, f"status_0x{status:08X}")


def code(status: int) -> str:
    """The status as the 10-character hex string SMPP documents use (``0x0000000B``)."""
    return f"0x{status:08X}"


def is_transient(status: int, extra_transient: frozenset[int] = frozenset()) -> bool:
    """True when a part refused with ``status`` may be accepted if submitted again."""
    return status in TRANSIENT or status in extra_transient
