"""Prometheus metrics of the HTTP layer and the ``/metrics`` text.

The objects live in prometheus-client's default registry, so ``/metrics`` also shows what the
actors and adapters register in theirs (each package has its own ``_metrics.py``). Labels are
bounded: route templates (never raw paths), status codes and refusal reasons from a fixed set.

Must not import: gateway.api, gateway.http.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

REQUESTS: Final = Counter(
    "septet_http_requests_total", "HTTP requests answered, by route template and status.",
    ["route", "status"])
LATENCY: Final = Histogram(
    "septet_http_request_duration_seconds", "Time to answer a request, by route template.",
    ["route"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
ACCEPTED: Final = Counter(
    "septet_api_messages_accepted_total", "Messages committed to the store and answered 202.")
REJECTED: Final = Counter(
    "septet_api_messages_rejected_total", "Messages refused at validation, by field.", ["field"])
SATURATED: Final = Counter(
    "septet_api_saturated_total", "Requests answered 503 because the pipeline was saturated.")
IDEMPOTENT_REPLAYS: Final = Counter(
    "septet_api_idempotent_replays_total", "Answers replayed for a repeated Idempotency-Key.")
CANCELS: Final = Counter(
    "septet_api_cancels_total", "Messages clients asked to cancel, by outcome: cancelled, "
    "too_late (handed to a carrier or final) or not_found.", ["outcome"])
CONNECTIONS: Final = Gauge("septet_http_connections", "Open HTTP connections.")
IN_FLIGHT: Final = Gauge("septet_http_requests_in_flight", "Requests being handled.")

_FIELDS: Final = frozenset({"to", "from", "text", "campaign", "send_at", "not_after", "encoding",
                            "callback_url", "client_ref", "fields", "max_parts", "messages",
                            "body", "default_country_prefix", "other"})


_CHILDREN: dict[tuple[str, int], tuple[Any, Any]] = {}


def observe(route: str, status: int, seconds: float) -> None:
    """Count one answered request (label children cached: ``labels()`` costs ~1 µs)."""
    children = _CHILDREN.get((route, status))
    if children is None:
        children = _CHILDREN[(route, status)] = (
            REQUESTS.labels(route, _status_label(status)), LATENCY.labels(route))
    children[0].inc()
    children[1].observe(seconds)


_STATUS: Final = {s: str(s) for s in range(100, 600)}


def _status_label(status: int) -> str:
    return _STATUS.get(status, "other")


def rejected(field: str) -> None:
    """Count one refused message, labelled by the top-level field at fault."""
    top = field.split("[")[-1].split("]")[-1].lstrip(".").split(".")[0] or "body"
    REJECTED.labels(top if top in _FIELDS else "other").inc()


def bind_server(statistics: Callable[[], dict[str, int]]) -> None:
    """Make the connection gauges read the server's live counters."""
    CONNECTIONS.set_function(lambda: statistics()["connections"])
    IN_FLIGHT.set_function(lambda: statistics()["in_flight"])


def render() -> bytes:
    """The Prometheus text exposition of every registered metric."""
    return generate_latest(REGISTRY)


# ---------------------------------------------------------------------------------------------
# The store and the event loop (issue 9), read at scrape time or sampled by one task.


class _StoreCollector:
    """Exposes the LMDB environment and its writer's counters (``Store.statistics()``)."""

    def __init__(self) -> None:
        self.store: Any = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        import lmdb
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        store = self.store
        if store is None or getattr(store, "closed", False):
            return
        try:
            info, stat = store.env.info(), store.env.stat()
        except lmdb.Error:  # closed under us: report nothing rather than fail /metrics
            return
        used = (info["last_pgno"] + 1) * stat["psize"]
        yield GaugeMetricFamily("septet_store_map_size_bytes", "LMDB map size (grows when full)",
                                value=info["map_size"])
        yield GaugeMetricFamily("septet_store_used_bytes", "LMDB pages in use, bytes", value=used)
        s = store.statistics()
        for name, doc, value in (
                ("septet_store_commits", "Write transactions committed (group commits)", s.commits),
                ("septet_store_ops", "Write operations committed (ops / commits = batch size)",
                 s.ops),
                ("septet_store_failed_ops", "Write operations that raised", s.failed_ops),
                ("septet_store_failed_commits",
                 "Commits that failed (disk full, I/O error); both writers", s.failed_commits),
                ("septet_store_map_grown", "Times the map was grown", s.map_grown),
                ("septet_store_commit_seconds", "Time spent committing (fsync), seconds",
                 s.commit_seconds),
                ("septet_store_ops_seconds", "Time spent running write operations, seconds",
                 s.ops_seconds)):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("septet_store_write_queue", "Write operations waiting for the "
                                "writer", value=s.queued)


_STORE = _StoreCollector()
REGISTRY.register(_STORE)


def bind_store(store: Any) -> None:
    """Make ``/metrics`` report this store (the last one bound wins)."""
    _STORE.store = store


STORE_COMMIT_LATENCY: Final = Histogram(
    "septet_store_commit_latency_seconds",
    "One group commit of the store writer: its ops, the commit and the fsync",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


EVENT_LOOP_LAG: Final = Histogram(
    "septet_event_loop_lag_seconds", "Lateness of a periodic 0.25 s wake-up of the trio loop",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))


async def watch_event_loop(period: float = 0.25) -> None:
    """Sleep ``period`` over and over and record how late each wake-up is (runs until cancelled)."""
    import trio

    while True:
        due = trio.current_time() + period
        await trio.sleep_until(due)
        EVENT_LOOP_LAG.observe(max(0.0, trio.current_time() - due))
