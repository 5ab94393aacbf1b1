"""Prometheus: SMPP window occupancy per connector, read when ``/metrics`` is scraped.

Nothing is counted per PDU: each ``SmppCarrier`` registers itself here when it is made, and at
scrape time the collector sums, per connector name, the requests awaiting a response on its
bound connections (``septet_smpp_window_in_use``) next to what its configuration allows
(``septet_smpp_window_size`` = ``window`` × ``binds``). Carriers that are gone drop out by
themselves (a weak set). Connectors that share a name are summed.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily


class _Windowed(Protocol):
    name: str

    def window_usage(self) -> tuple[int, int]:
        """(requests awaiting a response now, configured window × binds)."""
        ...


_CARRIERS: weakref.WeakSet[Any] = weakref.WeakSet()


def track(carrier: _Windowed) -> None:
    """Report ``carrier``'s window on ``/metrics`` while it exists."""
    _CARRIERS.add(carrier)


def window_samples() -> dict[str, tuple[int, int]]:
    """connector name -> (in use, size), summed over the live carriers of that name."""
    out: dict[str, tuple[int, int]] = {}
    for carrier in list(_CARRIERS):
        used, size = carrier.window_usage()
        had = out.get(carrier.name, (0, 0))
        out[carrier.name] = (had[0] + used, had[1] + size)
    return out


class _WindowCollector:
    def describe(self) -> list[Any]:
        return []  # families are made at scrape time (see collect)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily(
            "septet_smpp_window_in_use",
            "submit_sm awaiting a response on the connector's bound connections", labels=["carrier"])
        size = GaugeMetricFamily(
            "septet_smpp_window_size", "Configured SMPP window of the connector (window x binds)",
            labels=["carrier"])
        for name, (used, configured) in sorted(window_samples().items()):
            in_use.add_metric([name], used)
            size.add_metric([name], configured)
        yield in_use
        yield size


REGISTRY.register(_WindowCollector())
