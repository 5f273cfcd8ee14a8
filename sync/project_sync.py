"""Sync one project: fetch its upstream page, compare it with the published one, store new files, write its pages,
delete what they stopped naming — with the mirror correct after every step.

Invariant, crash or not: every link in every published page resolves to an object whose sha256 matches. Files are
stored (verified, never replacing a stored object: `sync.files`) before the page that names them is written, and
deleted only after the page stops naming them.

Upstream saying a project is gone (404), or that it has no file left, is believed only when confirmed: by the change
feed's newest row for it being `remove project`, by the root listing no longer naming it, or by the next sync agreeing
(`MirrorState.missing`). Until then the old page stays.

`ProjectSync` is the core, for a run that holds the destination's lease; `LeasedProjectSync` (sync.roster) wraps it
for syncs that run alongside others (queue workers).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sync import render
from sync.config import MirrorConfig
from sync.files import FileStore, drop_unstorable
from sync.filters import filter_page, wants_project
from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.layout import PAGE_CACHE_CONTROL, content_type_for, page_keys
from sync.models import InvalidInput, ProjectPage
from sync.plan import normalized_or_report
from sync.progress import Reporter
from sync.project_status import is_quarantined, withhold_quarantined
from sync.provenance import ProvenanceMirror, with_published_hashes
from sync.storage import PreconditionFailed, Storage, StorageError
from sync.transport import UpstreamError
from sync.upstream import ProjectNotFound, UpstreamClient


@dataclass(frozen=True)
class Published:
    """A project's published pages as read once: the JSON page's bytes, both pages' versions, the parsed page."""

    body: bytes | None  # None: no page published
    versions: dict[str, str | None]  # key -> etag read (None: absent): pages are written only over these
    page: ProjectPage | None  # None: absent, or unreadable (`error` says why)
    error: str | None = None

    @property
    def held(self) -> bool:
        return self.body is not None

    @property
    def serial(self) -> int | None:
        return self.page.last_serial if self.page else None


def read_published(storage: Storage, name: str) -> Published:
    """Read the project's published pages (the JSON page, the HTML page's version); StorageError if unreadable."""
    json_key, html_key = page_keys(name)
    found = storage.get_bytes(json_key)
    html_info = storage.head(html_key)
    versions = {json_key: found[1] if found else None, html_key: html_info.etag if html_info else None}
    if found is None:
        return Published(None, versions, None)
    try:
        return Published(found[0], versions, render.parse_published_json(found[0]))
    except ValueError as error:
        return Published(found[0], versions, None, str(error))


