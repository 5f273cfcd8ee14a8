"""Dispatchers: the in-process one streams a plan of any size; deadlines from a Lambda context."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

from sync.dispatch import Deadline, InProcessDispatcher
from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.progress import Reporter


def test_a_big_plan_is_fed_to_the_workers_a_few_projects_at_a_time():
    """A plan of PyPI's size must not become a future per project: at most two queued per worker at any time."""
    workers = 4
    handed_out, in_flight, most_ahead = [0], [0], [0]
    lock = threading.Lock()

    def jobs():
        for index in range(500):
            with lock:
                handed_out[0] += 1
                most_ahead[0] = max(most_ahead[0], handed_out[0] - in_flight[0])
            yield ProjectJob(f"project-{index}")

    class Finished:
        @staticmethod
        def sync(job, **_):
            with lock:
                in_flight[0] += 1
            return ProjectResult(job.project, Outcome.UNCHANGED)

    dispatch = InProcessDispatcher(Finished(), workers, Reporter(io.StringIO()), threading.Event())
    results = list(dispatch(jobs(), Deadline(), check_existing=False))
    assert len(results) == 500
    assert most_ahead[0] <= 2 * workers + 1


def test_deadline_from_a_lambda_context_keeps_the_margin():
    deadline = Deadline.for_lambda(SimpleNamespace(get_remaining_time_in_millis=lambda: 30_000), margin=10, cap=900)
    assert 19 < deadline.remaining() <= 20
    capped = Deadline.for_lambda(SimpleNamespace(get_remaining_time_in_millis=lambda: 900_000), margin=10, cap=60)
    assert 49 < capped.remaining() <= 50
    assert Deadline(-1).passed
