"""PyPI-scale sync on Lambda: a scheduled planner fans projects out over SQS to queue workers; same engine as the CLI.

- `planner_handler` (every minute): reads the change feed since the stored serial, syncs a small batch itself and
  enqueues a large one, checkpoints what it could not hand off before its time budget, and publishes the root pages
  when the set of projects changed. The event `{"backfill": true}` plans from the whole upstream listing instead.
- `worker_handler` (SQS, ReportBatchItemFailures): syncs each project of a batch; only failed ones are retried.

One project is never synced twice at once: a short per-project lease (the destination lease mechanism, under
`.pypi-cdn/leases/`) serialises deliveries, and every sync reads the published page's serial first so an older page
never replaces a newer one. Workers cannot write the planner's state, so a worker that publishes a new project,
removes one, or publishes a PEP 792 quarantine or its end leaves a marker under `.pypi-cdn/roster/`; the planner folds
markers into its state and the root pages.
`run_local` drives the same planner and worker code with threads instead of Lambdas.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sync.config import MirrorConfig
from sync.edge_probe import EdgeProbe, Probe
from sync.invalidation import EdgeRefresher
from sync.lambda_settings import EDGE_LAG_METRIC, LAG_METRIC, HandlerSettings, settings_from_env
from sync.layout import (
    BINARY,
    PRIVATE_CACHE_CONTROL,
    ROSTER_PREFIX,
    STATE_KEY,
    page_keys,
    project_lease_key,
    roster_key,
)
from sync.lease import Lease, LeaseHeld, acquire
from sync.mirror import Mirror, Outcome, Plan, ProjectResult, record_result
from sync.models import InvalidInput, normalize_project_name
from sync.progress import Reporter
from sync.project_status import is_quarantined
from sync.render import parse_published_json
from sync.state import MirrorState, ProjectState, load_state, save_state
from sync.status import pass_status, previous_sync, write_status
from sync.storage import StorageError, open_storage
from sync.upstream import UpstreamClient

PROJECT_LEASE_TTL = 900.0  # the longest a Lambda invocation can run, so a live sync never loses its lease
PROJECT_LEASE_WAIT = 10.0  # seconds a duplicate delivery waits for the other sync before it is retried later
SQS_BATCH = 10  # SendMessageBatch's maximum
SEND_THREADS = 8  # concurrent SendMessageBatch calls while fanning out
ROSTER_THREADS = 8  # concurrent marker deletions while folding


class JobError(ValueError):
    """A queue message is not a project job; the message names it."""


@dataclass(frozen=True)
class ProjectJob:
    """One project to sync: the queue message body."""

    project: str  # normalized name
    serial: int | None = None  # lowest upstream serial its page may have
    changed_at: float | None = None  # Unix time of the upstream change, for the lag metric
    confirm_removal: bool = False  # the last sync found the project gone: finding it gone again removes it

    def to_message(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_message(cls, body: str) -> ProjectJob:
        try:
            raw = json.loads(body)
            project = normalize_project_name(raw["project"])
            serial, changed_at = raw.get("serial"), raw.get("changed_at")
            if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool)):
                raise TypeError(f"serial {serial!r} is not an integer")
            if changed_at is not None and not isinstance(changed_at, int | float):
                raise TypeError(f"changed_at {changed_at!r} is not a number")
            confirm_removal = raw.get("confirm_removal", False)
            if not isinstance(confirm_removal, bool):
                raise TypeError(f"confirm_removal {confirm_removal!r} is not a boolean")
        except (ValueError, KeyError, TypeError, InvalidInput) as error:
            raise JobError(f"queue message {body[:200]!r} is not a project job: {error}") from None
        return cls(project, serial, changed_at, confirm_removal)


class Deadline:
    """A point in time the caller must finish by (monotonic clock)."""

    def __init__(self, seconds: float):
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


# ---------------------------------------------------------------------------------------------------- logging
_RESERVED_LOG_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class LoggerReporter(Reporter):
    """The engine's events as powertools structured log lines (one JSON object each, in CloudWatch)."""

    def __init__(self, logger: Logger):
        super().__init__(io.StringIO(), json_lines=True)  # counters only: every event goes to `logger`
        self.logger = logger

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        log = {"warning": self.logger.warning, "error": self.logger.error}.get(level, self.logger.info)
        extra = {(f"field_{k}" if k in _RESERVED_LOG_FIELDS else k): v for k, v in fields.items()}
        log(event, extra=extra, stacklevel=3)  # the location logged is the engine's, not this method's


