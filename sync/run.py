"""The run loop, one for the CLI and the Lambdas: plan, take the destination's lease, hand the jobs to a dispatcher,
fold what comes back (results, roster markers), publish the root pages, advance the serial, save the state.

The CLI runs it with an in-process dispatcher; the Lambda planner with the same one for a small plan and the SQS
dispatcher for a large one. Planning reads only, so a run with nothing to do writes nothing — not even the lease.
Results are folded as they come and only failures are kept, so a run over all of PyPI holds no list of them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from sync import render, roster
from sync.config import MirrorConfig
from sync.dispatch import Deadline, Dispatcher, InProcessDispatcher
from sync.edge_probe import EdgeProbe, Probe
from sync.invalidation import EdgeRefresher
from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.layout import PAGE_CACHE_CONTROL, ROOT_HTML_KEY, ROOT_JSON_KEY, STATE_KEY, content_type_for
from sync.lease import Lease, LeaseHeld, LeaseLost, acquire
from sync.plan import Plan, backfill_view, plan_run
from sync.progress import Reporter
from sync.project_sync import ProjectSync
from sync.state import MirrorState, ProjectState, load_state, save_state
from sync.storage import Storage, StorageError, put_chunks
from sync.upstream import UpstreamClient


@dataclass
class RunResult:
    planned: int = 0
    synced_inline: int = 0  # results of jobs synced here, when the plan was small enough (or there is no queue)
    handed_off: int = 0  # jobs given to the fan-out dispatcher and taken
    left_pending: int = 0
    failed: list[ProjectResult] = field(default_factory=list)
    roster_changes: int = 0
    root_written: bool = False
    serial: int | None = None
    projects: int = 0  # projects the mirror holds after the run
    invalidated_paths: int = 0
    busy: bool = False  # another run held the destination's lease: nothing was done

    def summary(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "failed": len(self.failed)}


class PlannerBusy(LeaseHeld):
    """Another run holds the destination's lease; `result` says what this run had planned."""

    def __init__(self, message: str, result: RunResult):
        super().__init__(message)
        self.result = result


