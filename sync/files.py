"""The files a page names: fetched, verified and stored (never replacing a stored object), and deleted once unnamed.

A stored key has one content forever: every file is stored create-only (`If-None-Match`), so a second claim with
other bytes — the same path with new bytes (a re-upload), or another project's file URL mapping to the same key — is
refused and reported, and the page that would name it is not published. A claim on an object already stored with the
same bytes (another project shares it, or a failed run stored it) marks the key shared, under SHARED_PREFIX: a shared
object is never deleted on one page's word — it may outlive every page naming it, and `verify` lists it as an orphan
(`--reclaim-orphans` deletes it once old enough: sync/reclaim.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import BinaryIO

import urllib3.exceptions

from sync.layout import BINARY, FILE_CACHE_CONTROL, PRIVATE_CACHE_CONTROL, content_type_for, shared_marker_key
from sync.models import DistFile, ProjectPage
from sync.progress import Reporter
from sync.provenance import provenance_objects
from sync.retry import attempts
from sync.storage import (
    ChecksumMismatch,
    Inspector,
    PreconditionFailed,
    Storage,
    StorageError,
    UnstorableKey,
    sha256_of,
)
from sync.transport import UpstreamError
from sync.upstream import UpstreamClient

# What can go wrong while fetching one file and is worth another try, and the pause before it (jittered, in seconds):
# HTTP errors were already retried, with backoff, by the transport.
RETRYABLE_FETCH_ERRORS = (ChecksumMismatch, UpstreamError, urllib3.exceptions.HTTPError, socket.timeout)
FETCH_RETRY_WAIT, FETCH_RETRY_WAIT_MAX = 0.05, 0.5
# A wheel's `.metadata` (PEP 658) is its top-level `<name>-<version>.dist-info/METADATA`, byte for byte.
WHEEL_METADATA = re.compile(r"\A[^/]+\.dist-info/METADATA\Z")
METADATA_MAX_BYTES = 16 * 2**20  # a bigger METADATA is fetched from upstream rather than decompressed (zip bomb)
# ZipFile reads and parses a wheel's whole central directory: a bigger one, fetch the metadata from upstream instead.
WHEEL_MAX_ENTRIES = 50_000
WHEEL_MAX_DIRECTORY_BYTES = 16 * 2**20


class FileFetchFailed(Exception):
    """A file could not be fetched and verified after every attempt."""


class _AttemptFailed(Exception):
    """One download of a file failed in a way worth another try; the cause is its one argument."""


class StoredObjectConflict(StorageError):
    """The key holds other bytes than the page promises: a stored object is never replaced."""

    def __init__(self, key: str, stored: str, wanted: str):
        super().__init__(
            f"{key}: refused: stored with sha256 {stored}, the page says {wanted} (a stored object is never replaced)"
        )


# What storing one object came to: (size, whether this run stored it), or why it failed.
Stored = tuple[DistFile, tuple[int, bool] | FileFetchFailed | StorageError]


@dataclass
class StoredFiles:
    """What storing a page's objects came to."""

    sizes: dict[str, int] = field(default_factory=dict)  # key -> size of every object stored or already held
    unstorable: set[str] = field(default_factory=set)  # keys the destination cannot hold: dropped from the page
    errors: list[str] = field(default_factory=list)
    files_stored: int = 0
    bytes_stored: int = 0


