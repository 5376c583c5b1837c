"""recon.threads: per-photo work on threads, in order, stopped cleanly."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from recon import threads


@pytest.fixture
def two_cores(monkeypatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _: {0, 1})


def test_results_come_in_photo_order_from_several_threads(two_cores) -> None:
    ran_on = set()

    def slow_square(value: int, delay: float) -> int:
        ran_on.add(threading.get_ident())
        time.sleep(delay)
        return value * value

    delays = [0.05, 0.0, 0.03, 0.0, 0.01, 0.0]  # later photos finish first
    assert list(threads.each_photo(slow_square, range(6), delays)) == [0, 1, 4, 9, 16, 25]
    assert len(ran_on) == 2


def test_closing_early_cancels_the_photos_not_started_and_waits_for_those_under_way(
    two_cores,
) -> None:
    started, finished = [], []

    def work(index: int) -> int:
        started.append(index)
        time.sleep(0.05)
        finished.append(index)
        return index

    with contextlib.closing(threads.each_photo(work, range(20))) as results:
        assert next(results) == 0
    # Closed: nothing still running, and most photos were never started.
    assert sorted(started) == sorted(finished)
    assert len(started) <= 4


def test_one_core_or_a_cap_of_one_runs_in_the_callers_thread(monkeypatch) -> None:
    caller = threading.get_ident()
    assert set(threads.each_photo(lambda _: threading.get_ident(), range(3), most=1)) == {caller}
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _: {0})
    assert set(threads.each_photo(lambda _: threading.get_ident(), range(3))) == {caller}
