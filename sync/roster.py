"""Syncs that run alongside others (queue workers, the planner's inline batch) and the roster they leave the planner.

One project is never synced twice at once: a short per-project lease (the destination lease mechanism, under
`.pypi-cdn/leases/`) serialises deliveries, and every sync reads the published page first so an older page never
replaces a newer one. Such syncs cannot write the planner's state, so one that publishes a new project, removes one,
publishes a PEP 792 quarantine or its end, or finds the project gone upstream leaves a marker under
`.pypi-cdn/roster/`; the run loop folds the markers into its state and the root pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.layout import BINARY, PRIVATE_CACHE_CONTROL, ROSTER_PREFIX, project_lease_key, roster_key
from sync.lease import Lease, LeaseHeld, acquire
from sync.project_status import is_quarantined
from sync.project_sync import ProjectSync, read_published
from sync.retry import attempts
from sync.state import MirrorState, ProjectState
from sync.storage import Storage, StorageError

PROJECT_LEASE_TTL = 900.0  # the longest a Lambda invocation can run, so a live sync never loses its lease
PROJECT_LEASE_WAIT = 10.0  # seconds a duplicate delivery waits for the other sync before it is retried later
LEASE_ATTEMPTS = 100  # bounds the wait in count as PROJECT_LEASE_WAIT bounds it in time
DELETE_THREADS = 8  # concurrent marker deletions while folding


class LeasedProjectSync:
    """Sync one project under its project lease, leaving roster markers: safe against the same project being synced
    elsewhere at the same moment."""

    def __init__(
        self,
        core: ProjectSync,
        *,
        owner: str,
        lag_sink: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        lease_wait: float = PROJECT_LEASE_WAIT,
    ):
        self.core = core
        self.storage = core.storage
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
            lease = self.project_lease(job.project, lease_ttl)
        except (LeaseHeld, StorageError) as error:
            return ProjectResult(job.project, Outcome.FAILED, errors=[f"project lease: {error}"])
        with lease:
            try:
                published = read_published(self.storage, job.project)
            except StorageError as error:
                return ProjectResult(job.project, Outcome.FAILED, errors=[str(error)])
            result = self.core.sync(job, check_existing=check_existing, published=published)
            was_quarantined = published.page is not None and is_quarantined(published.page)
            try:
                mark(self.storage, result, held=published.held, was_quarantined=was_quarantined)
            except StorageError as error:
                result.outcome = Outcome.FAILED
                result.errors.append(str(error))
        if result.outcome in (Outcome.UPDATED, Outcome.REMOVED) and job.changed_at is not None and self.lag_sink:
            self.lag_sink(max(0.0, self.clock() - job.changed_at))
        return result

    def project_lease(self, project: str, ttl: float = PROJECT_LEASE_TTL) -> Lease:
        """The project's lease, waiting up to `lease_wait` seconds for another sync of it to finish."""
        waits = self.lease_wait > 0
        for attempt in attempts(
            LeaseHeld,
            attempts=LEASE_ATTEMPTS if waits else 1,
            timeout=self.lease_wait if waits else None,
            wait_initial=0.05,
            wait_max=1.0,
        ):
            with attempt:
                return acquire(self.storage, owner=self.owner, ttl=ttl, key=project_lease_key(project))
        raise AssertionError("unreachable: the last attempt's LeaseHeld escapes")


def mark(storage: Storage, result: ProjectResult, *, held: bool, was_quarantined: bool) -> None:
    """Tell the planner when its root listing changes: a new project, a removed one, a PEP 792 quarantine entered or
    lifted; and when upstream said the project is gone (the planner has it synced again to confirm)."""
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
            storage.delete(roster_key(result.name, drop))
        storage.put_bytes(roster_key(result.name, write), b"", content_type=BINARY, cache_control=PRIVATE_CACHE_CONTROL)


def markers(storage: Storage) -> list[str]:
    return [info.key for info in storage.list(ROSTER_PREFIX)]


def fold(state: MirrorState, keys: list[str]) -> tuple[bool, bool]:
    """Apply markers (projects published, removed, quarantined or released, found missing) to `state`: whether the
    state changed, whether the root listing did."""
    changed = listing_changed = False
    for key in keys:
        name, _, change = key.removeprefix(ROSTER_PREFIX).rpartition(".")
        held = name in state.projects
        if change == "added" and not held:
            state.projects[name] = ProjectState(None, None)
            listing_changed = True
        elif change == "removed" and held:
            del state.projects[name]
            state.quarantined.discard(name)
            listing_changed = True
        elif change in ("quarantined", "released") and (name in state.quarantined) != (change == "quarantined"):
            (state.quarantined.add if change == "quarantined" else state.quarantined.discard)(name)
            listing_changed = True
        elif change == "missing" and held and name not in state.missing:
            state.missing.add(name)
            changed = True
    return changed or listing_changed, listing_changed


def delete(storage: Storage, keys: list[str]) -> None:
    with ThreadPoolExecutor(DELETE_THREADS, thread_name_prefix="roster") as pool:
        list(pool.map(storage.delete, keys))
