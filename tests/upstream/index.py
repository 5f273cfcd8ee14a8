"""The fake index's data: projects, their files and PyPI's change journal — no HTTP here.

Every mutation takes the next global serial, appends one journal row (what XML-RPC `changelog_since_serial` returns)
and becomes the project's `last_serial`, as on PyPI: uploads, removals, yanks and PEP 792 status changes (a
quarantine too). A file's PEP 740 provenance document comes with its upload and may gain attestations later without
a journal row, as on PyPI. Project states are immutable snapshots, so the server can render
a page without holding the lock, and a few past states per project are kept to serve stale pages on demand.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

BASE_SERIAL = 1000
PROJECT_STATUSES = frozenset({"active", "archived", "quarantined", "deprecated"})
# The journal's clock: serial BASE_SERIAL happens at CLOCK_START, each later serial one second after the previous.
CLOCK_START = datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
HISTORY_DEPTH = 32  # past states kept per project for stale pages
PROJECT_NAME = re.compile(r"\A([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
# File-less names registered by add_bulk_names: generated, never stored one by one.
BULK_DISPLAY = "Bulk_Project.{:07d}"
BULK_NORMALIZED = re.compile(r"\Abulk-project-(\d{7})\Z")


def valid_project_name(name: str) -> str:
    """`name` itself, after checking it is a PEP 508 project name (the only kind the fake index holds)."""
    if not PROJECT_NAME.match(name):
        raise ValueError(f"invalid project name {name!r}: use letters, digits and . _ - (PEP 508)")
    return name


def version_order(version: str) -> tuple[int, Version | str]:
    """Sort key: PEP 440 order, with unparsable versions first in plain string order."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


@dataclass(frozen=True)
class FakeFile:
    """One distribution file, with the hashes and path PyPI would give it."""

    filename: str
    content: bytes = field(repr=False)
    version: str
    sha256: str
    blake2b_256: str
    upload_time: datetime
    requires_python: str | None = None
    metadata: bytes | None = field(default=None, repr=False)
    yanked: bool | str = False
    provenance: bytes | None = field(default=None, repr=False)  # PEP 740 document as uploaded

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def url_path(self) -> str:
        """`/packages/<b2[:2]>/<b2[2:4]>/<b2[4:]>/<filename>`, the layout of files.pythonhosted.org."""
        b2 = self.blake2b_256
        return f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{self.filename}"

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()

    @property
    def sort_key(self) -> tuple[tuple[int, Version | str], str]:
        return version_order(self.version), self.filename


@dataclass(frozen=True)
class FakeProject:
    """One state of a project: what its page shows at `last_serial`."""

    name: str  # display name, as first given
    normalized: str
    last_serial: int
    created_serial: int
    files: tuple[FakeFile, ...] = ()
    status: str = "active"  # PEP 792: active, archived, quarantined or deprecated
    status_reason: str | None = None

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"

    @property
    def offered_files(self) -> tuple[FakeFile, ...]:
        """The files the index offers: none while the project is quarantined (Warehouse filters them out)."""
        return () if self.quarantined else self.files

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted({f.version for f in self.offered_files}, key=version_order))


class ChangelogRow(NamedTuple):
    """A journal row as XML-RPC `changelog_since_serial` returns it."""

    name: str
    version: str | None
    timestamp: int
    action: str
    serial: int


@dataclass(frozen=True)
class _BulkRange:
    """Names first_index.. of add_bulk_names, created one serial each from first_serial on."""

    first_index: int
    count: int
    first_serial: int

    def serial_of(self, index: int) -> int:
        return self.first_serial + index - self.first_index


