"""Errors of the gateway layer (the composition root).

    GatewayError
    ├── ConfigError        the configuration (TOML file or environment) is wrong; lists every bad key
    ├── Saturated          the pipeline cannot take more now; carries ``retry_after`` seconds
    └── AccountError       an account or API key operation failed (unknown name, duplicate)

The HTTP layer turns request problems into RFC 9457 documents itself (gateway.api.problems);
those never surface as exceptions outside it. ``Saturated`` lives here so that the API can
catch it without caring whether gateway.app re-exports its own subclass.

Must not import: anything of ours.
"""

from __future__ import annotations

from collections.abc import Iterable


class GatewayError(Exception):
    """Root of the gateway layer's errors."""


class ConfigError(GatewayError):
    """The configuration is invalid. ``problems`` names every bad key with the reason."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class Saturated(GatewayError):
    """The gateway is saturated; the client should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float = 1.0, reason: str = "saturated") -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class AccountError(GatewayError):
    """An account operation failed (unknown account, name taken, invalid settings)."""
