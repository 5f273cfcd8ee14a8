"""The sync engine: plan → fetch → verify → publish, one project at a time, with the mirror correct after every step.

Invariant, crash or not: every link in every published page resolves to an object whose sha256 matches. Files are
stored (verified, never replacing a stored object: `sync.files`) before the page that names them is written, and
deleted only after the page stops naming them.

Upstream saying a project is gone (404), or that it has no file left, is believed only when confirmed: by the root
listing no longer naming it, or by the next sync agreeing (`MirrorState.missing`). Until then the old page stays.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from enum import StrEnum

from sync import render
from sync.config import MirrorConfig
from sync.files import FileStore, drop_unstorable
from sync.filters import filter_page, wants_project
from sync.layout import PAGE_CACHE_CONTROL, ROOT_HTML_KEY, ROOT_JSON_KEY, content_type_for, page_keys
from sync.lease import Lease, LeaseLost, acquire
from sync.listing import ProjectListing
from sync.models import InvalidInput, ProjectPage, normalize_project_name
from sync.progress import Reporter
from sync.project_status import is_quarantined, withhold_quarantined
from sync.provenance import ProvenanceMirror, with_published_hashes
from sync.state import MirrorState, ProjectState, load_state, save_state
from sync.storage import PreconditionFailed, Storage, StorageError, put_chunks
from sync.transport import UpstreamError
from sync.upstream import ProjectNotFound, UpstreamClient


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    REMOVED = "removed"
    REMOVAL_UNCONFIRMED = "removal_unconfirmed"  # upstream says gone (or no files): the old page stays, asked again
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(slots=True)
class ProjectResult:
    name: str
    outcome: Outcome
    serial: int | None = None
    etag: str | None = None
    files_stored: int = 0
    bytes_stored: int = 0
    files_deleted: int = 0
    pages_written: int = 0
    quarantined: bool = False  # the published page is a PEP 792 quarantine: no files, left out of the root listing
    errors: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    failed: list[ProjectResult]  # the projects that failed (every result goes to `run`'s `on_result`)
    root_written: bool
    summary: dict[str, object]


@dataclass(frozen=True)
class Plan:
    """Which projects to sync (normalized name → the lowest upstream serial their page may have)."""

    projects: Mapping[str, int | None]
    serial: int | None  # the change-feed serial the mirror reaches once every planned project is synced
    confirmed_removals: Collection[str] = frozenset()  # held projects upstream confirms gone (unlisted)

    def removal_confirmed(self, name: str, state: MirrorState) -> bool:
        """Whether upstream saying `name` is gone is to be believed now: the listing dropped it, or the last sync
        found it gone too."""
        return name in self.confirmed_removals or name in state.missing


class Mirror:
    """Mirror an upstream index into a storage destination."""

    def __init__(self, config: MirrorConfig, upstream: UpstreamClient, storage: Storage, reporter: Reporter):
        self.config = config
        self.upstream = upstream
        self.storage = storage
        self.reporter = reporter
        # Twice as many file threads as upstream connections (the client's pool caps requests in flight at
        # `workers`): a thread spends part of each file on storage (fsync, rename, S3's answer) after the download
        # has handed its connection back, and with only `workers` threads that connection would sit idle meanwhile.
        self._file_pool = ThreadPoolExecutor(config.workers * 2, thread_name_prefix="file")
        self._stop = threading.Event()
        self._run_state: MirrorState | None = None  # the state of the run in progress, if any
        self._state_lock = threading.Lock()  # the run's state: recording results, saving it mid-run
        self._provenance = ProvenanceMirror(upstream, storage, config.public_url, reporter.event)
        self.files = FileStore(
            upstream,
            storage,
            reporter,
            self._file_pool,
            attempts=config.file_attempts,
            stop=self._stop,
            before_first_store=self._mark_incomplete,
        )

    def close(self) -> None:
        self._file_pool.shutdown(wait=True, cancel_futures=True)

    # ----------------------------------------------------------------------------------------------- planning
    def plan(self, state: MirrorState) -> Plan:
        """Read the change feed (or the root listing, or the allowlist) and decide what to sync."""
        pending: dict[str, int | None] = dict(state.pending)
        if state.serial is not None:
            changes = self.upstream.changelog_since(state.serial)
            if changes is not None:
                work = pending
                serial = state.serial
                for name, change_serial in changes:
                    serial = max(serial, change_serial)
                    normalized = self._normalized_or_report(name)
                    if normalized and wants_project(self.config, normalized):
                        work[normalized] = max(work.get(normalized) or 0, change_serial)
                # Projects added to the allowlist since the last run are not in the feed: sync them too.
                work.update(
                    {
                        n: None
                        for n in self.config.projects
                        if n not in state.projects and n not in work and wants_project(self.config, n)
                    }
                )
                work.update({name: None for name in state.missing if name not in work})  # asked again, to confirm
                return Plan(work, serial)
        # A mirror that already holds projects but no serial was made from an upstream without a change feed.
        serial = None if state.projects and state.serial is None else self.upstream.last_serial()
        if self.config.projects:
            work = {name: None for name in self.config.projects if wants_project(self.config, name)}
            return Plan({**work, **pending}, serial)
        listing = self.upstream.list_projects()
        if not state.projects and not pending and not self.config.blocklist:
            return Plan(listing, serial)  # a first whole-index run: every listed project, without a second copy
        # Projects the mirror holds that upstream no longer lists: syncing them finds the 404 and removes them.
        unlisted = frozenset(name for name in state.projects if name not in listing)

        def planned() -> Iterator[tuple[str, int | None]]:
            for name, upstream_serial in listing.items():
                if wants_project(self.config, name) and _outdated(state.projects.get(name), upstream_serial):
                    yield name, upstream_serial
            yield from ((name, None) for name in unlisted)
            yield from pending.items()
            yield from ((name, None) for name in state.missing if name in listing)

        # A whole-index plan can name every project upstream: kept as compact as the listing it comes from.
        return Plan(ProjectListing(planned()), serial, unlisted)

    def _normalized_or_report(self, name: str) -> str | None:
        try:
            return normalize_project_name(name)
        except InvalidInput as error:
            self.reporter.event("invalid_project", level="warning", error=str(error))
            return None

    # ------------------------------------------------------------------------------------------- one project
    def sync_project(
        self,
        name: str,
        *,
        min_serial: int | None = None,
        previous: ProjectState | None = None,
        check_published: bool = True,
        check_existing: bool = False,
        removal_confirmed: bool = False,
    ) -> ProjectResult:
        """Bring one project's pages and files in line with upstream; on failure its old page stays in place.

        `previous` is what the mirror last published (serial and upstream ETag); `check_published` reads the
        published page to diff against (skip it only when the mirror is known not to hold the project);
        `check_existing` looks for each new file in storage before downloading it (after an interrupted run);
        `removal_confirmed`: upstream saying the project or all its files are gone is believed (else the old page
        stays and the outcome is REMOVAL_UNCONFIRMED).
        """
        normalized = self._normalized_or_report(name)
        if normalized is None:
            return ProjectResult(name, Outcome.FAILED, errors=[f"invalid project name {name!r}"])
        if not wants_project(self.config, normalized):
            return ProjectResult(normalized, Outcome.SKIPPED)
        known_serial, known_etag = (previous.serial, previous.etag) if previous else (None, None)
        floor = max((s for s in (min_serial, known_serial) if s is not None), default=None)
        try:
            page = self.upstream.get_project(normalized, etag=known_etag, min_serial=floor)
        except ProjectNotFound:
            return self._remove_project(normalized, removal_confirmed)
        except (UpstreamError, InvalidInput) as error:
            return self._failed(normalized, str(error))
        if page is None:  # 304 Not Modified: the page we hold is current
            return ProjectResult(normalized, Outcome.UNCHANGED, known_serial, known_etag)
        page = withhold_quarantined(filter_page(self.config, page))
        # A PEP 792 quarantine says itself that the files are gone on purpose: confirmation enough.
        return self._publish(page, check_published, check_existing, removal_confirmed or is_quarantined(page))

    def _publish(
        self, page: ProjectPage, check_published: bool, check_existing: bool, removal_confirmed: bool
    ) -> ProjectResult:
        result = ProjectResult(page.normalized, Outcome.UPDATED, page.last_serial, page.etag)
        result.quarantined = is_quarantined(page)
        json_key, html_key = page_keys(page.normalized)
        old_page: ProjectPage | None = None
        # The versions of the pages read here: the new pages are written only over those, so two workers syncing
        # the project at once cannot publish an older page after the newer one deleted what the older names.
        read_versions: dict[str, str | None] | None = None
        if check_published:
            try:
                found = self.storage.get_bytes(json_key)
                html_info = self.storage.head(html_key)
                read_versions = {json_key: found[1] if found else None, html_key: html_info.etag if html_info else None}
                old_page = render.parse_published_json(found[0]) if found else None
                page = _with_sizes(page, {f.key: f.size for f in old_page.files} if old_page else {})
                unchanged = with_published_hashes(page, old_page, self._provenance.public_url)
                if found is not None and found[0] == render.project_json(unchanged):
                    result.outcome = Outcome.UNCHANGED
                    return result
                if old_page and _older(page, old_page):
                    self.reporter.event(
                        "older_than_published",
                        level="warning",
                        project=page.normalized,
                        serial=page.last_serial,
                        published=old_page.last_serial,
                    )
                    result.outcome, result.serial = Outcome.UNCHANGED, old_page.last_serial
                    return result
            except (StorageError, ValueError) as error:
                # An unreadable published page is replaced; nothing it names is deleted on its word.
                self.reporter.event("published_page_unreadable", level="warning", key=json_key, error=str(error))
        if old_page is not None and old_page.files and not page.files and not removal_confirmed:
            return self._removal_unconfirmed(page.normalized, "upstream lists no file")
        return self._store_and_write(page, old_page, read_versions, check_existing, result)

    def _store_and_write(
        self,
        page: ProjectPage,
        old_page: ProjectPage | None,
        read_versions: dict[str, str | None] | None,
        check_existing: bool,
        result: ProjectResult,
    ) -> ProjectResult:
        """Store the page's new files, write its pages over the versions read, then delete what it stopped naming."""
        json_key, html_key = page_keys(page.normalized)
        stored = self.files.store(page, old_page, check_existing)
        result.files_stored, result.bytes_stored = stored.files_stored, stored.bytes_stored
        if stored.errors:
            result.errors += stored.errors
            return self._failed(page.normalized, "; ".join(stored.errors), result)
        page = _with_sizes(drop_unstorable(page, stored.unstorable), stored.sizes)
        if stored.unstorable and not page.files:
            return self._failed(page.normalized, "the destination can hold none of its files", result)
        try:
            page = self._provenance.store(page, old_page, self._file_pool)  # before the pages that point at them
            # The JSON page last: finding it current is how a resumed run knows both pages were written.
            for key, body in ((html_key, render.project_html(page)), (json_key, render.project_json(page))):
                version = read_versions.get(key) if read_versions is not None else None
                self.storage.put_bytes(
                    key,
                    body,
                    content_type=content_type_for(key),
                    cache_control=PAGE_CACHE_CONTROL,
                    if_match=version,
                    if_none_match=read_versions is not None and version is None,
                )
                result.pages_written += 1
            result.files_deleted = self.files.delete_unnamed(old_page, page)
        except PreconditionFailed as error:
            message = f"{error}: another run published the project meanwhile; retried next run"
            return self._failed(page.normalized, message, result)
        except (StorageError, UpstreamError) as error:  # UpstreamError: a provenance document not fetched
            return self._failed(page.normalized, str(error), result)
        self.reporter.event(
            "project_synced",
            project=page.normalized,
            serial=page.last_serial,
            files=result.files_stored,
            bytes=result.bytes_stored,
            deleted=result.files_deleted,
        )
        return result

    def _mark_incomplete(self) -> None:
        """Before a run stores its first file, record that files may exist that no page names yet."""
        with self._state_lock:
            state = self._run_state
            if state is not None and not state.incomplete:
                save_state(self.storage, dataclasses.replace(state, incomplete=True))
                state.incomplete = True  # only once saved: a failed save must fail every file, not just the first

    def _remove_project(self, normalized: str, removal_confirmed: bool) -> ProjectResult:
        """Upstream deleted the project: once confirmed, unpublish its pages first, then delete its files."""
        result = ProjectResult(normalized, Outcome.REMOVED)
        json_key, html_key = page_keys(normalized)
        try:
            found = self.storage.get_bytes(json_key)
            old_page = render.parse_published_json(found[0]) if found else None
            if found is not None and not removal_confirmed:
                return self._removal_unconfirmed(normalized, "upstream answers 404")
            for key in (json_key, html_key):
                self.storage.delete(key)
            result.files_deleted = self.files.delete_unnamed(old_page, None)
        except (StorageError, ValueError) as error:
            return self._failed(normalized, str(error), result)
        self.reporter.event("project_removed", project=normalized, deleted=result.files_deleted)
        return result

    def _removal_unconfirmed(self, normalized: str, reason: str) -> ProjectResult:
        """Upstream says the project (or all its files) is gone, unconfirmed: the old page stays; asked again."""
        self.reporter.event("removal_unconfirmed", level="warning", project=normalized, reason=reason)
        return ProjectResult(normalized, Outcome.REMOVAL_UNCONFIRMED)

    def _failed(self, normalized: str, error: str, result: ProjectResult | None = None) -> ProjectResult:
        result = result or ProjectResult(normalized, Outcome.FAILED)
        result.outcome = Outcome.FAILED
        if error not in result.errors:
            result.errors.append(error)
        self.reporter.event("project_failed", level="error", project=normalized, error=error)
        return result

    # ------------------------------------------------------------------------------------------ root pages
    def publish_root(self, names: Collection[str], withheld: Collection[str] = ()) -> None:
        """Write the root pages listing `names` (normalized, in name order) but `withheld` (quarantined ones, which
        PyPI leaves out too), streamed to storage."""
        for key, page in (
            (ROOT_JSON_KEY, render.root_json(((n, None) for n in names if n not in withheld), None)),
            (ROOT_HTML_KEY, render.root_html((n, None) for n in names if n not in withheld)),
        ):
            put_chunks(self.storage, key, page, content_type=content_type_for(key), cache_control=PAGE_CACHE_CONTROL)
        self.reporter.event("root_published", projects=len(names))

    # ------------------------------------------------------------------------------------------- whole run
    def run(self, owner: str, on_result: Callable[[ProjectResult], None] | None = None) -> RunResult:
        """One complete run: plan; if there is work, take the destination's lease, sync, publish the root.

        Planning reads only, so a run with nothing to do writes nothing — not even the lease. Each project's result
        goes to `on_result` as it comes; only failures are kept, so a run over all of PyPI holds no list of results.
        """
        self._stop.clear()
        state = load_state(self.storage)
        plan = self.plan(state or MirrorState())
        if state is not None and not plan.projects and not state.incomplete:
            self.reporter.event("up_to_date", serial=state.serial)
            return RunResult([], False, self.reporter.summary())
        with acquire(self.storage, owner=owner, ttl=self.config.lease_ttl) as lease:
            renewer = threading.Thread(target=self._keep_lease, args=(lease,), daemon=True)
            renewer.start()
            try:
                locked_state = load_state(self.storage)
                if _digest(locked_state) != _digest(state):  # another run finished in between
                    state, plan = locked_state, self.plan(locked_state or MirrorState())
                return self._run_locked(state, plan, on_result or (lambda result: None))
            finally:
                self._stop.set()
                renewer.join(timeout=5)

    def _keep_lease(self, lease: Lease) -> None:
        while not self._stop.wait(self.config.lease_ttl / 3):
            try:
                lease.renew()
            except (LeaseLost, StorageError) as error:
                self.reporter.event("lease_lost", level="error", error=str(error))
                self._stop.set()

    def _run_locked(
        self, stored: MirrorState | None, plan: Plan, on_result: Callable[[ProjectResult], None]
    ) -> RunResult:
        first_run = stored is None
        state = stored or MirrorState()
        resumed = state.incomplete
        self.reporter.start(len(plan.projects))
        initial = state.digest()
        names_changed, failed = False, []
        self._run_state = state
        try:
            for result in self._sync_all(plan, state, resumed):
                with self._state_lock:  # a file thread may be saving the state (_mark_incomplete)
                    names_changed |= record_result(state, result)
                if result.outcome is Outcome.FAILED:
                    failed.append(result)
                on_result(result)
        finally:
            self._run_state = None
        state.pending = {r.name: plan.projects.get(r.name) for r in failed}
        root_written = first_run or names_changed
        if root_written:
            self.publish_root(state.projects, state.quarantined)
        if plan.serial is not None:
            state.serial = plan.serial
        state.incomplete = False
        if state.digest() != initial:
            save_state(self.storage, state)
        self.reporter.close()
        summary = self.reporter.summary()
        self.reporter.event("run_finished", **summary)
        return RunResult(failed, root_written, summary)

    def _sync_all(self, plan: Plan, state: MirrorState, resumed: bool) -> Iterator[ProjectResult]:
        def one(name: str, min_serial: int | None) -> ProjectResult:
            if self._stop.is_set():
                return ProjectResult(name, Outcome.FAILED, errors=["run stopped: lease lost"])
            previous = state.projects.get(name)
            result = self.sync_project(
                name,
                min_serial=min_serial,
                previous=previous,
                check_published=previous is not None or resumed,
                check_existing=resumed or name in state.pending,  # a failed project may have stored some files
                removal_confirmed=plan.removal_confirmed(name, state),
            )
            self.reporter.project_finished(failed=result.outcome is Outcome.FAILED)
            return result

        # At most two projects a worker are queued at once: a plan of PyPI's size is not turned into a million
        # futures up front. Results come in the order the projects finish.
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="project") as pool:
            running: set[Future[ProjectResult]] = set()
            try:
                for name, min_serial in plan.projects.items():
                    if len(running) >= 2 * self.config.workers:
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        yield from (future.result() for future in done)
                    running.add(pool.submit(one, name, min_serial))
                yield from (future.result() for future in as_completed(running))
            except BaseException:  # Ctrl-C, SIGTERM: finish only the projects in flight, then unwind (lease released)
                self._stop.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise


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


def _with_sizes(page: ProjectPage, sizes: Mapping[str, int | None]) -> ProjectPage:
    """The page with each unknown file size (an HTML-only upstream gives none) filled in from `sizes`."""
    if all(f.size is not None for f in page.files):
        return page
    files = tuple(
        f if f.size is not None or sizes.get(f.key) is None else dataclasses.replace(f, size=sizes[f.key])
        for f in page.files
    )
    return dataclasses.replace(page, files=files)


def _outdated(known: ProjectState | None, upstream_serial: int | None) -> bool:
    """Whether the listing's serial says a project changed since the mirror published it (unknown: assume so)."""
    return known is None or upstream_serial is None or known.serial is None or upstream_serial > known.serial


def _older(page: ProjectPage, published: ProjectPage) -> bool:
    """Whether `page` is an older upstream state than the published page (both serials known)."""
    new, old = page.last_serial, published.last_serial
    return new is not None and old is not None and new < old


def _digest(state: MirrorState | None) -> str | None:
    return None if state is None else state.digest()