# ----------------------------------------------------------------------------------------------- the worker
class ProjectSyncer:
    """Sync one project, safe against the same project being synced elsewhere at the same moment."""

    def __init__(
        self,
        mirror: Mirror,
        *,
        owner: str,
        lag_sink: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        lease_wait: float = PROJECT_LEASE_WAIT,
    ):
        self.mirror = mirror
        self.storage = mirror.storage
        self.owner = owner
        self.lag_sink = lag_sink
        self.clock = clock
        self.lease_wait = lease_wait

    def sync(
        self, job: ProjectJob, *, check_existing: bool = False, lease_ttl: float = PROJECT_LEASE_TTL
    ) -> ProjectResult:
        """Sync `job.project` under its project lease; a busy lease or a storage error is a FAILED result.

        `lease_ttl` should outlast this sync and no more: a lease left by a killed invocation then frees itself soon.
        """
        try:
            lease = self._project_lease(job.project, lease_ttl)
        except (LeaseHeld, StorageError) as error:
            return ProjectResult(job.project, Outcome.FAILED, errors=[f"project lease: {error}"])
        with lease:
            try:
                held, published_serial, was_quarantined = self._published_serial(job.project)
            except StorageError as error:
                return ProjectResult(job.project, Outcome.FAILED, errors=[str(error)])
            result = self.mirror.sync_project(
                job.project,
                min_serial=job.serial,
                previous=ProjectState(published_serial, None) if held else None,
                check_published=held,
                check_existing=check_existing,
                removal_confirmed=job.confirm_removal,
            )
            try:
                self._mark_roster(result, held=held, was_quarantined=was_quarantined)
            except StorageError as error:
                result.outcome = Outcome.FAILED
                result.errors.append(str(error))
        if result.outcome in (Outcome.UPDATED, Outcome.REMOVED) and job.changed_at is not None and self.lag_sink:
            self.lag_sink(max(0.0, self.clock() - job.changed_at))
        return result

    def _project_lease(self, project: str, ttl: float = PROJECT_LEASE_TTL) -> Lease:
        """The project's lease, waiting up to `lease_wait` seconds for another sync of it to finish."""
        key = project_lease_key(project)
        give_up = time.monotonic() + self.lease_wait
        pause = 0.05
        while True:
            try:
                return acquire(self.storage, owner=self.owner, ttl=ttl, key=key)
            except LeaseHeld:
                if time.monotonic() + pause > give_up:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _published_serial(self, project: str) -> tuple[bool, int | None, bool]:
        """(whether a page is published, its `_last-serial`: the floor below which no upstream page is taken,
        whether it is a PEP 792 quarantine)."""
        found = self.storage.get_bytes(page_keys(project)[0])
        if found is None:
            return False, None, False
        try:
            page = parse_published_json(found[0])
        except ValueError:
            return True, None, False  # unreadable: sync_project replaces it
        return True, page.last_serial, is_quarantined(page)

    def _mark_roster(self, result: ProjectResult, *, held: bool, was_quarantined: bool) -> None:
        """Tell the planner when its root listing changes: a new project, a removed one, a PEP 792 quarantine
        entered or lifted; and when upstream said the project is gone (the planner has it synced again to confirm)."""
        changes: list[tuple[str, str | None]] = []
        if result.outcome is Outcome.UPDATED and not held:
            changes.append(("added", "removed"))
        elif result.outcome is Outcome.REMOVED and held:
            changes.append(("removed", "added"))
        elif result.outcome is Outcome.REMOVAL_UNCONFIRMED:
            changes.append(("missing", None))
        if result.outcome is Outcome.UPDATED and result.quarantined != was_quarantined:
            changes.append(("quarantined", "released") if result.quarantined else ("released", "quarantined"))
        for write, drop in changes:
            if drop is not None:
                self.storage.delete(roster_key(result.name, drop))
            self.storage.put_bytes(
                roster_key(result.name, write),
                b"",
                content_type=BINARY,
                cache_control=PRIVATE_CACHE_CONTROL,
            )


# ------------------------------------------------------------------------------------------------ dispatch
@dataclass
class Dispatched:
    left: list[ProjectJob]  # not handed off (deadline reached or refused): the planner keeps them pending
    results: list[ProjectResult] = field(default_factory=list)  # outcomes, when the dispatcher ran the jobs itself


