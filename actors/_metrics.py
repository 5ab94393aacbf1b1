"""Prometheus metrics of the core actors (the only actors module importing prometheus-client).

Names follow ``septet_<component>_<what>_<unit>``; labels are bounded (carrier, outcome).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

MESSAGES_ACCEPTED: Final = Counter(
    "septet_ingress_messages_total", "Messages committed by ingress")
PUMP_INFLIGHT: Final = Gauge(
    "septet_scheduler_inflight_messages", "Messages the pump handed on and not yet released")
PUMP_RELEASED: Final = Counter(
    "septet_scheduler_released_total", "Messages the pump handed to the rate limiter",
    ["path"])  # fast (from ingress) | store (read from the outbox)
LIMITER_HELD: Final = Gauge(
    "septet_rate_limiter_held_messages", "Messages the rate limiter holds until a rule allows")
LIMITER_RELEASED: Final = Counter(
    "septet_rate_limiter_released_total", "Messages the rate limiter released to the segmenter")
LIMITER_FINISHED: Final = Counter(
    "septet_rate_limiter_finished_total", "Messages the rate limiter ended NOT_SENT",
    ["code"])  # expired | recently_contacted | routing_failed | opted_out
LIMITER_DEFERRED: Final = Counter(
    "septet_rate_limiter_deferred_total",
    "Messages handed back to the durable schedule (a window or slice far away)")
LIMITER_THROTTLES: Final = Counter(
    "septet_rate_limiter_throttles_total",
    "Throttle answers that lowered a connector's rate in the rate limiter", ["carrier"])
SEGMENTED: Final = Counter(
    "septet_segmenter_parts_total", "Parts made by the segmenter")
SEGMENT_REFUSED: Final = Counter(
    "septet_segmenter_refused_total", "Messages the segmenter could not encode", ["code"])
SUBMITS: Final = Counter(
    "septet_dispatcher_submits_total", "Part submissions by outcome",
    ["carrier", "outcome"])  # accepted | transient | permanent | in_doubt
RETRIES: Final = Counter(
    "septet_dispatcher_retries_total", "Parts scheduled for another attempt", ["carrier"])
THROTTLED: Final = Counter(
    "septet_dispatcher_throttled_total", "Throttle answers fed back to the rate limiter",
    ["carrier"])
RECEIPTS: Final = Counter(
    "septet_correlator_receipts_total", "Receipts by outcome",
    ["outcome"])  # matched | duplicate | orphan | orphan_matched | unknown
ILLEGAL_TRANSITIONS: Final = Counter(
    "septet_core_illegal_transitions_total", "State moves refused by the state machine")
STATUS_EVENTS: Final = Counter(
    "septet_correlator_events_total", "Status events persisted", ["event"])
IN_DOUBT: Final = Counter(
    "septet_core_in_doubt_parts_total", "Parts found in flight at start-up", ["policy"])
RECEIPT_TIMEOUTS: Final = Counter(
    "septet_correlator_receipt_timeouts_total", "Messages finished by receipt timeout")

# Operations (issue 9): bound by gateway/app.py and measured at one spot each.
SUBMIT_LATENCY: Final = Histogram(
    "septet_dispatcher_submit_seconds", "Time of one Carrier.submit_many call (a group of parts)",
    ["carrier"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
QUEUE_DEPTH: Final = Gauge(
    "septet_core_queue_depth", "Batches buffered in the channel into a stage", ["stage"])
CARRIER_READY: Final = Gauge(
    "septet_carrier_ready", "1 when the connector is bound and can submit", ["carrier"])
CORE_READY: Final = Gauge(
    "septet_core_ready", "1 when recovery is done and a carrier can submit (what /readyz says)")
IN_DOUBT_LAST_START: Final = Gauge(
    "septet_core_in_doubt_parts_at_start", "Parts found in flight at the last start-up")
CALLBACK_REQUESTS: Final = Counter(
    "septet_callback_requests_total", "Callback HTTP requests by result", ["result"])  # ok | failed
CALLBACK_EVENTS: Final = Counter(
    "septet_callback_events_total", "Status events carried by callback requests", ["result"])
CALLBACK_LAG: Final = Histogram(
    "septet_callback_lag_seconds", "From a status event to its callback's 2xx answer",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
OUTBOX: Final = Gauge(
    "septet_core_outbox_messages", "Messages in the durable outbox (not yet SENT or final)")
OUTBOX_AGE: Final = Gauge(
    "septet_core_outbox_oldest_age_seconds",
    "How long the oldest due message of the outbox has been due (0 when none is due)")


class BatchHistogram:
    """A label-less histogram fed a batch of values at a time (a collector of its own).

    ``Histogram.observe`` costs ~0.8 µs a value; on the per-part hot path (one value per
    receipt) the values of a batch are binned here with ``bisect`` (~0.15 µs each). Fed from
    the event loop only.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], *,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds, total = self.counts, self.bounds, 0.0
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
            total += v
        self.sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, running = [], 0
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            cumulative.append((bound, running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative,
                                    sum_value=self.sum)


RECEIPT_LAG: Final = BatchHistogram(
    "septet_receipt_lag_seconds",
    "From a part's submit response to its receipt being applied (one value per matched receipt)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
