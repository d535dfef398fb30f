"""Model instances: `instances` execution slots, each running one batch at a time on its own
thread; a batch forms only when a slot is free; a stuck slot is reported by name while the
others keep serving."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from batchserve.batching import BatchPriority
from tests.batching.support import ProcessorFactory, RecordingModel, row, wait_until


class Device:
    """A model instance that holds each call until the test releases it, counting how many
    calls run at once across all devices."""

    running = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, name: str, release: threading.Event) -> None:
        self.name = name
        self.release = release
        self.entered = threading.Event()
        self.rows: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with Device.lock:
            Device.running += 1
            Device.most = max(Device.most, Device.running)
            self.rows.extend(int(r[0]) for r in batch)
        self.entered.set()
        self.release.wait(10)
        with Device.lock:
            Device.running -= 1
        return batch * 2


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    Device.running = Device.most = 0


def test_two_slots_run_two_batches_at_once_each_on_its_own_instance(
    make_processor: ProcessorFactory,
) -> None:
    release = threading.Event()
    first, second = Device("a", release), Device("b", release)
    processor = make_processor(initial_batch_size=2, max_batch_size=2, instances=2)
    processor.start([first, second])
    futures = [processor.enqueue_predict(row(i)) for i in range(1, 5)]
    assert first.entered.wait(5)
    assert second.entered.wait(5)  # the second batch did not wait for the first
    release.set()
    assert [f.result(timeout=5)[0] for f in futures] == [2.0, 4.0, 6.0, 8.0]
    assert Device.most == 2
    assert sorted(first.rows + second.rows) == [1, 2, 3, 4]
    assert first.rows
    assert second.rows


def test_one_slot_never_runs_two_batches_at_once(make_processor: ProcessorFactory) -> None:
    release = threading.Event()
    device = Device("a", release)
    processor = make_processor(device, initial_batch_size=1, max_batch_size=1, instances=1)
    futures = [processor.enqueue_predict(row(i)) for i in range(3)]
    assert device.entered.wait(5)
    release.set()
    for future in futures:
        future.result(timeout=5)
    assert Device.most == 1


def test_a_batch_forms_only_when_a_slot_is_free_so_batches_still_grow(
    make_processor: ProcessorFactory,
) -> None:
    release = threading.Event()
    model = Device("shared", release)
    processor = make_processor(model, initial_batch_size=64, max_batch_size=64, instances=2)
    first = [processor.enqueue_predict(row(i)) for i in range(2)]
    assert model.entered.wait(5)
    wait_until(lambda: Device.running == 1 and len(processor) == 0)
    processor.pause()  # both slots busy or paused: what comes now queues up
    later = [processor.enqueue_predict(row(i)) for i in range(10, 30)]
    processor.resume()
    wait_until(lambda: Device.running == 2)
    release.set()
    for future in first + later:
        future.result(timeout=5)
    assert max(processor.stats.batch_sizes) == 20  # type: ignore[union-attr]


def test_priorities_hold_across_slots(make_processor: ProcessorFactory) -> None:
    model = RecordingModel()
    processor = make_processor(model, initial_batch_size=1, max_batch_size=1, instances=3)
    processor.pause()
    low = [processor.enqueue_predict(row(i), priority=BatchPriority.LOW) for i in range(10)]
    high = [processor.enqueue_predict(row(100 + i), priority=BatchPriority.HIGH) for i in range(5)]
    processor.resume()
    for future in low + high:
        future.result(timeout=5)
    assert set(model.seen[:5]) == {100, 101, 102, 103, 104}  # HIGH first, whatever slot


def test_a_stuck_slot_is_reported_by_name_while_the_others_keep_serving(
    make_processor: ProcessorFactory,
) -> None:
    never = threading.Event()
    stuck = Device("stuck", never)
    free = RecordingModel()
    processor = make_processor(
        initial_batch_size=1, max_batch_size=1, instances=2, stuck_batch_timeout=0.05
    )
    processor.start([stuck, free])
    hung = processor.enqueue_predict(row(1))
    assert stuck.entered.wait(5)
    served = [processor.enqueue_predict(row(i)) for i in range(2, 12)]
    assert [f.result(timeout=5)[0] for f in served] == [2.0 * i for i in range(2, 12)]

    def reported() -> bool:
        report = processor.check_health()
        return not report.live and any("instance 0" in reason for reason in report.reasons)

    wait_until(reported)
    instances = processor.get_stats()["instances"]
    assert [i["name"] for i in instances] == ["instance 0", "instance 1"]
    assert instances[0]["running_for_s"] is not None
    assert instances[1]["batches"] == 10
    never.set()
    assert hung.result(timeout=5)[0] == 2.0


def test_a_sequence_of_the_wrong_length_is_refused(make_processor: ProcessorFactory) -> None:
    processor = make_processor(instances=3)
    with pytest.raises(ValueError, match="2 model functions for instances=3"):
        processor.start([lambda b: b, lambda b: b])


def test_stop_answers_everything_in_every_slot(make_processor: ProcessorFactory) -> None:
    release = threading.Event()
    devices = [Device(str(i), release) for i in range(3)]
    processor = make_processor(initial_batch_size=1, max_batch_size=1, instances=3)
    processor.start(devices)
    futures: list[Any] = [processor.enqueue_predict(row(i)) for i in range(20)]
    wait_until(lambda: Device.running == 3)
    stopper = threading.Thread(target=processor.stop, kwargs={"timeout": 0.2})
    stopper.start()
    stopper.join(5)
    release.set()
    for future in futures:
        assert future.done()