class FileStore:
    """Fetch, verify and store the objects of pages; delete the ones pages stop naming."""

    def __init__(
        self,
        upstream: UpstreamClient,
        storage: Storage,
        reporter: Reporter,
        pool: ThreadPoolExecutor,
        *,
        attempts: int,
        stop: threading.Event,
        before_first_store: Callable[[], None],
    ):
        self.upstream = upstream
        self.storage = storage
        self.reporter = reporter
        self.pool = pool
        self.attempts = attempts
        self.stop = stop
        self.before_first_store = before_first_store  # records that files may exist no page names yet

    def store(self, page: ProjectPage, old_page: ProjectPage | None, check_existing: bool) -> StoredFiles:
        """Store every object the page names that the old page did not.

        A wheel wanted with its `.metadata` is one task, which takes the metadata out of the verified wheel.
        """
        held = objects_named(old_page)
        outcome = StoredFiles()
        futures: list[Future[list[Stored]]] = []
        for dist in page.files:
            objects = _objects_of(dist)
            outcome.errors += [
                str(StoredObjectConflict(obj.key, held[obj.key], obj.sha256))
                for obj in objects
                if held.get(obj.key, obj.sha256) != obj.sha256
            ]
            wanted = [obj for obj in objects if obj.key not in held]
            if len(wanted) == 2 and _is_wheel(dist):
                futures.append(self.pool.submit(self._store_wheel, dist, wanted[1], check_existing))
            else:
                futures += [self.pool.submit(self._store_one, obj, check_existing) for obj in wanted]
        for future in as_completed(futures):
            for obj, stored in future.result():
                if isinstance(stored, UnstorableKey):
                    self.reporter.event("file_unstorable", level="warning", key=obj.key, error=str(stored))
                    outcome.unstorable.add(obj.key)
                elif isinstance(stored, StoredObjectConflict):
                    outcome.errors.append(str(stored))  # names the key
                elif isinstance(stored, Exception):
                    outcome.errors.append(f"{obj.key}: {stored}")
                else:
                    outcome.sizes[obj.key], downloaded = stored
                    if downloaded:
                        outcome.files_stored += 1
                        outcome.bytes_stored += outcome.sizes[obj.key]
        return outcome

    def delete_unnamed(self, old_page: ProjectPage | None, page: ProjectPage | None) -> int:
        """Delete what the old page named and the new one (None: no page) does not — only ever after the new page is
        written (or the old one deleted), and never an object another page may name; returns how many were deleted."""
        keep = objects_named(page)
        deleted = 0
        for key in objects_named(old_page):
            if key in keep:
                continue
            if self.storage.head(shared_marker_key(key)) is not None:
                self.reporter.event("shared_file_kept", key=key)
                continue
            self.storage.delete(key)
            deleted += 1
        return deleted

    def _store_one(self, dist: DistFile, check_existing: bool) -> list[Stored]:
        try:
            return [(dist, self._store_file(dist, check_existing))]
        except (FileFetchFailed, StorageError) as error:
            return [(dist, error)]

    def _store_wheel(self, wheel: DistFile, metadata: DistFile, check_existing: bool) -> list[Stored]:
        """Store a wheel, then its `.metadata` from the wheel's own METADATA when that hashes to the declared sha256.

        No upstream request for the metadata then; else (not a zip, no single METADATA, too big, another hash, the
        wheel already stored) it is fetched from upstream as any file.
        """
        if check_existing:
            try:
                claimed = self._claim_existing(metadata)
            except StorageError as error:
                return [*self._store_one(wheel, check_existing), (metadata, error)]
            if claimed is not None:  # stored by an interrupted run: keep it, as _store_file would
                return [*self._store_one(wheel, check_existing), (metadata, claimed)]
        extract = _MetadataOfWheel(metadata.sha256)
        try:
            stored = self._store_file(wheel, check_existing, inspect=extract)
        except (FileFetchFailed, StorageError) as error:
            return [(wheel, error)]  # the project fails: its metadata is fetched when it is retried
        if extract.data is not None:
            try:
                self.storage.put_bytes(
                    metadata.key,
                    extract.data,
                    content_type=content_type_for(metadata.key),
                    cache_control=FILE_CACHE_CONTROL,
                    if_none_match=True,
                )
            except PreconditionFailed:
                return [(wheel, stored), *self._claimed_or_stored(metadata)]
            except StorageError as error:
                extract.problem = f"cannot store it: {error}"
            else:
                self.reporter.file_stored(len(extract.data))
                return [(wheel, stored), (metadata, (len(extract.data), True))]
        if extract.problem is not None:
            self.reporter.event("metadata_from_upstream", key=metadata.key, reason=extract.problem)
        return [(wheel, stored), *self._store_one(metadata, False)]  # not stored: checked above when resuming

    def _claimed_or_stored(self, dist: DistFile) -> list[Stored]:
        """An object found stored when it was about to be: claimed if it has the right bytes, else refused."""
        try:
            claimed = self._claim_existing(dist)
        except StorageError as error:
            return [(dist, error)]
        return [(dist, claimed)] if claimed is not None else self._store_one(dist, False)

    def _store_file(self, dist: DistFile, check_existing: bool, inspect: Inspector | None = None) -> tuple[int, bool]:
        """Download one file and store it verified; returns its size and whether it was downloaded.

        Retries what is retryable. With `check_existing`, a file already stored is kept (storage only ever shows
        verified objects) instead of downloaded again. `inspect` reads the verified bytes before they are published.
        """
        if check_existing and (claimed := self._claim_existing(dist)) is not None:
            return claimed
        self.before_first_store()
        failed: _AttemptFailed | None = None
        try:
            for attempt in attempts(
                _AttemptFailed, attempts=self.attempts, wait_initial=FETCH_RETRY_WAIT, wait_max=FETCH_RETRY_WAIT_MAX
            ):
                with attempt:
                    if self.stop.is_set():
                        raise FileFetchFailed("run stopped")
                    return self._fetch_and_store(dist, inspect, attempt.num)
        except _AttemptFailed as error:
            failed = error
        raise FileFetchFailed(f"gave up after {self.attempts} attempts: {failed}")

    def _fetch_and_store(self, dist: DistFile, inspect: Inspector | None, attempt: int) -> tuple[int, bool]:
        """One download of `dist`, stored create-only; an object found stored meanwhile is claimed."""
        try:
            with self.upstream.open_file(dist.url) as body:
                size = self.storage.put_file(
                    dist.key,
                    body,
                    sha256=dist.sha256,
                    size=dist.size,
                    content_type=content_type_for(dist.key),
                    cache_control=FILE_CACHE_CONTROL,
                    inspect=inspect,
                    if_none_match=True,
                )
        except PreconditionFailed:
            if (claimed := self._claim_existing(dist)) is not None:
                return claimed
            raise _AttemptFailed(StorageError(f"{dist.key}: stored and deleted meanwhile")) from None
        except RETRYABLE_FETCH_ERRORS as error:
            self.reporter.event(
                "file_retry", level="warning", key=dist.key, attempt=attempt, error=str(error) or repr(error)
            )
            raise _AttemptFailed(error) from error
        self.reporter.file_stored(size)
        return size, True

    def _claim_existing(self, dist: DistFile) -> tuple[int, bool] | None:
        """The object already stored at `dist.key`, when it holds `dist`'s bytes: (size, False) once marked shared.

        None when nothing is stored there; StoredObjectConflict when other bytes are.
        """
        stored = self.storage.stored_sha256(dist.key)
        if stored is None:
            return None
        size, recorded = stored
        digest = recorded or sha256_of(self.storage, dist.key)  # a folder (or another tool's put) records none
        if digest != dist.sha256:
            raise StoredObjectConflict(dist.key, digest, dist.sha256)
        self.storage.put_bytes(
            shared_marker_key(dist.key), b"", content_type=BINARY, cache_control=PRIVATE_CACHE_CONTROL
        )
        return size, False


