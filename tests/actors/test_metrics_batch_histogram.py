"""actors._metrics.BatchHistogram: a batch-fed histogram that scrapes like prometheus-client's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from actors._metrics import RECEIPT_LAG, BatchHistogram

BOUNDS = (0.1, 1.0, 10.0)
VALUES = (0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 11.0, 500.0)


def test_batch_histogram_scrapes_as_a_prometheus_histogram_fed_one_value_at_a_time() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    h = BatchHistogram("t_lag_seconds", "doc", BOUNDS, registry=ours)
    h.observe_many(VALUES[:3])
    h.observe_many(VALUES[3:])
    h.observe_many([])
    reference = Histogram("t_lag_seconds", "doc", buckets=BOUNDS, registry=theirs)
    for v in VALUES:
        reference.observe(v)
    created = b"t_lag_seconds_created"
    assert [line for line in generate_latest(ours).splitlines() if created not in line] == \
        [line for line in generate_latest(theirs).splitlines() if created not in line]


def test_receipt_lag_is_registered_with_bounded_buckets() -> None:
    assert RECEIPT_LAG.name == "septet_receipt_lag_seconds"
    assert all(b < 10_000 for b in RECEIPT_LAG.bounds)  # "le" labels stay short