class ProjectSync:
    """Bring single projects in line with upstream; a failure leaves the project's old page in place."""

    def __init__(self, config: MirrorConfig, upstream: UpstreamClient, storage: Storage, reporter: Reporter):
        self.config = config
        self.upstream = upstream
        self.storage = storage
        self.reporter = reporter
        # Twice as many file threads as upstream connections (the client's pool caps requests in flight at
        # `workers`): a thread spends part of each file on storage (fsync, rename, S3's answer) after the download
        # has handed its connection back, and with only `workers` threads that connection would sit idle meanwhile.
        self._file_pool = ThreadPoolExecutor(config.workers * 2, thread_name_prefix="file")
        self.stop = threading.Event()  # set: stop storing files (the run lost its lease, or is unwinding)
        self.on_first_store: Callable[[], None] = lambda: None  # the run loop records `incomplete` here
        self._provenance = ProvenanceMirror(upstream, storage, config.public_url, reporter.event)
        self.files = FileStore(
            upstream,
            storage,
            reporter,
            self._file_pool,
            attempts=config.file_attempts,
            stop=self.stop,
            before_first_store=self._first_store,
        )

    def _first_store(self) -> None:
        self.on_first_store()

    def close(self) -> None:
        self._file_pool.shutdown(wait=True, cancel_futures=True)

    def sync(
        self, job: ProjectJob, *, check_existing: bool = False, published: Published | None = None
    ) -> ProjectResult:
        """Sync `job.project`. `check_existing` looks for each new file in storage before downloading it (after an
        interrupted run; a job that failed before may have stored some too); `published` is the published page when
        the caller has read it already."""
        normalized = normalized_or_report(job.project, self.reporter)
        if normalized is None:
            return ProjectResult(job.project, Outcome.FAILED, errors=[f"invalid project name {job.project!r}"])
        if not wants_project(self.config, normalized):
            return ProjectResult(normalized, Outcome.SKIPPED)
        known_serial, known_etag = (job.known.serial, job.known.etag) if job.known else (None, None)
        if published is not None and not published.held:
            known_etag = None  # a 304 must not stand for a page the mirror does not hold
        published_serial = published.serial if published is not None else None
        floor = max((s for s in (job.serial, known_serial, published_serial) if s is not None), default=None)
        try:
            page = self.upstream.get_project(normalized, etag=known_etag, min_serial=floor)
        except ProjectNotFound:
            return self._remove(normalized, job.confirm_removal, published)
        except (UpstreamError, InvalidInput) as error:
            return self._failed(normalized, str(error))
        if page is None:  # 304 Not Modified: the page we hold is current
            serial = published.serial if published and published.page else known_serial
            return ProjectResult(normalized, Outcome.UNCHANGED, serial, known_etag)
        page = withhold_quarantined(filter_page(self.config, page))
        if published is None and not job.fresh:
            try:
                published = read_published(self.storage, normalized)
            except StorageError as error:  # replaced, and nothing it names is deleted on its word
                key = page_keys(normalized)[0]
                self.reporter.event("published_page_unreadable", level="warning", key=key, error=str(error))
        # A PEP 792 quarantine says itself that the files are gone on purpose: confirmation enough.
        confirmed = job.confirm_removal or is_quarantined(page)
        return self._publish(page, published, check_existing or job.retry, confirmed)

    def _publish(
        self, page: ProjectPage, published: Published | None, check_existing: bool, removal_confirmed: bool
    ) -> ProjectResult:
        result = ProjectResult(page.normalized, Outcome.UPDATED, page.last_serial, page.etag)
        result.quarantined = is_quarantined(page)
        old_page = published.page if published else None
        if published is not None and published.error is not None:
            key = page_keys(page.normalized)[0]
            self.reporter.event("published_page_unreadable", level="warning", key=key, error=published.error)
        elif published is not None:
            page = _with_sizes(page, {f.key: f.size for f in old_page.files} if old_page else {})
            unchanged = with_published_hashes(page, old_page, self._provenance.public_url)
            if published.body is not None and published.body == render.project_json(unchanged):
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
        if old_page is not None and old_page.files and not page.files and not removal_confirmed:
            return self._removal_unconfirmed(page.normalized, "upstream lists no file")
        return self._store_and_write(page, old_page, published.versions if published else None, check_existing, result)

    def _store_and_write(
        self,
        page: ProjectPage,
        old_page: ProjectPage | None,
        read_versions: dict[str, str | None] | None,
        check_existing: bool,
        result: ProjectResult,
    ) -> ProjectResult:
        """Store the page's new files, write its pages over the versions read, then delete what it stopped naming.

        Writing only over the versions read means two syncs of the project at once cannot publish an older page
        after the newer one deleted what the older names."""
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

    def _remove(self, normalized: str, removal_confirmed: bool, published: Published | None) -> ProjectResult:
        """Upstream deleted the project: once confirmed, unpublish its pages first, then delete its files."""
        result = ProjectResult(normalized, Outcome.REMOVED)
        try:
            published = published or read_published(self.storage, normalized)
            if published.error is not None:
                raise ValueError(published.error)
            if published.held and not removal_confirmed:
                return self._removal_unconfirmed(normalized, "upstream answers 404")
            for key in page_keys(normalized):
                self.storage.delete(key)
            result.files_deleted = self.files.delete_unnamed(published.page, None)
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


def _with_sizes(page: ProjectPage, sizes: Mapping[str, int | None]) -> ProjectPage:
    """The page with each unknown file size (an HTML-only upstream gives none) filled in from `sizes`."""
    if all(f.size is not None for f in page.files):
        return page
    files = tuple(
        f if f.size is not None or sizes.get(f.key) is None else dataclasses.replace(f, size=sizes[f.key])
        for f in page.files
    )
    return dataclasses.replace(page, files=files)


def _older(page: ProjectPage, published: ProjectPage) -> bool:
    """Whether `page` is an older upstream state than the published page (both serials known)."""
    new, old = page.last_serial, published.last_serial
    return new is not None and old is not None and new < old
