"""Health: stuck batches, memory pressure (through an injected memory probe) and queue growth
turn into a state with reasons; the monitor thread checks on its own and acts on pressure."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from batchserve.batching import HealthState
from tests.batching.support import (
    GatedModel,
    ProcessorFactory,
    Recorder,
    RecordingModel,
    row,
    wait_until,
)


class Probe:
    """A fake system-memory reading (percent) that counts and timestamps its calls."""

    def __init__(self, percent: float, fail_first: int = 0) -> None:
        self.percent = percent
        self.fail_first = fail_first
        self.calls: list[float] = []
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            self.calls.append(time.monotonic())
            self._changed.notify_all()
            if len(self.calls) <= self.fail_first:
                raise OSError("cannot read memory")
        return self.percent

    def wait_calls(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, 5.0)


class Announcements(logging.Handler):
    """Sets `seen` once the engine logs a health state change containing `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def announced() -> Iterator[Announcements]:
    handler = Announcements("engine health unhealthy")
    logger = logging.getLogger("batchserve.batching")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_an_idle_engine_with_memory_to_spare_is_healthy(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(RecordingModel(), memory_probe=Probe(20.0))
    report = processor.check_health()
    assert report.state is HealthState.HEALTHY
    assert report.reasons == ()
    assert report.live
    assert report.as_dict()["state"] == "healthy"


def test_a_batch_running_past_stuck_batch_timeout_makes_the_engine_unhealthy(
    make_processor: ProcessorFactory, gated: GatedModel
) -> None:
    recorder = Recorder()
    processor = make_processor(
        gated, stuck_batch_timeout=0.05, memory_probe=Probe(20.0), metrics_collector=recorder
    )
    future = processor.enqueue_predict(row(1))
    gated.wait_calls(1)
    wait_until(lambda: processor.check_health().state is HealthState.UNHEALTHY)
    report = processor.check_health()
    assert report.stuck_batches == 1
    assert not report.live
    assert any("stuck_batch_timeout" in reason for reason in report.reasons)
    gated.open()
    future.result(timeout=5)
    recorder.wait_finished(1)
    assert processor.check_health().state is HealthState.HEALTHY


def test_the_health_monitor_thread_reports_a_stuck_batch_by_itself(
    make_processor: ProcessorFactory, gated: GatedModel, announced: Announcements
) -> None:
    processor = make_processor(
        gated,
        enable_health_monitoring=True,
        health_check_interval=0.01,
        stuck_batch_timeout=0.05,
        memory_probe=Probe(20.0),
    )
    processor.enqueue_predict(row(1))
    gated.wait_calls(1)
    assert announced.seen.wait(5)


def test_memory_over_the_warning_threshold_degrades_health(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(
        RecordingModel(),
        memory_warning_threshold=80,
        memory_critical_threshold=95,
        memory_probe=Probe(90.0),
    )
    report = processor.check_health()
    assert report.state is HealthState.DEGRADED
    assert not report.memory_critical
    assert any("memory_warning_threshold" in reason for reason in report.reasons)
    assert processor.current_batch_size == 32  # a warning alone changes nothing


def test_critical_memory_degrades_health_and_shrinks_the_target(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(
        RecordingModel(),
        memory_warning_threshold=80,
        memory_critical_threshold=95,
        memory_probe=Probe(97.0),
    )
    report = processor.check_health()
    assert report.state is HealthState.DEGRADED
    assert report.memory_critical
    assert any("memory_critical_threshold" in reason for reason in report.reasons)
    assert processor.current_batch_size == 16
    processor.check_health()
    assert processor.current_batch_size == 8


def test_the_monitor_shrinks_batches_under_critical_memory_on_its_own(
    make_processor: ProcessorFactory,
) -> None:
    probe = Probe(99.0)
    processor = make_processor(
        RecordingModel(),
        enable_health_monitoring=True,
        health_check_interval=0.01,
        memory_probe=probe,
    )
    probe.wait_calls(2)
    assert processor.current_batch_size < 32


def test_health_check_interval_is_the_monitor_period(make_processor: ProcessorFactory) -> None:
    probe = Probe(20.0)
    make_processor(
        RecordingModel(),
        enable_health_monitoring=True,
        health_check_interval=0.03,
        memory_probe=probe,
    )
    probe.wait_calls(4)
    gaps = [b - a for a, b in zip(probe.calls, probe.calls[1:4], strict=False)]
    assert min(gaps) >= 0.025


def test_without_health_monitoring_nothing_checks_by_itself(
    make_processor: ProcessorFactory,
) -> None:
    probe = Probe(20.0)
    before = {t for t in threading.enumerate() if t.name == "batchserve-health"}
    make_processor(RecordingModel(), enable_health_monitoring=False, memory_probe=probe)
    after = {t for t in threading.enumerate() if t.name == "batchserve-health"}
    assert after == before


def test_a_failing_memory_probe_does_not_end_monitoring(
    make_processor: ProcessorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    probe = Probe(20.0, fail_first=2)
    make_processor(
        RecordingModel(),
        enable_health_monitoring=True,
        health_check_interval=0.01,
        memory_probe=probe,
    )
    probe.wait_calls(4)
    assert "health check failed" in caplog.text


def test_queue_growth_past_its_thresholds_degrades_health(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor(
        RecordingModel(),
        max_queue_size=100,
        queue_warning_threshold=5,
        queue_critical_threshold=10,
        memory_probe=Probe(20.0),
    )
    processor.pause()
    processor.enqueue_many([row(i) for i in range(4)])
    assert processor.check_health().state is HealthState.HEALTHY
    processor.enqueue_many([row(4)])
    warned = processor.check_health()
    assert warned.state is HealthState.DEGRADED
    assert warned.reasons == ("queue 5 >= queue_warning_threshold 5",)
    processor.enqueue_many([row(i) for i in range(5, 10)])
    critical = processor.check_health()
    assert critical.state is HealthState.DEGRADED
    assert critical.reasons == ("queue 10 >= queue_critical_threshold 10",)
    processor.resume()
