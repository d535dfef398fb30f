"""`BatchHistogram` exposes what prometheus_client's own `Histogram` would, for the same values."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from batchserve.histograms import BatchHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_batch_observations_match_one_by_one_observations() -> None:
    values = [0.0, 0.001, 0.0010001, 0.01, 0.05, 0.1, 0.99, 1.0, 7.5, 1e9]
    values += np.random.default_rng(3).exponential(0.05, 200).tolist()
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("wait_seconds", "doc", BUCKETS, ours)
    reference = Histogram("wait_seconds", "doc", buckets=BUCKETS, registry=theirs)
    batch.observe_many(values[:7])
    batch.observe_many(values[7:])
    batch.observe_many([])
    for value in values:
        reference.observe(value)

    got, want = samples(ours), samples(theirs)
    assert got.keys() == want.keys()
    for key, expected in want.items():
        assert got[key] == pytest.approx(expected, rel=1e-12), key
    assert got[("wait_seconds_count", ())] == len(values)


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    registry = CollectorRegistry()
    BatchHistogram("wait_seconds", "doc", BUCKETS, registry).observe_many([0.001, 0.0011, 0.1])
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.001"}) == 1
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.01"}) == 2
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "0.1"}) == 3


def test_a_fresh_histogram_shows_zero_observations() -> None:
    registry = CollectorRegistry()
    BatchHistogram("wait_seconds", "doc", BUCKETS, registry)
    assert registry.get_sample_value("wait_seconds_count") == 0
    assert registry.get_sample_value("wait_seconds_bucket", {"le": "+Inf"}) == 0


def test_labelled_children_match_prometheus_labelled_children() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("latency_seconds", "doc", BUCKETS, ours, ("route",))
    reference = Histogram("latency_seconds", "doc", ("route",), buckets=BUCKETS, registry=theirs)
    observations = {"/predict": [0.002, 0.5, 3.0], "/v2/models/{name}/infer": [0.0005]}
    for route, values in observations.items():
        batch.observe_many(values, (route,))
        for v in values:
            reference.labels(route=route).observe(v)

    assert samples(ours) == pytest.approx(samples(theirs))
    assert ours.get_sample_value("latency_seconds_count", {"route": "/predict"}) == 3


def test_a_labelled_histogram_has_no_series_before_its_first_observation() -> None:
    registry = CollectorRegistry()
    BatchHistogram("latency_seconds", "doc", BUCKETS, registry, ("route",))
    assert samples(registry) == {}


def test_observations_need_one_value_per_label_name() -> None:
    batch = BatchHistogram("latency_seconds", "doc", BUCKETS, CollectorRegistry(), ("route",))
    with pytest.raises(ValueError, match="route"):
        batch.observe_many([0.1])
