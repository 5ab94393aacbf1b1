"""SMPP 3.4 octets: the command ids, the 16-octet header, and the field primitives of every body.

Owns the header layout (§3.2), the command ids (§5.1.2.1), C-Octet strings (§3.1) in both
directions and the one-octet range check. Text is latin-1 so no byte value is ever lost.
Sans-IO and pure; package-internal (``adapters.smpp.pdu`` re-exports the public names).
Must not import: trio, gateway, actors, or any other ``adapters.smpp`` module.
"""

from __future__ import annotations

import struct
from typing import Final, TypeAlias

from adapters.errors import LocalProtocolViolation

# Command ids, SMPP v3.4 §5.1.2.1.
GENERIC_NACK: Final = 0x80000000
BIND_RECEIVER: Final = 0x00000001
BIND_RECEIVER_RESP: Final = 0x80000001
BIND_TRANSMITTER: Final = 0x00000002
BIND_TRANSMITTER_RESP: Final = 0x80000002
SUBMIT_SM: Final = 0x00000004
SUBMIT_SM_RESP: Final = 0x80000004
DELIVER_SM: Final = 0x00000005
DELIVER_SM_RESP: Final = 0x80000005
UNBIND: Final = 0x00000006
UNBIND_RESP: Final = 0x80000006
BIND_TRANSCEIVER: Final = 0x00000009
BIND_TRANSCEIVER_RESP: Final = 0x80000009
OUTBIND: Final = 0x0000000B
ENQUIRE_LINK: Final = 0x00000015
ENQUIRE_LINK_RESP: Final = 0x80000015
RESPONSE_BIT: Final = 0x80000000

HEADER_LENGTH: Final = 16
MAX_PDU_LENGTH: Final = 70_000  # message_payload may carry up to 64 KiB (§5.3.2.32)

# The structs leave this module as bound methods, never as Struct objects: CPython 3.11
# compiles ``imported_name.method(...)`` as an attribute load that it cannot specialise for
# a Struct (it assumes a module), which costs ~40 ns on every call of a hot path.
_HEADER: Final = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence
pack_header: Final = _HEADER.pack
unpack_header: Final = _HEADER.unpack_from
unpack_u32: Final = struct.Struct(">I").unpack_from
# The fixed octets of submit_sm/deliver_sm after destination_addr (§4.4.1).
pack_sm_flags: Final = struct.Struct(">BBB").pack  # esm_class, protocol_id, priority_flag
_SM_TAIL: Final = struct.Struct(">BBBBB")  # registered_delivery .. sm_length
pack_sm_tail: Final = _SM_TAIL.pack
unpack_sm_tail: Final = _SM_TAIL.unpack_from

# Decoders read ``buf[pos:end]`` of either: the framer hands over its bytearray unchanged.
Buffer: TypeAlias = bytes | bytearray


def cstr(value: str, max_octets: int, field: str) -> bytes:
    """A C-Octet string (§3.1) of at most ``max_octets`` including the NUL."""
    raw = value.encode("latin-1", "strict") if value.isascii() else _latin1(value, field)
    if len(raw) >= max_octets or 0 in raw:
        raise LocalProtocolViolation(f"{field} must be under {max_octets} octets without NUL")
    return raw + b"\0"


def _latin1(value: str, field: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolViolation(f"{field} is not representable in octets") from exc


def byte(value: int, field: str) -> int:
    """``value`` if it fits one octet, else ``LocalProtocolViolation``."""
    if not 0 <= value <= 0xFF:
        raise LocalProtocolViolation(f"{field}={value} does not fit one octet")
    return value


def frame(command_id: int, status: int, sequence: int, body: bytes) -> bytes:
    """``body`` behind its header; sequence and status must be 32-bit unsigned."""
    if not 0 <= sequence <= 0xFFFFFFFF or not 0 <= status <= 0xFFFFFFFF:
        raise LocalProtocolViolation("sequence and status are 32-bit unsigned")
    return pack_header(HEADER_LENGTH + len(body), command_id, status, sequence) + body


def read_cstr(buf: Buffer, pos: int, end: int) -> tuple[str, int]:
    """The C-Octet string at ``pos`` and the position after its NUL.

    Raises:
        ValueError: no NUL before ``end``.
    """
    nul = buf.index(0, pos, end)
    return buf[pos:nul].decode("latin-1"), nul + 1
