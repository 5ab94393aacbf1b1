"""SMPP 3.4 PDUs as values: one dataclass per PDU (§4) and the ``Pdu`` union of them all.

Requests carry no command_status (it is always 0 on a request, §3.2). Optional TLVs the
gateway uses are fields of submit_sm/deliver_sm; any other TLV is kept in ``extra_tlvs``.
Pure data; package-internal (``adapters.smpp.pdu`` re-exports the public names).
Must not import: trio, gateway, actors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from adapters.smpp._octets import (
    BIND_RECEIVER,
    BIND_RECEIVER_RESP,
    BIND_TRANSCEIVER,
    BIND_TRANSCEIVER_RESP,
    BIND_TRANSMITTER,
    BIND_TRANSMITTER_RESP,
)

MAX_SHORT_MESSAGE: Final = 254  # §5.2.22; longer content goes in message_payload

ESM_UDHI: Final = 0x40  # esm_class bit 6: short_message starts with a UDH (§5.2.12)
ESM_DELIVERY_RECEIPT: Final = 0x04  # esm_class bits 5-2 = 0001: SMSC delivery receipt

BindMode: TypeAlias = Literal["transmitter", "receiver", "transceiver"]
BIND_IDS: Final[dict[str, int]] = {
    "receiver": BIND_RECEIVER,
    "transmitter": BIND_TRANSMITTER,
    "transceiver": BIND_TRANSCEIVER,
}
BIND_MODES: Final[dict[int, BindMode]] = {
    BIND_RECEIVER: "receiver",
    BIND_TRANSMITTER: "transmitter",
    BIND_TRANSCEIVER: "transceiver",
    BIND_RECEIVER_RESP: "receiver",
    BIND_TRANSMITTER_RESP: "transmitter",
    BIND_TRANSCEIVER_RESP: "transceiver",
}


@dataclass(slots=True)
class BindRequest:
    """bind_transmitter / bind_receiver / bind_transceiver (§4.1.1, §4.1.3, §4.1.5)."""

    mode: BindMode
    sequence: int
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True)
class BindResponse:
    """bind_*_resp (§4.1.2); the body may be absent when status is non-zero."""

    mode: BindMode
    sequence: int
    status: int = 0
    system_id: str = ""
    sc_interface_version: int | None = None


@dataclass(slots=True)
class Outbind:
    """outbind (§4.1.7): the SMSC asks the ESME to bind as a receiver."""

    sequence: int
    system_id: str = ""
    password: str = ""


@dataclass(slots=True)
class ShortMessagePdu:
    """The body shared by submit_sm (§4.4.1) and deliver_sm (§4.6.1), with the TLVs we use."""

    sequence: int
    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    receipted_message_id: str | None = None
    message_state: int | None = None
    network_error_code: bytes | None = None  # 3 octets: network type, error code (2)
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None
    user_message_reference: int | None = None
    extra_tlvs: tuple[tuple[int, bytes], ...] = ()


@dataclass(slots=True)
class SubmitSm(ShortMessagePdu):
    """submit_sm (§4.4.1)."""


@dataclass(slots=True)
class DeliverSm(ShortMessagePdu):
    """deliver_sm (§4.6.1): a mobile-originated message or, with esm_class 0x04, a receipt."""

    @property
    def is_receipt(self) -> bool:
        """True when esm_class marks an SMSC delivery receipt (§5.2.12, bits 5-2 = 0001)."""
        return (self.esm_class & 0x3C) == ESM_DELIVERY_RECEIPT


@dataclass(slots=True)
class SubmitSmResp:
    """submit_sm_resp (§4.4.2); message_id is the SMSC's id for the part, verbatim."""

    sequence: int
    status: int = 0
    message_id: str = ""


@dataclass(slots=True)
class DeliverSmResp:
    """deliver_sm_resp (§4.6.2); message_id is unused and NULL."""

    sequence: int
    status: int = 0
    message_id: str = ""


@dataclass(slots=True)
class EnquireLink:
    """enquire_link (§4.11.1)."""

    sequence: int


@dataclass(slots=True)
class EnquireLinkResp:
    """enquire_link_resp (§4.11.2)."""

    sequence: int
    status: int = 0


@dataclass(slots=True)
class Unbind:
    """unbind (§4.2.1)."""

    sequence: int


@dataclass(slots=True)
class UnbindResp:
    """unbind_resp (§4.2.2)."""

    sequence: int
    status: int = 0


@dataclass(slots=True)
class GenericNack:
    """generic_nack (§4.3.1): the answer to a PDU that could not be understood."""

    sequence: int
    status: int = 0


Pdu: TypeAlias = (
    BindRequest
    | BindResponse
    | Outbind
    | SubmitSm
    | DeliverSm
    | SubmitSmResp
    | DeliverSmResp
    | EnquireLink
    | EnquireLinkResp
    | Unbind
    | UnbindResp
    | GenericNack
)