class SyncRun:
    """Runs of one destination: `inline` syncs a plan of up to `inline_threshold` projects (any plan without
    `fan_out`); `roster` folds the markers other syncs left; `edge` refreshes the CDN, `probe` samples its lag."""

    def __init__(
        self,
        core: ProjectSync,
        *,
        inline: Dispatcher,
        fan_out: Dispatcher | None = None,
        inline_threshold: int = 0,
        roster: bool = False,
        edge: EdgeRefresher | None = None,
        probe: EdgeProbe | None = None,
    ):
        self.core = core
        self.config: MirrorConfig = core.config
        self.storage: Storage = core.storage
        self.reporter: Reporter = core.reporter
        self.inline = inline
        self.fan_out = fan_out
        self.inline_threshold = inline_threshold
        self.roster = roster
        self.edge = edge
        self.probe = probe
        self._state: MirrorState | None = None  # the state of the run in progress, if any
        self._dirty = False  # the state differs from the stored one
        self._lock = threading.Lock()  # the run's state: folding results, saving it mid-run (_mark_incomplete)
        core.on_first_store = self._mark_incomplete

    @classmethod
    def local(cls, config: MirrorConfig, upstream: UpstreamClient, storage: Storage, reporter: Reporter) -> SyncRun:
        """The CLI's run: every project synced here, `config.workers` at a time."""
        core = ProjectSync(config, upstream, storage, reporter)
        return cls(core, inline=InProcessDispatcher(core, config.workers, reporter, core.stop))

    def close(self) -> None:
        self.core.close()

    def run(
        self,
        owner: str,
        *,
        deadline: Deadline | None = None,
        backfill: bool = False,
        on_result: Callable[[ProjectResult], None] | None = None,
    ) -> RunResult:
        """One complete run; `backfill` plans from the whole listing instead of the feed; each result goes to
        `on_result` as it comes. PlannerBusy (a LeaseHeld) when another run holds the lease."""
        self.core.stop.clear()
        state = load_state(self.storage)
        plan = self._plan(state, backfill)
        markers = roster.markers(self.storage) if self.roster else []
        if state is not None and not plan.projects and not markers and not state.incomplete:
            self.reporter.event("up_to_date", serial=state.serial)
            return RunResult(serial=state.serial, projects=len(state.projects))
        try:
            lease = acquire(self.storage, owner=owner, ttl=self.config.lease_ttl)
        except LeaseHeld as error:  # an overlapping run is mid-pass: it does this work
            busy = RunResult(planned=len(plan.projects), serial=state.serial if state else None, busy=True)
            raise PlannerBusy(str(error), busy) from None
        with lease:
            finished = threading.Event()
            renewer = threading.Thread(target=self._keep_lease, args=(lease, finished), daemon=True)
            renewer.start()
            try:
                current = self.storage.head(STATE_KEY)
                if (current.etag if current else None) != (state.etag if state else None):  # another run finished
                    state = load_state(self.storage)
                    plan = self._plan(state, backfill)
                return self._run_locked(state, plan, deadline or Deadline(), on_result or (lambda result: None))
            finally:
                finished.set()
                renewer.join(timeout=5)
                self.core.stop.clear()  # the core's other syncs (a worker's, in a Lambda container) go on

    def _plan(self, state: MirrorState | None, backfill: bool) -> Plan:
        seen = backfill_view(state) if backfill and state is not None else state
        return plan_run(self.config, self.core.upstream, seen or MirrorState(), self.reporter)

    def _keep_lease(self, lease: Lease, finished: threading.Event) -> None:
        while not finished.wait(self.config.lease_ttl / 3):
            try:
                lease.renew()
            except (LeaseLost, StorageError) as error:
                self.reporter.event("lease_lost", level="error", error=str(error))
                self.core.stop.set()  # no file is stored, no project started, from here on
                return

    def _run_locked(
        self, stored: MirrorState | None, plan: Plan, deadline: Deadline, on_result: Callable[[ProjectResult], None]
    ) -> RunResult:
        state = stored or MirrorState()
        fan_out = self.fan_out if self.fan_out is not None and len(plan.projects) > self.inline_threshold else None
        if self.probe is not None:  # read before the sync: the edge then holds the page from before the change
            self.probe.track(
                Probe(name, serial, changed_at)
                for name, changed_at in plan.changed_at.items()
                if (serial := plan.projects.get(name)) is not None
            )
        self.reporter.start(len(plan.projects))
        outcome = RunResult(planned=len(plan.projects))
        changed: list[str] | None = [] if self.edge is not None else None  # the pages the edge refreshes
        self._state, self._dirty = state, False
        try:
            dispatch = fan_out or self.inline
            left, names_changed = self._dispatch(
                dispatch, state, plan, deadline, outcome=outcome, changed=changed, on_result=on_result
            )
        finally:
            self._state = None
        if fan_out is not None:  # a handed-off job carries its confirmation: the worker's result decides
            outcome.synced_inline, outcome.handed_off = 0, len(plan.projects) - len(left)
            missing = {name for name in state.missing if name not in plan.projects or name in left}
            self._dirty |= missing != state.missing
            state.missing = missing
        pending = {**left, **{r.name: plan.projects.get(r.name) for r in outcome.failed}}
        self._dirty |= pending != state.pending
        state.pending = pending
        markers = roster.markers(self.storage) if self.roster else []
        roster_changed, roster_names_changed = roster.fold(state, markers)
        self._dirty |= roster_changed
        outcome.root_written = stored is None or names_changed or roster_names_changed
        self._finish(state, plan, markers, outcome)
        if self.edge is not None and (changed or outcome.root_written):
            outcome.invalidated_paths = len(self.edge.refresh(changed or [], root=outcome.root_written).paths)
        self.reporter.close()
        self.reporter.event("run_finished", **self.reporter.summary())
        return outcome

    def _dispatch(
        self,
        dispatch: Dispatcher,
        state: MirrorState,
        plan: Plan,
        deadline: Deadline,
        *,
        outcome: RunResult,
        changed: list[str] | None,
        on_result: Callable[[ProjectResult], None],
    ) -> tuple[dict[str, int | None], bool]:
        """Hand the plan's jobs to `dispatch` and fold each result as it comes (failures kept in `outcome`, changed
        pages in `changed`); the jobs left over (name → serial), whether the root listing changed."""
        left: dict[str, int | None] = {}
        names_changed = False
        for item in dispatch(self._jobs(state, plan), deadline, check_existing=state.incomplete):
            if isinstance(item, ProjectJob):
                left[item.project] = item.serial
                continue
            outcome.synced_inline += 1
            with self._lock:
                names_changed |= self._fold(state, item)
            if item.outcome is Outcome.FAILED:
                outcome.failed.append(item)
            elif changed is not None and item.outcome in (Outcome.UPDATED, Outcome.REMOVED):
                changed.append(item.name)
            on_result(item)
        return left, names_changed

    def _finish(self, state: MirrorState, plan: Plan, markers: list[str], outcome: RunResult) -> None:
        """Publish the root (when `outcome` says so), advance the serial, save the state if it changed, then delete
        the folded roster markers."""
        if outcome.root_written:
            publish_root(self.storage, state.projects, state.quarantined, self.reporter)
        if plan.serial is not None and plan.serial != state.serial:
            state.serial, self._dirty = plan.serial, True
        if state.incomplete:
            state.incomplete, self._dirty = False, True
        if self._dirty:
            save_state(self.storage, state)
        if markers:
            roster.delete(self.storage, markers)  # only now that the saved state holds their news
        outcome.left_pending, outcome.roster_changes = len(state.pending), len(markers)
        outcome.serial, outcome.projects = state.serial, len(state.projects)

    def _jobs(self, state: MirrorState, plan: Plan) -> Iterator[ProjectJob]:
        resumed, retried = state.incomplete, dict(state.pending)
        for name, serial in plan.projects.items():
            known = state.projects.get(name)
            yield ProjectJob(
                name,
                serial,
                plan.changed_at.get(name),
                plan.removal_confirmed(name, state),
                known=known,
                fresh=known is None and not resumed,  # a first sync of it: no published page to read
                retry=name in retried,  # a failed sync may have stored some of its files
            )

    def _fold(self, state: MirrorState, result: ProjectResult) -> bool:
        """Record `result` in `state`; whether the root listing changed."""
        name = result.name
        before = (state.projects.get(name), name in state.missing, name in state.quarantined)
        listing_changed = record_result(state, result)
        self._dirty |= before != (state.projects.get(name), name in state.missing, name in state.quarantined)
        return listing_changed

    def _mark_incomplete(self) -> None:
        """Before a run stores its first file, record that files may exist that no page names yet."""
        with self._lock:
            state = self._state
            if state is not None and not state.incomplete:
                save_state(self.storage, dataclasses.replace(state, incomplete=True))
                state.incomplete = True  # only once saved: a failed save must fail every file, not just the first
                self._dirty = True