class Dispatcher(Protocol):
    def __call__(self, jobs: Sequence[ProjectJob], deadline: Deadline, *, check_existing: bool) -> Dispatched:
        """Hand `jobs` off before `deadline`; `check_existing`: a crashed run may have stored files already."""
        ...


class ThreadDispatcher:
    """Run jobs here, in threads: the planner's inline sync, and the local CLI's stand-in for the queue."""

    def __init__(self, syncer: ProjectSyncer, threads: int):
        self.syncer = syncer
        self.threads = threads

    def __call__(self, jobs: Sequence[ProjectJob], deadline: Deadline, *, check_existing: bool = False) -> Dispatched:
        def run(job: ProjectJob) -> ProjectResult | None:
            if deadline.passed:
                return None
            result = self.syncer.sync(job, check_existing=check_existing)
            self.syncer.mirror.reporter.project_finished(failed=result.outcome is Outcome.FAILED)
            return result

        with ThreadPoolExecutor(self.threads, thread_name_prefix="project") as pool:
            outcomes = list(pool.map(run, jobs))
        left = [job for job, result in zip(jobs, outcomes, strict=True) if result is None]
        return Dispatched(left, [r for r in outcomes if r is not None])


class SqsDispatcher:
    """Enqueue jobs on SQS, ten a request, several requests at once, until the deadline."""

    def __init__(self, sqs: Any, queue_url: str, reporter: Reporter):
        self.sqs = sqs
        self.queue_url = queue_url
        self.reporter = reporter

    def __call__(self, jobs: Sequence[ProjectJob], deadline: Deadline, *, check_existing: bool = False) -> Dispatched:
        """Enqueue; workers check for existing files themselves on a redelivery, so `check_existing` is not sent."""
        batches = [list(jobs[i : i + SQS_BATCH]) for i in range(0, len(jobs), SQS_BATCH)]
        with ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="enqueue") as pool:
            refused = pool.map(lambda batch: self._send(batch, deadline), batches)
            return Dispatched([job for batch_refused in refused for job in batch_refused])

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


# ------------------------------------------------------------------------------------------------ planning
@dataclass
class PlannerResult:
    planned: int = 0
    synced_inline: int = 0
    handed_off: int = 0
    left_pending: int = 0
    failed: int = 0
    roster_changes: int = 0
    root_written: bool = False
    serial: int | None = None
    projects: int = 0  # projects the mirror holds after the pass
    invalidated_paths: int = 0
    busy: bool = False  # another planner held the destination's lease: nothing was done
    results: list[ProjectResult] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "results"}


