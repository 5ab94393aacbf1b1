"""SMPP 3.4: the sans-IO PDU codec (``pdu``), the ESME session machine (``session``), receipt
parsing (``receipts``), part encoding (``submit``), status classification (``status``) and the
trio connector ``SmppCarrier`` (``client``). See docs/carriers.md.
"""

from __future__ import annotations

from adapters.smpp.client import CarrierStats, SmppCarrier
from adapters.smpp.receipts import parse_receipt
from adapters.smpp.session import EsmeSession
from adapters.smpp.submit import SubmitOptions, build_submit, encode_part

__all__ = [
    "CarrierStats",
    "EsmeSession",
    "SmppCarrier",
    "SubmitOptions",
    "build_submit",
    "encode_part",
    "parse_receipt",
]
