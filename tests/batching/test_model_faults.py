"""A model can raise anything, `BaseException`s included, and write into its input; the worker
survives all of it, and should its thread still end the engine fails closed."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from batchserve.batching import BatchPriority
from batchserve.errors import EngineFailed, ModelError
from tests.batching.support import ProcessorFactory, RecordingModel, row

POISON = 13
BASE_EXCEPTIONS = [SystemExit, KeyboardInterrupt, asyncio.CancelledError, GeneratorExit]


def raising(exc_type: type[BaseException]) -> Any:
    """A doubling model that raises `exc_type` for any batch holding the POISON row."""

    def model(batch: np.ndarray) -> np.ndarray:
        if (batch[:, 0] == POISON).any():
            raise exc_type("the model gave up")
        return batch * 2

    return model


@pytest.mark.parametrize("exc_type", BASE_EXCEPTIONS, ids=lambda e: e.__name__)
def test_a_base_exception_from_the_model_fails_only_its_own_row(
    make_processor: ProcessorFactory, exc_type: type[BaseException]
) -> None:
    processor = make_processor(raising(exc_type), initial_batch_size=8, max_batch_size=8)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in (1, 2, POISON, 4)]
    processor.resume()
    for ident, future in zip((1, 2, POISON, 4), futures, strict=True):
        if ident == POISON:
            with pytest.raises(ModelError, match=exc_type.__name__):
                future.result(timeout=5)
        else:
            assert future.result(timeout=5).tolist() == [2.0 * ident] * 2
    assert processor.check_health().live


@pytest.mark.parametrize("exc_type", BASE_EXCEPTIONS, ids=lambda e: e.__name__)
def test_the_worker_keeps_serving_after_a_base_exception(
    make_processor: ProcessorFactory, exc_type: type[BaseException]
) -> None:
    processor = make_processor(raising(exc_type))
    with pytest.raises(ModelError):
        processor.enqueue_predict(row(POISON)).result(timeout=5)
    later = [processor.enqueue_predict(row(i)) for i in range(5)]
    assert [f.result(timeout=5)[0] for f in later] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert processor.is_running


def test_a_base_exception_from_a_one_by_one_item_fails_only_that_item(
    make_processor: ProcessorFactory,
) -> None:
    def model(item: Any) -> Any:
        if item == "poison":
            raise KeyboardInterrupt
        return item.upper()

    processor = make_processor(model)
    bad, good = processor.enqueue_predict("poison"), processor.enqueue_predict("ok")
    with pytest.raises(ModelError, match="KeyboardInterrupt"):
        bad.result(timeout=5)
    assert good.result(timeout=5) == "OK"


class _BrokenLogging(logging.Filter):
    """Logging that raises on every warning: the worker's report of a model failure raises,
    and so does its report of its own crash, so even its recovery fails and the thread ends
    (the one way left for the worker thread to die)."""

    def filter(self, record: logging.LogRecord) -> bool:
        on_worker = threading.current_thread().name == "batchserve-worker"
        if on_worker and record.levelno >= logging.WARNING:
            raise SystemExit("logging is broken")
        return True


@pytest.fixture
def broken_logging() -> Iterator[None]:
    logger = logging.getLogger("batchserve.batching")
    breaker = _BrokenLogging()
    logger.addFilter(breaker)
    yield
    logger.removeFilter(breaker)


@pytest.mark.usefixtures("broken_logging")
def test_a_dead_worker_fails_closed(make_processor: ProcessorFactory) -> None:
    processor = make_processor(raising(ValueError), initial_batch_size=1, max_batch_size=1)
    processor.pause()
    poison = processor.enqueue_predict(row(POISON))
    queued = [processor.enqueue_predict(row(i)) for i in range(3)]
    processor.resume()

    with pytest.raises(ModelError):  # settled before the report that kills the worker
        poison.result(timeout=5)
    assert processor.worker_thread is not None
    processor.worker_thread.join(5)
    assert not processor.worker_thread.is_alive()
    for future in queued:
        with pytest.raises(EngineFailed, match="worker thread died"):
            future.result(timeout=5)
    with pytest.raises(EngineFailed, match="worker thread died"):
        processor.enqueue_predict(row(9), priority=BatchPriority.HIGH)
    report = processor.check_health()
    assert not report.live
    assert any("engine failed" in reason for reason in report.reasons)
    assert not processor.is_running


def test_a_metrics_collector_raising_a_base_exception_does_not_end_the_worker(
    make_processor: ProcessorFactory,
) -> None:
    class Exploding:
        def on_batch(self, *args: Any) -> None:
            raise KeyboardInterrupt("collector blew up")

    processor = make_processor(RecordingModel(), metrics_collector=Exploding())
    for ident in range(3):
        assert processor.enqueue_predict(row(ident)).result(timeout=5)[0] == 2.0 * ident
    assert processor.check_health().live


def test_stop_answers_what_is_queued_when_the_worker_is_gone(
    make_processor: ProcessorFactory,
) -> None:
    processor = make_processor()  # never started: there is no worker at all
    futures = [processor.enqueue_predict(row(i)) for i in range(3)]
    processor.stop(timeout=0.1)
    for future in futures:
        assert future.exception(timeout=1) is not None


def test_abort_answers_everything_at_once_and_stop_still_joins(
    make_processor: ProcessorFactory,
) -> None:
    model = RecordingModel()
    processor = make_processor(model)
    processor.pause()
    futures = [processor.enqueue_predict(row(i)) for i in range(4)]
    processor.abort("the server is exiting")
    for future in futures:
        with pytest.raises(Exception, match="the server is exiting"):
            future.result(timeout=1)
    processor.stop(timeout=5)
    assert processor.worker_thread is not None
    assert not processor.worker_thread.is_alive()
    assert model.calls == []


@pytest.mark.parametrize("readonly", [True, False], ids=["read-only", "writable"])
def test_the_batch_is_always_a_new_writable_array(
    make_processor: ProcessorFactory, readonly: bool
) -> None:
    def scribbler(batch: np.ndarray) -> np.ndarray:
        out = batch * 2
        batch[:] = -1.0  # a model may use its input as scratch space
        return out

    processor = make_processor(scribbler)
    item = row(3)
    item.flags.writeable = not readonly
    assert processor.enqueue_predict(item).result(timeout=5).tolist() == [6.0, 6.0]
    assert item.tolist() == [3.0, 3.0]  # the caller's array is untouched


def test_a_lone_dict_item_is_also_copied_into_its_batch(make_processor: ProcessorFactory) -> None:
    def scribbler(batch: dict[str, np.ndarray]) -> np.ndarray:
        out = batch["a"] + batch["b"]
        batch["a"][:] = 0
        return out

    processor = make_processor(scribbler)
    a = np.frombuffer(np.float64([1.0, 2.0]).tobytes())  # read-only, as a decoded body is
    item = {"a": a, "b": np.ones(2)}
    assert processor.enqueue_predict(item).result(timeout=5).tolist() == [2.0, 3.0]
    assert a.tolist() == [1.0, 2.0]
