"""The adaptive controller as a pure function of observation sequences, and its effect on a
running processor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchserve.batching import AdaptiveSizer, Observation
from tests.batching.support import GatedModel, ProcessorFactory, Recorder, row


def busy(target: int, backlog: int = 1000) -> Observation:
    """A full batch with plenty still queued."""
    return Observation(batch_size=target, queue_depth=backlog, system_load=0.9)


def quiet(demand: int = 1) -> Observation:
    """A small batch, nothing queued, the model mostly idle."""
    return Observation(batch_size=demand, queue_depth=0, system_load=0.1)


def test_rising_load_grows_the_target_up_to_max() -> None:
    sizer = AdaptiveSizer(1, 64, 4)
    targets = [sizer.observe(busy(sizer.target)) for _ in range(6)]
    assert targets == [8, 16, 32, 64, 64, 64]


def test_growth_follows_demand_not_just_a_full_batch() -> None:
    sizer = AdaptiveSizer(1, 64, 8)
    assert sizer.observe(Observation(batch_size=8, queue_depth=0)) == 8  # demand == target
    assert sizer.observe(Observation(batch_size=8, queue_depth=1)) == 16  # demand outran it


def test_falling_load_shrinks_the_target_back_to_min() -> None:
    sizer = AdaptiveSizer(4, 64, 64, patience=8)
    targets = [sizer.observe(quiet()) for _ in range(200)]
    assert targets[:7] == [64] * 7  # patience: one quiet spell is not a trend
    assert targets[7] == 48
    assert targets == sorted(targets, reverse=True)
    assert targets[-1] == 4


def test_shrinking_never_goes_below_the_observed_demand() -> None:
    sizer = AdaptiveSizer(1, 64, 64, patience=1)
    targets = [sizer.observe(quiet(demand=20)) for _ in range(50)]
    assert min(targets) >= 20


def test_a_busy_model_keeps_its_target_even_with_little_queued() -> None:
    sizer = AdaptiveSizer(1, 64, 64, patience=2)
    for _ in range(50):
        sizer.observe(Observation(batch_size=1, queue_depth=0, system_load=0.9))
    assert sizer.target == 64


def test_an_ordinary_batch_resets_the_patience() -> None:
    sizer = AdaptiveSizer(1, 64, 64, patience=4)
    for _ in range(3):
        sizer.observe(quiet())
    sizer.observe(Observation(batch_size=40, queue_depth=0, system_load=0.1))  # demand > half
    for _ in range(3):
        sizer.observe(quiet())
    assert sizer.target == 64


def test_a_batch_slower_than_the_latency_budget_shrinks_at_once() -> None:
    sizer = AdaptiveSizer(1, 64, 32, latency_budget_s=0.1)
    slow = Observation(batch_size=32, queue_depth=1000, processing_time_s=0.2, system_load=1)
    assert sizer.observe(slow) == 24  # no growth despite the backlog
    fast = Observation(batch_size=24, queue_depth=1000, processing_time_s=0.05, system_load=1)
    assert sizer.observe(fast) == 48


def test_back_off_halves_the_target_down_to_min() -> None:
    sizer = AdaptiveSizer(4, 64, 64)
    assert [sizer.back_off() for _ in range(6)] == [32, 16, 8, 4, 4, 4]


def test_set_target_clamps_to_the_bounds() -> None:
    sizer = AdaptiveSizer(2, 16, 8)
    assert sizer.set_target(100) == 16
    assert sizer.set_target(0) == 2
    assert sizer.target == 2


@pytest.mark.parametrize(("low", "high", "initial"), [(0, 8, 4), (4, 8, 2), (1, 8, 9)])
def test_inconsistent_bounds_are_refused(low: int, high: int, initial: int) -> None:
    with pytest.raises(ValueError, match="min_size"):
        AdaptiveSizer(low, high, initial)


observations = st.builds(
    Observation,
    batch_size=st.integers(0, 500),
    queue_depth=st.integers(0, 10_000),
    processing_time_s=st.floats(0, 10),
    system_load=st.floats(0, 1),
)


@settings(max_examples=50, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 64), st.integers(0, 64), st.integers(0, 64)),
    steps=st.lists(st.one_of(observations, st.just("back_off")), max_size=60),
)
def test_target_always_stays_within_bounds(
    bounds: tuple[int, int, int], steps: list[Observation | str]
) -> None:
    low = bounds[0]
    high = low + bounds[1]
    sizer = AdaptiveSizer(low, high, min(high, low + bounds[2]), latency_budget_s=1.0)
    for step in steps:
        target = sizer.back_off() if step == "back_off" else sizer.observe(step)  # type: ignore[arg-type]
        assert low <= target <= high
        assert target == sizer.target


def burst(
    make_processor: ProcessorFactory, gated: GatedModel, **config: object
) -> tuple[Recorder, int]:
    """Hold the model on a first item, queue 200 more, release it; return what was reported
    and the final target."""
    recorder = Recorder()
    processor = make_processor(
        gated, initial_batch_size=1, max_batch_size=64, metrics_collector=recorder, **config
    )
    first = processor.enqueue_predict(row(0))
    gated.wait_calls(1)
    rest = [processor.enqueue_predict(row(i)) for i in range(1, 201)]
    gated.open()
    for future in [first, *rest]:
        future.result(timeout=10)
    recorder.wait_finished(len(gated.calls))
    return recorder, processor.current_batch_size


def test_adaptive_target_grows_under_a_burst(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    recorder, final = burst(make_processor, gated, processing_strategy="adaptive")
    sizes = [size for size, _ in recorder.batches]
    assert sizes[:4] == [1, 2, 4, 8]
    assert max(sizes) == 64
    assert final == 64


@pytest.mark.parametrize(
    "config",
    [
        {"processing_strategy": "adaptive", "enable_adaptive_batching": False},
        {"processing_strategy": "greedy", "enable_adaptive_batching": True},
    ],
    ids=["adaptive-disabled", "greedy"],
)
def test_target_stays_put_without_adaptive_batching(
    make_processor: ProcessorFactory, gated: GatedModel, config: dict[str, object]
) -> None:
    recorder, final = burst(make_processor, gated, **config)
    assert {size for size, _ in recorder.batches} == {1}
    assert final == 1
