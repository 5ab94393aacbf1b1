"""The ESME's hot path on the wire: submit_sm_resp and receipts read without PDU objects.

``decode`` and ``decode_with_receipts`` are ``Framer`` decoders (``adapters.smpp._framer``)
for ``EsmeSession``. Two PDUs arrive once per submitted part and are read straight from the
frame (the second only by ``decode_with_receipts``, for a session whose driver takes them):

* a submit_sm_resp whose message_id ends with a NUL (or is absent) becomes the plain tuple
  ``(sequence, command_status, message_id)``;
* a receipt deliver_sm the way most SMSCs write it (esm_class receipt; TLVs
  receipted_message_id, message_state and maybe network_error_code, in that order, nothing
  else; a text with ``done date:``) becomes a ``ReceiptFields``: what ``parse_receipt``
  would find in it.

Anything else (another PDU, another TLV, a broken field, a receipt the fast path of
``parse_receipt`` would not take) goes to ``decode_frame`` unchanged, so every fault is named
as before. Property tests check both against ``decode_frame`` + ``parse_receipt``.
Sans-IO and pure. Must not import: trio, gateway, any actor module.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from actors.messages import CarrierReceipt
from adapters.smpp._decode import SM_FIXED, decode_frame
from adapters.smpp._octets import DELIVER_SM, SUBMIT_SM_RESP, Buffer, unpack_header
from adapters.smpp.receipts import done_and_error, smpp_date, state_name


class ReceiptFields(NamedTuple):
    """A receipt deliver_sm read by the fast path; ``done`` is the ``done date:`` word."""

    sequence: int
    carrier_id: str
    state: str
    error: str
    done: str


    def receipt(self, connector: str, received_at: float) -> CarrierReceipt:
        """The ``CarrierReceipt`` ``parse_receipt`` makes of the same deliver_sm."""
        return CarrierReceipt(connector, self.carrier_id, self.state, self.error, received_at,
                              smpp_date(self.done))


def decode(buf: Buffer, pos: int, end: int) -> Any:
    """``(sequence, status, message_id)`` for a submit_sm_resp, else ``decode_frame``'s PDU.

    ``buf[pos:end]`` is one frame whose command_length is ``end - pos`` (the framer's word).
    """
    _, command_id, status, seq = unpack_header(buf, pos)
    if command_id == SUBMIT_SM_RESP:
        return _submit_sm_resp(buf, pos, end, status, seq)
    return decode_frame(buf, pos, end)


def decode_with_receipts(buf: Buffer, pos: int, end: int) -> Any:
    """As ``decode``, and a ``ReceiptFields`` for a receipt deliver_sm of the common shape."""
    _, command_id, status, seq = unpack_header(buf, pos)
    if command_id == SUBMIT_SM_RESP:
        return _submit_sm_resp(buf, pos, end, status, seq)
    if command_id == DELIVER_SM:
        fields = _receipt(buf, pos + 16, end, seq)
        if fields is not None:
            return fields
    return decode_frame(buf, pos, end)


def _submit_sm_resp(buf: Buffer, pos: int, end: int, status: int, seq: int) -> Any:
    body = pos + 16
    if body == end:
        return (seq, status, "")
    nul = buf.find(0, body, end)
    if nul < 0:  # no NUL: decode_frame names the fault
        return decode_frame(buf, pos, end)
    return (seq, status, buf[body:nul].decode("latin-1"))  # octets after the NUL: ignored


# The TLVs of a receipt as most SMSCs (and our simulator) write them, in this order and
# nothing else: receipted_message_id (a C-Octet string filling its TLV), message_state,
# maybe network_error_code (§5.3.2.12, §5.3.2.35, §5.3.2.31).
_RECEIPT_TLVS: Final = re.compile(
    rb"\x00\x1e\x00(.)([^\0]+)\0\x04\x27\x00\x01(.)(?:\x04\x23\x00\x03.(..))?", re.DOTALL
).fullmatch


def _receipt(buf: Buffer, pos: int, end: int, seq: int) -> ReceiptFields | None:
    m = SM_FIXED(buf, pos, end)
    if m is None or (buf[m.start(8)] & 0x3C) != 0x04:  # esm_class: not a receipt (§5.2.12)
        return None
    stop = m.end()
    text_end = stop + buf[stop - 1]  # sm_length
    tlvs = _RECEIPT_TLVS(buf, text_end, end)
    if tlvs is None:
        return None
    size, carrier_id, state, network_error = tlvs.group(1, 2, 3, 4)
    if size[0] != len(carrier_id) + 1:  # the id must fill its TLV, else the TLVs lie elsewhere
        return None
    text = buf[stop:text_end]
    start = text.find(b"done date:")
    if start < 0:
        return None
    done, error = done_and_error(
        text, start, None if network_error is None else (network_error[0] << 8) | network_error[1])
    return ReceiptFields(seq, carrier_id.decode("latin-1"), state_name(state[0]), error, done)
