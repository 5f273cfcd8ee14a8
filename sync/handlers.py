"""PyPI-scale sync on Lambda: the run loop of the CLI (`sync.run`), fanned out over SQS to queue workers.

- `planner_handler` (every minute): one run from the change feed since the stored serial; a small plan is synced
  here, a large one enqueued (`sync.dispatch`); what could not be handed off before the time budget stays pending;
  workers' roster markers (`sync.roster`) are folded into the state and the root pages; then the public status.
  The event `{"backfill": true}` plans from the whole upstream listing instead.
- `worker_handler` (SQS, ReportBatchItemFailures): syncs each project of a batch under its project lease; only
  failed ones are retried.

`run_local` drives the same planner and worker code with threads instead of Lambdas.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config

from sync.config import MirrorConfig
from sync.dispatch import Deadline, Dispatcher, InProcessDispatcher, SqsDispatcher
from sync.edge_probe import EdgeProbe
from sync.invalidation import EdgeRefresher
from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.lambda_settings import (
    EDGE_LAG_METRIC,
    LAG_METRIC,
    METRICS_NAMESPACE,
    SERVICE_NAME,
    HandlerSettings,
    settings_from_env,
)
from sync.progress import LogRoute, Reporter
from sync.project_sync import ProjectSync
from sync.roster import PROJECT_LEASE_TTL, LeasedProjectSync
from sync.run import PlannerBusy, RunResult, SyncRun
from sync.status import pass_status, previous_sync, write_status
from sync.storage import StorageError, open_storage
from sync.upstream import UpstreamClient


class ProjectFailed(Exception):
    """A project of an SQS batch could not be synced: its message is retried."""


class Runtime:
    """Everything one Lambda container (or one local run) reuses: storage, upstream client, engine, AWS clients."""

    def __init__(
        self,
        settings: HandlerSettings,
        reporter: Reporter,
        *,
        lag_sink: Callable[[float], None] | None,
        edge_lag_sink: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        config = settings.mirror
        self.settings = settings
        self.reporter = reporter
        self.clock = clock
        self.storage = open_storage(config.dest, endpoint_url=config.endpoint_url)
        self.upstream = UpstreamClient(
            config.upstream,
            contact=config.contact,
            max_connections=config.workers,
            file_hosts=config.allowed_file_hosts,
        )
        self.core = ProjectSync(config, self.upstream, self.storage, reporter)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.syncer = LeasedProjectSync(self.core, owner=self.owner, lag_sink=lag_sink)
        aws = Config(retries={"mode": "standard", "max_attempts": 5})
        self.edge = (
            EdgeRefresher(
                boto3.client(
                    "cloudfront", endpoint_url=settings.cloudfront_endpoint_url or config.endpoint_url, config=aws
                ),
                settings.distribution_id,
                self.storage,
                settings=settings.edge,
                reporter=reporter,
            )
            if settings.distribution_id
            else None
        )
        self.probe = EdgeProbe(settings.probe_url, edge_lag_sink) if settings.probe_url and edge_lag_sink else None
        self.queue = (
            SqsDispatcher(
                boto3.client("sqs", endpoint_url=config.endpoint_url, config=aws), settings.queue_url, reporter
            )
            if settings.queue_url
            else None
        )

    def planner(self, fan_out: Dispatcher | None) -> SyncRun:
        """The run loop as the planner runs it: inline under project leases, roster folded, edge refreshed."""
        return SyncRun(
            self.core,
            inline=self.threads(self.settings.mirror.workers),
            fan_out=fan_out,
            inline_threshold=self.settings.inline_threshold,
            roster=True,
            edge=self.edge,
            probe=self.probe,
        )

    def threads(self, count: int) -> InProcessDispatcher:
        return InProcessDispatcher(self.syncer, count, self.reporter, self.core.stop)

    def plan(self, deadline: Deadline, *, backfill: bool = False, fan_out: Dispatcher | None = None) -> RunResult:
        """One planner run, fanning out over `fan_out` (by default the queue, when there is one), then the status;
        first, the edge probes' reads. A run that finds another planner holding the lease leaves the status to it;
        one that raises writes none, so the status's `last_check` ages."""
        if self.probe is not None:
            self.probe.check()
        try:
            result = self.planner(fan_out or self.queue).run(self.owner, deadline=deadline, backfill=backfill)
        except PlannerBusy as busy:  # an overlapping invocation is mid-pass: it does this work
            self.reporter.event("planner_busy", error=str(busy))
            return busy.result
        self.reporter.event("planner_finished", **result.summary())
        self._publish_status(result)
        return result

    def _publish_status(self, result: RunResult) -> None:
        """Rewrite the public status; a failure is reported, never fatal (the pass itself is done and saved)."""
        try:
            status = pass_status(
                upstream=self.settings.mirror.upstream,
                last_serial=result.serial,
                projects=result.projects,
                pending=result.left_pending,
                now=self.clock(),
                synced_before=previous_sync(self.storage) if result.left_pending else None,
            )
            write_status(self.storage, status)
        except StorageError as error:
            self.reporter.event("status_failed", level="warning", error=str(error))

    def poll(self, deadline: Deadline, *, backfill: bool = False) -> dict[str, Any]:
        """Planner passes every `poll_interval` seconds for `planner_window` seconds (one pass when the interval is 0),
        so a change waits for the next pass rather than the next scheduled minute; the last pass's summary."""
        window = Deadline(min(self.settings.planner_window, deadline.remaining()))
        passes = 0
        while True:
            started = time.monotonic()
            summary = self.plan(deadline, backfill=backfill and passes == 0).summary()
            passes += 1
            next_pass = started + self.settings.poll_interval
            if self.settings.poll_interval <= 0 or next_pass - time.monotonic() >= window.remaining():
                return {**summary, "passes": passes}
            time.sleep(max(0.0, next_pass - time.monotonic()))

    def work(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Sync the projects of one SQS batch; returns the partial batch response (failed message ids)."""
        done: dict[str, ProjectResult] = {}  # a project twice in one batch is synced once
        lease_ttl = PROJECT_LEASE_TTL if context is None else context.get_remaining_time_in_millis() / 1000 + 5

        def sync_record(record: SQSRecord) -> str:
            job = ProjectJob.from_message(record.body)
            result = done.get(job.project)
            if result is None or result.outcome is Outcome.FAILED:
                redelivered = int(record.attributes.approximate_receive_count or 1) > 1
                result = done[job.project] = self.syncer.sync(job, check_existing=redelivered, lease_ttl=lease_ttl)
            if result.outcome is Outcome.FAILED:
                raise ProjectFailed(f"{job.project}: {'; '.join(result.errors)}")
            return result.outcome.value

        response = process_partial_response(
            event=event, record_handler=sync_record, processor=BatchProcessor(EventType.SQS), context=context
        )
        changed = [r.name for r in done.values() if r.outcome in (Outcome.UPDATED, Outcome.REMOVED)]
        if self.edge is not None and changed:
            self.edge.refresh(changed)
        return dict(response)

    def close(self) -> None:
        self.core.close()


# --------------------------------------------------------------------------------------------- Lambda entry
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))
_metrics_lock = threading.Lock()


def record_lag(seconds: float) -> None:
    """Add one MirrorLagSeconds value to this invocation's EMF metrics (flushed when the handler returns)."""
    with _metrics_lock:
        metrics.add_metric(name=LAG_METRIC, unit=MetricUnit.Seconds, value=round(seconds, 3))


def record_edge_lag(seconds: float) -> None:
    """Add one EdgeLagSeconds value (the probe saw the CDN serve a change) to this invocation's EMF metrics."""
    with _metrics_lock:
        metrics.add_metric(name=EDGE_LAG_METRIC, unit=MetricUnit.Seconds, value=round(seconds, 3))


@functools.cache
def runtime() -> Runtime:
    """The container's runtime, built from the environment on the first invocation; its events go to the powertools
    logger (and, during an invocation, the sync's logged warnings and retries: LogRoute)."""
    return Runtime(settings_from_env(), Reporter(logger=logger), lag_sink=record_lag, edge_lag_sink=record_edge_lag)


@metrics.log_metrics
def planner_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Scheduled planner; `{"backfill": true}` plans from the whole upstream listing (the first sync)."""
    current = runtime()
    settings = current.settings
    deadline = Deadline.for_lambda(context, margin=settings.time_margin, cap=settings.mirror.lease_ttl)
    with LogRoute(current.reporter):
        return current.poll(deadline, backfill=bool(isinstance(event, dict) and event.get("backfill")))


@metrics.log_metrics
def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS worker: `{"batchItemFailures": [{"itemIdentifier": <message id>}, ...]}` names what to retry."""
    current = runtime()
    with LogRoute(current.reporter):
        return current.work(event, context)


# --------------------------------------------------------------------------------------------- local driver
def run_local(
    config: MirrorConfig,
    reporter: Reporter,
    *,
    inline_threshold: int = 0,
    workers: int = 4,
    seconds: float = 24 * 3600.0,
    backfill: bool = False,
) -> RunResult:
    """The planner and worker code without Lambda: `workers` threads stand in for the queue's workers."""
    current = Runtime(HandlerSettings(mirror=config, inline_threshold=inline_threshold), reporter, lag_sink=None)
    try:
        return current.plan(Deadline(seconds), backfill=backfill, fan_out=current.threads(workers))
    finally:
        current.close()