class Planner:
    """One planner run: plan, hand the work off (inline or fan-out), fold roster markers, checkpoint, publish the
    mirror's status."""

    def __init__(
        self,
        mirror: Mirror,
        *,
        inline_threshold: int,
        inline: Dispatcher,
        fan_out: Dispatcher | None,
        edge: EdgeRefresher | None,
        change_times: Callable[[], dict[int, float]] = dict,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        probe: EdgeProbe | None = None,
    ):
        self.mirror = mirror
        self.storage = mirror.storage
        self.reporter = mirror.reporter
        self.inline_threshold = inline_threshold
        self.inline = inline
        self.fan_out = fan_out
        self.edge = edge
        self.change_times = change_times
        self.clock = clock
        self.probe = probe

    def run(self, deadline: Deadline, *, owner: str, backfill: bool = False) -> PlannerResult:
        """One pass, then the status; a pass with nothing to do reads the change feed once and writes the status only.

        A pass that raises writes no status, so the status's `last_check` ages; one that found another planner
        holding the lease leaves the status to that planner.
        """
        result = self._pass(deadline, owner=owner, backfill=backfill)
        if not result.busy:
            self._publish_status(result)
        return result

    def _pass(self, deadline: Deadline, *, owner: str, backfill: bool) -> PlannerResult:
        found = self.storage.get_bytes(STATE_KEY)
        state = MirrorState.from_json(found[0]) if found else None
        plan = self._plan(state, backfill)
        markers = self._roster_markers()
        if state is not None and not plan.projects and not markers and not state.incomplete:
            self.reporter.event("up_to_date", serial=state.serial)
            return PlannerResult(serial=state.serial, projects=len(state.projects))
        try:
            lease = acquire(self.storage, owner=owner, ttl=self.mirror.config.lease_ttl)
        except LeaseHeld as error:  # an overlapping invocation is mid-pass: it does this work
            self.reporter.event("planner_busy", error=str(error))
            return PlannerResult(planned=len(plan.projects), serial=state.serial if state else None, busy=True)
        with lease:
            current = self.storage.head(STATE_KEY)
            if (current.etag if current else None) != (found[1] if found else None):  # another planner finished
                state = load_state(self.storage)
                plan = self._plan(state, backfill)
            return self._run_locked(state, plan, deadline)

    def _plan(self, state: MirrorState | None, backfill: bool) -> Plan:
        if backfill and state is not None:  # the listing instead of the feed: everything upstream not yet held
            state = MirrorState(projects=state.projects, pending=state.pending, quarantined=state.quarantined)
        return self.mirror.plan(state or MirrorState())

    def _run_locked(self, stored: MirrorState | None, plan: Plan, deadline: Deadline) -> PlannerResult:
        state = stored or MirrorState()
        times = self.change_times()
        jobs = [
            ProjectJob(name, serial, times.get(serial or -1), plan.removal_confirmed(name, state))
            for name, serial in plan.projects.items()
        ]
        fan_out = self.fan_out if len(jobs) > self.inline_threshold else None
        inline = fan_out is None
        dispatch = fan_out or self.inline
        if self.probe is not None:  # read before the sync: the edge then holds the page from before the change
            self.probe.track(
                Probe(job.project, job.serial, job.changed_at)
                for job in jobs
                if job.serial is not None and job.changed_at is not None
            )
        self.reporter.start(len(jobs))
        dispatched = dispatch(jobs, deadline, check_existing=state.incomplete)
        names_changed = False
        for result in dispatched.results:
            names_changed |= record_result(state, result)
        failed = {r.name for r in dispatched.results if r.outcome is Outcome.FAILED}
        if not inline:  # a handed-off job carries its confirmation: the worker's result decides
            state.missing -= {job.project for job in jobs} - {job.project for job in dispatched.left}
        state.pending = {job.project: job.serial for job in dispatched.left}
        state.pending.update({name: plan.projects.get(name) for name in failed})
        folded, roster_changed_names = self._fold_roster(state)
        root_written = stored is None or names_changed or roster_changed_names
        if root_written:
            self.mirror.publish_root(state.projects, state.quarantined)
        if plan.serial is not None:
            state.serial = plan.serial
        state.incomplete = False
        save_state(self.storage, state)
        self._delete(folded)  # only now that the saved state holds their news
        outcome = PlannerResult(
            planned=len(jobs),
            synced_inline=len(dispatched.results) if inline else 0,
            handed_off=0 if inline else len(jobs) - len(dispatched.left),
            left_pending=len(state.pending),
            failed=len(failed),
            roster_changes=len(folded),
            root_written=root_written,
            serial=state.serial,
            projects=len(state.projects),
            results=dispatched.results,
        )
        changed = [r.name for r in dispatched.results if r.outcome in (Outcome.UPDATED, Outcome.REMOVED)]
        if self.edge is not None and (changed or root_written):
            outcome.invalidated_paths = len(self.edge.refresh(changed, root=root_written).paths)
        self.reporter.event("planner_finished", **outcome.summary())
        return outcome

    def _publish_status(self, result: PlannerResult) -> None:
        """Rewrite the public status; a failure is reported, never fatal (the pass itself is done and saved)."""
        try:
            status = pass_status(
                upstream=self.mirror.config.upstream,
                last_serial=result.serial,
                projects=result.projects,
                pending=result.left_pending,
                now=self.clock(),
                synced_before=previous_sync(self.storage) if result.left_pending else None,
            )
            write_status(self.storage, status)
        except StorageError as error:
            self.reporter.event("status_failed", level="warning", error=str(error))

    # --------------------------------------------------------------------------------------------- roster
    def _roster_markers(self) -> list[str]:
        return [info.key for info in self.storage.list(ROSTER_PREFIX)]

    def _fold_roster(self, state: MirrorState) -> tuple[list[str], bool]:
        """Apply the workers' markers (projects published, removed, quarantined or released) to `state`: the markers,
        and whether the root listing changed."""
        markers = self._roster_markers()
        changed = False
        for key in markers:
            name, _, change = key.removeprefix(ROSTER_PREFIX).rpartition(".")
            held = name in state.projects
            if change == "added" and not held:
                state.projects[name] = ProjectState(None, None)
                changed = True
            elif change == "removed" and held:
                del state.projects[name]
                state.quarantined.discard(name)
                changed = True
            elif change in ("quarantined", "released") and (name in state.quarantined) != (change == "quarantined"):
                (state.quarantined.add if change == "quarantined" else state.quarantined.discard)(name)
                changed = True
            elif change == "missing" and held:
                state.missing.add(name)
        return markers, changed

    def _delete(self, keys: list[str]) -> None:
        with ThreadPoolExecutor(ROSTER_THREADS, thread_name_prefix="roster") as pool:
            list(pool.map(self.storage.delete, keys))