class FakeIndex:
    """A deterministic, thread-safe package index: the data behind UpstreamServer."""

    def __init__(self, base_serial: int = BASE_SERIAL):
        self._lock = threading.Lock()
        self._base_serial = base_serial
        self._serial = base_serial
        self._history: dict[str, list[FakeProject]] = {}  # normalized -> states, oldest first
        self._files_by_path: dict[str, FakeFile] = {}
        self._project_of: dict[str, str] = {}  # file url_path -> normalized project
        self._provenance: dict[str, bytes] = {}  # file url_path -> its document, once it gained attestations
        self._changelog: list[ChangelogRow] = []
        self._bulk: list[_BulkRange] = []

    # ---------------------------------------------------------------------------------------------- reading
    @property
    def serial(self) -> int:
        """The last serial handed out (the XML-RPC `changelog_last_serial`)."""
        return self._serial

    def timestamp(self, serial: int) -> datetime:
        """When the journal says `serial` happened."""
        return CLOCK_START + timedelta(seconds=serial - self._base_serial)

    def projects(self) -> list[FakeProject]:
        """Current state of every project added with files, by normalized name (bulk names are not included)."""
        with self._lock:
            return [states[-1] for _, states in sorted(self._history.items())]

    def project(self, name: str) -> FakeProject:
        """Current state of `name` (any spelling); KeyError names it when the index has no such project."""
        found = self.page_state(name)
        if found is None:
            raise KeyError(f"no project {name!r} in the fake index")
        return found

    def page_state(self, name: str, serial_offset: int = 0) -> FakeProject | None:
        """The project as it was at serial `last_serial - serial_offset`, or None when it did not exist then.

        Only HISTORY_DEPTH states are kept per project: an older serial gets the oldest kept state (still stale).
        """
        normalized = canonicalize_name(name)
        with self._lock:
            states = list(self._history.get(normalized, ()))
        if not states:
            return self._bulk_project(normalized)
        wanted = states[-1].last_serial - serial_offset
        if wanted < states[0].created_serial:
            return None
        older = [state for state in states if state.last_serial <= wanted]
        return older[-1] if older else states[0]

    def file_at(self, url_path: str) -> FakeFile | None:
        """The file currently served at `url_path` (see FakeFile.url_path); None while its project is quarantined."""
        found = self._files_by_path.get(url_path)
        if found is None:
            return None
        project = self.page_state(self._project_of.get(url_path, ""))
        return None if project is not None and project.quarantined else found

    def provenance_of(self, project: str, filename: str) -> bytes | None:
        """The current PEP 740 provenance document of a file offered by `project`, if it has one."""
        state = self.page_state(project)
        found = next((f for f in state.offered_files if f.filename == filename), None) if state else None
        if found is None or found.provenance is None:
            return None
        return self._provenance.get(found.url_path, found.provenance)

    def changelog_since(self, serial: int, limit: int | None = None) -> list[ChangelogRow]:
        """Journal rows after `serial`, oldest first, at most `limit` of them."""
        with self._lock:
            start = bisect.bisect_right(self._changelog, serial, key=lambda row: row.serial)
            rows = self._changelog[start : None if limit is None else start + limit]
            bulk_ranges = list(self._bulk)
        bulk_rows = (self._bulk_rows(bulk, serial) for bulk in bulk_ranges)
        merged = heapq.merge(rows, *bulk_rows, key=lambda row: row.serial)
        return list(itertools.islice(merged, limit))

    def listing(self) -> tuple[int, Iterator[tuple[str, str, int]]]:
        """(serial, every project as (display name, normalized, last serial) in normalized order), one snapshot.

        A quarantined project is left out, as PyPI leaves it out of its root listing."""
        with self._lock:
            serial = self._serial
            current = [
                (states[-1].name, key, states[-1].last_serial)
                for key, states in sorted(self._history.items())
                if not states[-1].quarantined
            ]
            bulk_ranges = list(self._bulk)
        bulk_names = (
            (BULK_DISPLAY.format(i), f"bulk-project-{i:07d}", bulk.serial_of(i))
            for bulk in bulk_ranges
            for i in range(bulk.first_index, bulk.first_index + bulk.count)
        )
        return serial, heapq.merge(current, bulk_names, key=lambda entry: entry[1])

    # --------------------------------------------------------------------------------------------- mutations
    def add_file(
        self,
        project: str,
        filename: str,
        content: bytes,
        *,
        version: str,
        requires_python: str | None = None,
        metadata: bytes | None = None,
        yanked: bool | str = False,
        upload_time: datetime | None = None,
        provenance: bytes | None = None,
    ) -> FakeFile:
        """Upload `filename` to `project` (created if new; its display name is kept as first given)."""
        valid_project_name(project)
        if not filename or "/" in filename or filename in {".", ".."}:
            raise ValueError(f"invalid file name {filename!r}: a plain file name is needed")
        sha256 = hashlib.sha256(content).hexdigest()
        blake2b_256 = hashlib.blake2b(content, digest_size=32).hexdigest()
        normalized = canonicalize_name(project)
        with self._lock:
            states = self._history.get(normalized)
            current = states[-1] if states else None
            if current and any(f.filename == filename for f in current.files):
                raise ValueError(f"file {filename!r} already exists in project {current.name!r}")
            serial = self._next_serial()
            added = FakeFile(
                filename=filename,
                content=content,
                version=version,
                sha256=sha256,
                blake2b_256=blake2b_256,
                upload_time=upload_time or self.timestamp(serial),
                requires_python=requires_python,
                metadata=metadata,
                yanked=yanked,
                provenance=provenance,
            )
            files = sorted([*(current.files if current else ()), added], key=lambda f: f.sort_key)
            state = (
                replace(current, last_serial=serial, files=tuple(files))
                if current
                else FakeProject(project, normalized, serial, serial, tuple(files))
            )
            self._commit(state, version, f"add {python_tag(filename)} file {filename}")
            self._files_by_path[added.url_path] = added
            self._project_of[added.url_path] = normalized
            return added

    def set_status(self, project: str, status: str, reason: str | None = None) -> None:
        """Set the PEP 792 status (`quarantined` withholds every file, `active` lifts it): a journal entry."""
        if status not in PROJECT_STATUSES:
            raise ValueError(f"unknown project status {status!r}: one of {', '.join(sorted(PROJECT_STATUSES))}")
        with self._lock:
            current = self._current(project)
            changed = replace(current, last_serial=self._next_serial(), status=status, status_reason=reason)
            self._commit(changed, None, f"set project status {status}")

    def attest(self, project: str, filename: str, document: bytes) -> None:
        """Replace a file's provenance document, e.g. with one more attestation bundle: no journal row, no serial."""
        with self._lock:
            target = self._find_file(self._current(project), filename)
            if target.provenance is None:
                raise ValueError(f"file {filename!r} was uploaded without provenance")
            self._provenance[target.url_path] = document

    def remove_file(self, project: str, filename: str) -> None:
        """Delete one file; the project stays, even with no file left (as on PyPI)."""
        with self._lock:
            current = self._current(project)
            gone = self._find_file(current, filename)
            files = tuple(f for f in current.files if f is not gone)
            self._commit(
                replace(current, last_serial=self._next_serial(), files=files), gone.version, f"remove file {filename}"
            )
            if self._files_by_path.get(gone.url_path) is gone:
                del self._files_by_path[gone.url_path]

    def remove_project(self, project: str) -> None:
        """Delete a project with all its files: its page answers 404 from now on."""
        with self._lock:
            current = self._current(project)
            serial = self._next_serial()
            self._changelog.append(ChangelogRow(current.name, None, self._unix_time(serial), "remove project", serial))
            del self._history[current.normalized]
            for gone in current.files:
                if self._files_by_path.get(gone.url_path) is gone:
                    del self._files_by_path[gone.url_path]

    def yank(self, project: str, filename: str, reason: str | bool = True) -> FakeFile:
        """Mark a file yanked (True, or the reason as a string); `reason=False` un-yanks it."""
        with self._lock:
            current = self._current(project)
            target = self._find_file(current, filename)
            changed = replace(target, yanked=reason)
            files = tuple(changed if f is target else f for f in current.files)
            action = "yank release" if reason is not False else "unyank release"
            self._commit(replace(current, last_serial=self._next_serial(), files=files), target.version, action)
            self._files_by_path[changed.url_path] = changed
            return changed

    def add_bulk_names(self, count: int) -> None:
        """Register `count` file-less projects named Bulk_Project.0000000… (one serial each) for listing scale tests.

        They appear in the root listing, the journal and `list_packages_with_serial`, and have (empty) pages, but
        are generated on demand rather than stored, so a PyPI-sized listing (~930k names) stays cheap.
        """
        if count < 0:
            raise ValueError(f"bulk name count must be >= 0, got {count}")
        with self._lock:
            first_index = sum(bulk.count for bulk in self._bulk)
            if first_index + count > 10**7:
                raise ValueError(f"at most 10,000,000 bulk names, asked for {first_index + count}")
            self._bulk.append(_BulkRange(first_index, count, self._serial + 1))
            self._serial += count

    # --------------------------------------------------------------------------------------------- internals
    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _unix_time(self, serial: int) -> int:
        return int(self.timestamp(serial).timestamp())

    def _current(self, project: str) -> FakeProject:
        states = self._history.get(canonicalize_name(project))
        if states is None:
            raise KeyError(f"no project {project!r} in the fake index")
        return states[-1]

    @staticmethod
    def _find_file(project: FakeProject, filename: str) -> FakeFile:
        for candidate in project.files:
            if candidate.filename == filename:
                return candidate
        raise KeyError(f"no file {filename!r} in project {project.name!r}")

    def _commit(self, state: FakeProject, version: str | None, action: str) -> None:
        """Record `state` as the project's newest, and its journal row."""
        states = self._history.setdefault(state.normalized, [])
        states.append(state)
        del states[:-HISTORY_DEPTH]
        serial = state.last_serial
        self._changelog.append(ChangelogRow(state.name, version, self._unix_time(serial), action, serial))

    def _bulk_project(self, normalized: str) -> FakeProject | None:
        match = BULK_NORMALIZED.match(normalized)
        if match is None:
            return None
        index = int(match.group(1))
        with self._lock:
            bulk_ranges = list(self._bulk)
        for bulk in bulk_ranges:
            if bulk.first_index <= index < bulk.first_index + bulk.count:
                serial = bulk.serial_of(index)
                return FakeProject(BULK_DISPLAY.format(index), normalized, serial, serial)
        return None

    def _bulk_rows(self, bulk: _BulkRange, after_serial: int) -> Iterator[ChangelogRow]:
        start = max(bulk.first_index, bulk.first_index + after_serial + 1 - bulk.first_serial)
        for index in range(start, bulk.first_index + bulk.count):
            serial = bulk.serial_of(index)
            yield ChangelogRow(BULK_DISPLAY.format(index), None, self._unix_time(serial), "create", serial)


def python_tag(filename: str) -> str:
    """The journal's word for a file's Python: a wheel's python tag (`py3`, `cp311`), else `source`."""
    if filename.endswith(".whl"):
        parts = filename[: -len(".whl")].split("-")
        if len(parts) >= 5:
            return parts[-3]
    return "source"
