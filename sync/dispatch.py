"""How a run hands its jobs out: synced here in threads (the CLI, the planner's inline batch), or queued on SQS for
the Lambda workers. Both stream: a plan of PyPI's size is never turned into a list of jobs, futures or results."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from typing import Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.progress import Reporter

SQS_BATCH = 10  # SendMessageBatch's maximum
SEND_THREADS = 8  # concurrent SendMessageBatch calls while fanning out

In = TypeVar("In")
Out = TypeVar("Out")


class Deadline:
    """A point in time the caller must finish by (monotonic clock)."""

    def __init__(self, seconds: float = math.inf):
        self._at = time.monotonic() + seconds

    @classmethod
    def for_lambda(cls, context: Any, *, margin: float, cap: float) -> Deadline:
        """The invocation's remaining time less `margin`, at most `cap` seconds."""
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else cap
        return cls(min(remaining, cap) - margin)

    def remaining(self) -> float:
        return self._at - time.monotonic()

    @property
    def passed(self) -> bool:
        return self.remaining() <= 0


class Syncer(Protocol):
    def sync(self, job: ProjectJob, *, check_existing: bool = False) -> ProjectResult: ...


class Dispatcher(Protocol):
    def __call__(
        self, jobs: Iterable[ProjectJob], deadline: Deadline, *, check_existing: bool
    ) -> Iterator[ProjectResult | ProjectJob]:
        """Hand `jobs` off before `deadline`; yields the result of each job synced here as it comes, and each job
        neither synced nor handed off (the deadline passed, the queue refused it). `check_existing`: a crashed run
        may have stored files already."""
        ...


class InProcessDispatcher:
    """Sync jobs here, `threads` at a time, with at most two jobs a thread queued at once."""

    def __init__(self, syncer: Syncer, threads: int, reporter: Reporter, stop: threading.Event):
        self.syncer = syncer
        self.threads = threads
        self.reporter = reporter
        self.stop = stop  # set when the run lost its lease: the jobs not started fail

    def __call__(
        self, jobs: Iterable[ProjectJob], deadline: Deadline, *, check_existing: bool = False
    ) -> Iterator[ProjectResult | ProjectJob]:
        def one(job: ProjectJob) -> ProjectResult | ProjectJob:
            if deadline.passed:
                return job
            if self.stop.is_set():
                return ProjectResult(job.project, Outcome.FAILED, errors=["run stopped: lease lost"])
            result = self.syncer.sync(job, check_existing=check_existing)
            self.reporter.project_finished(failed=result.outcome is Outcome.FAILED)
            return result

        with ThreadPoolExecutor(self.threads, thread_name_prefix="project") as pool:
            try:
                yield from streamed(pool, one, jobs, ahead=2 * self.threads)
            except BaseException:  # Ctrl-C, SIGTERM: finish only the projects in flight, then unwind (lease released)
                self.stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


class SqsDispatcher:
    """Enqueue jobs on SQS, ten a request, several requests at once, until the deadline."""

    def __init__(self, sqs: Any, queue_url: str, reporter: Reporter):
        self.sqs = sqs
        self.queue_url = queue_url
        self.reporter = reporter

    def __call__(
        self, jobs: Iterable[ProjectJob], deadline: Deadline, *, check_existing: bool = False
    ) -> Iterator[ProjectResult | ProjectJob]:
        """Enqueue; workers check for existing files themselves on a redelivery, so `check_existing` is not sent."""
        iterator = iter(jobs)
        batches = iter(lambda: list(itertools.islice(iterator, SQS_BATCH)), [])
        with ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="enqueue") as pool:
            for refused in streamed(pool, lambda batch: self._send(batch, deadline), batches, ahead=2 * SEND_THREADS):
                yield from refused

    def _send(self, batch: list[ProjectJob], deadline: Deadline) -> list[ProjectJob]:
        """Send one batch; returns the jobs SQS did not take."""
        if deadline.passed:
            return batch
        entries = [{"Id": str(i), "MessageBody": job.to_message()} for i, job in enumerate(batch)]
        try:
            answer = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            self.reporter.event("enqueue_failed", level="warning", jobs=len(batch), error=str(error))
            return batch
        failed = answer.get("Failed", [])
        for entry in failed:
            self.reporter.event("enqueue_refused", level="warning", code=entry.get("Code"), detail=entry.get("Message"))
        return [batch[int(entry["Id"])] for entry in failed]


def streamed(pool: ThreadPoolExecutor, work: Callable[[In], Out], items: Iterable[In], *, ahead: int) -> Iterator[Out]:
    """`work` over `items` in `pool`, with at most `ahead` submitted and unfinished; results as they finish."""
    running: set[Future[Out]] = set()
    for item in items:
        if len(running) >= ahead:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in done)
        running.add(pool.submit(work, item))
    yield from (future.result() for future in as_completed(running))