# --------------------------------------------------------------------------------------------- the runtime
class ChangeTimingClient(UpstreamClient):
    """An UpstreamClient that remembers when each change-feed serial happened upstream, for the lag metric."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.change_times: dict[int, float] = {}

    def changelog_since(self, serial: int) -> list[tuple[str, int]] | None:
        events = self.changelog_events_since(serial)
        if events is None:
            return None
        self.change_times = {change_serial: changed_at for _, change_serial, changed_at in events}
        return [(name, change_serial) for name, change_serial, _ in events]


class Runtime:
    """Everything one Lambda container (or one local run) reuses: storage, upstream client, engine, AWS clients."""

    def __init__(
        self,
        settings: HandlerSettings,
        reporter: Reporter,
        *,
        lag_sink: Callable[[float], None] | None,
        edge_lag_sink: Callable[[float], None] | None = None,
    ):
        config = settings.mirror
        self.settings = settings
        self.reporter = reporter
        self.storage = open_storage(config.dest, endpoint_url=config.endpoint_url)
        self.upstream = ChangeTimingClient(
            config.upstream,
            contact=config.contact,
            max_connections=config.workers,
            file_hosts=config.allowed_file_hosts,
        )
        self.mirror = Mirror(config, self.upstream, self.storage, reporter)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.syncer = ProjectSyncer(self.mirror, owner=self.owner, lag_sink=lag_sink)
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

    def planner(self, fan_out: Dispatcher | None) -> Planner:
        return Planner(
            self.mirror,
            inline_threshold=self.settings.inline_threshold,
            inline=ThreadDispatcher(self.syncer, self.settings.mirror.workers),
            fan_out=fan_out,
            edge=self.edge,
            change_times=lambda: self.upstream.change_times,
            probe=self.probe,
        )

    def plan(self, deadline: Deadline, *, backfill: bool = False) -> PlannerResult:
        """One planner run, fanning out over the queue when there is one; first, the edge probes' reads."""
        if self.probe is not None:
            self.probe.check()
        return self.planner(self.queue).run(deadline, owner=self.owner, backfill=backfill)

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
        self.mirror.close()


class ProjectFailed(Exception):
    """A project of an SQS batch could not be synced: its message is retried."""


# --------------------------------------------------------------------------------------------- Lambda entry
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "pypi-cdn-sync"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "pypi-cdn"))
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
    """The container's runtime, built from the environment on the first invocation."""
    return Runtime(settings_from_env(), LoggerReporter(logger), lag_sink=record_lag, edge_lag_sink=record_edge_lag)


@metrics.log_metrics
def planner_handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    """Scheduled planner; `{"backfill": true}` plans from the whole upstream listing (the first sync)."""
    current = runtime()
    settings = current.settings
    deadline = Deadline.for_lambda(context, margin=settings.time_margin, cap=settings.mirror.lease_ttl)
    return current.poll(deadline, backfill=bool(isinstance(event, dict) and event.get("backfill")))


@metrics.log_metrics
def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """SQS worker: `{"batchItemFailures": [{"itemIdentifier": <message id>}, ...]}` names what to retry."""
    return runtime().work(event, context)


# --------------------------------------------------------------------------------------------- local driver
def run_local(
    config: MirrorConfig,
    reporter: Reporter,
    *,
    inline_threshold: int = 0,
    workers: int = 4,
    seconds: float = 24 * 3600.0,
    backfill: bool = False,
) -> PlannerResult:
    """The planner and worker code without Lambda: `workers` threads stand in for the queue's workers."""
    settings = HandlerSettings(mirror=config, inline_threshold=inline_threshold)
    current = Runtime(settings, reporter, lag_sink=None)
    try:
        fan_out = ThreadDispatcher(current.syncer, workers)
        return current.planner(fan_out).run(Deadline(seconds), owner=current.owner, backfill=backfill)
    finally:
        current.close()