def drop_unstorable(page: ProjectPage, unstorable: set[str]) -> ProjectPage:
    """The page without the files the destination cannot hold (a metadata it cannot hold: the file without it)."""
    if not unstorable:
        return page
    files = tuple(
        dist
        if dist.metadata_key not in unstorable
        else dataclasses.replace(dist, has_metadata=False, metadata_sha256=None)
        for dist in page.files
        if dist.key not in unstorable
    )
    return dataclasses.replace(page, files=files)


def _is_wheel(dist: DistFile) -> bool:
    return dist.filename.lower().endswith(".whl")


class _MetadataOfWheel:
    """put_file's inspector for a wheel: keeps its METADATA in `data` if that hashes to `sha256`, else says why not."""

    def __init__(self, sha256: str):
        self.sha256 = sha256
        self.data: bytes | None = None
        self.problem: str | None = None

    def __call__(self, wheel: BinaryIO) -> None:
        self.data = self.problem = None
        try:
            data = wheel_metadata(wheel)
        except Exception as error:  # whatever is wrong with the zip, upstream serves the metadata
            self.problem = f"{type(error).__name__}: {error}"
            return
        if hashlib.sha256(data).hexdigest() == self.sha256.lower():
            self.data = data
        else:
            self.problem = "the wheel's METADATA does not hash to the declared sha256"


def wheel_metadata(wheel: BinaryIO, limit: int = METADATA_MAX_BYTES) -> bytes:
    """The wheel's one top-level `*.dist-info/METADATA`, read to at most `limit` bytes; ValueError (or a zipfile
    error) otherwise. Memory stays bounded: the central directory's size and the METADATA's are checked first."""
    # The end record ZipFile itself reads (zip64 too): it then reads and parses the whole central directory.
    end = zipfile._EndRecData(wheel)  # pyright: ignore[reportAttributeAccessIssue]
    if end is None:
        raise zipfile.BadZipFile("not a zip file")
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # pyright: ignore[reportAttributeAccessIssue]
    directory = end[zipfile._ECD_SIZE]  # pyright: ignore[reportAttributeAccessIssue]
    if entries > WHEEL_MAX_ENTRIES or directory > WHEEL_MAX_DIRECTORY_BYTES:
        raise ValueError(f"central directory of {entries} entries, {directory} bytes: over the limit")
    with zipfile.ZipFile(wheel) as archive:
        found = [info for info in archive.infolist() if WHEEL_METADATA.match(info.filename)]
        if len(found) != 1:
            raise ValueError(f"{len(found)} top-level *.dist-info/METADATA entries, expected 1")
        if found[0].file_size > limit:
            raise ValueError(f"METADATA of {found[0].file_size} bytes, over the limit of {limit}")
        with archive.open(found[0]) as member:
            data = member.read(limit + 1)  # bounded: read() would inflate the whole stream before cutting it
    if len(data) > limit:
        raise ValueError(f"METADATA over the limit of {limit} bytes")
    return data


def _objects_of(dist: DistFile) -> list[DistFile]:
    """The stored objects one file entry stands for: the file, and its core metadata when mirrored."""
    objects = [dist]
    if dist.has_metadata and dist.metadata_sha256:
        objects.append(
            dataclasses.replace(
                dist,
                filename=dist.filename + ".metadata",
                url=dist.url + ".metadata",
                key=dist.metadata_key,
                sha256=dist.metadata_sha256,
                size=None,
                has_metadata=False,
                metadata_sha256=None,
            )
        )
    return objects


def objects_named(page: ProjectPage | None) -> dict[str, str]:
    """key → sha256 of every object a page names."""
    if page is None:
        return {}
    return {obj.key: obj.sha256 for dist in page.files for obj in _objects_of(dist)} | dict(provenance_objects(page))
