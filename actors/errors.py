"""Errors that actors catch. They live beside the ports so that actors need not import adapters.

    CarrierError
    ├── TransientCarrierError   timeout, refused, throttled, not bound: retry later
    └── PermanentCarrierError   bad number, bad sender, rejected: do not retry (carries the code)
    StoreError                  the durable store refused a write (disk full, map cannot grow)

Retry decisions use the class, never the message text.
"""

from __future__ import annotations


class CarrierError(Exception):
    """A carrier could not take a part."""

    def __init__(self, reason: str, *, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TransientCarrierError(CarrierError):
    """Worth retrying: timeout, connection refused or lost, throttled, queue full."""


class PermanentCarrierError(CarrierError):
    """Not worth retrying: the carrier refused the part for what it is."""


class StoreError(Exception):
    """The store could not commit; nothing in the failed batch was acknowledged."""