def record_result(state: MirrorState, result: ProjectResult) -> bool:
    """Note a project's result in `state`; returns whether the root listing changed: a project added or removed,
    quarantined or released."""
    listed = result.name in state.projects and result.name not in state.quarantined
    if result.outcome is Outcome.REMOVAL_UNCONFIRMED:
        state.missing.add(result.name)
        return False
    if result.outcome is not Outcome.FAILED:
        state.missing.discard(result.name)
    if result.outcome is Outcome.REMOVED:
        state.projects.pop(result.name, None)
        state.quarantined.discard(result.name)
    elif result.outcome in (Outcome.UPDATED, Outcome.UNCHANGED):
        state.projects[result.name] = ProjectState(result.serial, result.etag)
        if result.outcome is Outcome.UPDATED:
            (state.quarantined.add if result.quarantined else state.quarantined.discard)(result.name)
    return listed != (result.name in state.projects and result.name not in state.quarantined)


def publish_root(
    storage: Storage, names: Collection[str], withheld: Collection[str] = (), reporter: Reporter | None = None
) -> None:
    """Write the root pages listing `names` (normalized, in name order) but `withheld` (quarantined ones, which
    PyPI leaves out too), streamed to storage."""
    for key, page in (
        (ROOT_JSON_KEY, render.root_json(((n, None) for n in names if n not in withheld), None)),
        (ROOT_HTML_KEY, render.root_html((n, None) for n in names if n not in withheld)),
    ):
        put_chunks(storage, key, page, content_type=content_type_for(key), cache_control=PAGE_CACHE_CONTROL)
    if reporter is not None:
        reporter.event("root_published", projects=len(names))
