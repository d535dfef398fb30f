"""The follow-up thread: a batch's settling and books run there, in posting order, while the
worker goes on; a failing task stops nothing; stats see every batch whose results are out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from batchserve.batching.followup import FollowUp
from tests.batching.support import ProcessorFactory, Recorder, row


@pytest.fixture
def followup() -> Iterator[FollowUp]:
    runner = FollowUp("batchserve-test-followup")
    yield runner
    runner.close()


def test_tasks_run_in_posting_order_on_the_follow_up_thread(followup: FollowUp) -> None:
    ran: list[tuple[int, str]] = []
    for i in range(50):
        followup.post(lambda i=i: ran.append((i, threading.current_thread().name)))
    assert followup.flush(timeout=5)
    assert [i for i, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"batchserve-test-followup"}


def test_flush_waits_for_a_task_still_running(followup: FollowUp) -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append(True)

    followup.post(slow)
    assert started.wait(5)
    assert not followup.flush(timeout=0.05)
    release.set()
    assert followup.flush(timeout=5)
    assert finished == [True]


def test_a_failing_task_does_not_stop_the_next(
    followup: FollowUp, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    followup.post(broken)
    followup.post(lambda: ran.append("after"))
    assert followup.flush(timeout=5)
    assert ran == ["after"]
    assert "follow-up task failed" in caplog.text


def test_close_runs_what_was_posted_and_later_posts_run_in_the_poster() -> None:
    runner = FollowUp("batchserve-test-followup")
    ran: list[str] = []
    for name in ("a", "b", "c"):
        runner.post(lambda name=name: ran.append(name))
    runner.close()
    assert ran == ["a", "b", "c"]
    runner.post(lambda: ran.append(threading.current_thread().name))
    assert ran[-1] == threading.current_thread().name
    assert runner.flush(timeout=0)


class SlowBooks(Recorder):
    """Books of each batch block in their last hook until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.booking, self.release = threading.Event(), threading.Event()

    def on_queue_depth(self, depths: dict[str, int]) -> None:
        self.booking.set()
        self.release.wait(5)
        super().on_queue_depth(depths)


def test_stats_wait_for_the_books_of_a_delivered_batch(make_processor: ProcessorFactory) -> None:
    books = SlowBooks()
    processor = make_processor(lambda batch: batch * 2, metrics_collector=books)
    np.testing.assert_array_equal(processor.enqueue_predict(row(1)).result(timeout=5), row(2))
    assert books.booking.wait(5)  # the worker went on; its follow-up is still booking
    reader = ThreadPoolExecutor(1)
    stats = reader.submit(processor.get_stats)
    with pytest.raises(TimeoutError):
        stats.result(timeout=0.05)
    books.release.set()
    assert stats.result(timeout=5)["batch_count"] == 1
    assert books.finished == 1
    reader.shutdown()
