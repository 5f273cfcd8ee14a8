"""The storage protocol every backend implements (a local folder: `sync.folder_storage`; S3: `sync.s3_storage`), its
errors and key rules, what the backends share to write only verified bytes, and `open_storage`, which picks one.

Every verb maps onto one S3 request.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

COPY_CHUNK = 1024 * 1024  # bytes read from a source stream at a time
# Spools (S3 uploads, root pages, the state) stay in RAM up to this size, then spill to a temp file: with a file
# thread per upload, 2 x workers of them can be full at once.
SPOOL_IN_MEMORY = 1024 * 1024
DEFAULT_S3_CONNECTIONS = 32  # size the pool at least to the number of threads that share one S3Storage
TEMP_FILE = re.compile(r"\A\..*\.tmp-[A-Za-z0-9_]+\Z")  # `.<name>.tmp-<random>`: a folder upload in progress

Inspector = Callable[[BinaryIO], None]  # put_file's hook: reads the verified local copy, positioned at its start


class Readable(Protocol):
    """A byte stream put_file copies from: an open file or an HTTP response body."""

    def read(self, amount: int, /) -> bytes: ...


class StorageError(Exception):
    """The destination refused or failed an operation; the message names the key."""


class ChecksumMismatch(StorageError):
    """The bytes received do not hash to the sha256 the upstream page promised; nothing became visible."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""


class ObjectNotFound(StorageError):
    """The object asked for does not exist."""


class UnstorableKey(StorageError):
    """The destination cannot hold an object at this key (a name too long for the file system, or for S3)."""


class StoredStream(io.BufferedReader):
    """What `Storage.open` returns: the object's bytes, buffered, and `etag`, the version of the object this stream
    reads (same format as `head`'s: it can feed an `if_match`)."""

    def __init__(self, raw: io.RawIOBase, etag: str, buffer_size: int = io.DEFAULT_BUFFER_SIZE):
        super().__init__(raw, buffer_size=buffer_size)
        self.etag = etag


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # opaque version token for conditional writes (S3 ETag; mtime_ns+size+inode for folders)
    last_modified: float  # seconds since the epoch the object was last written (S3 LastModified; a folder's mtime)


class Storage(Protocol):
    """Where the mirror lives. Keys are '/'-separated, relative to the destination root."""

    def put_file(
        self,
        key: str,
        body: Readable,
        *,
        sha256: str,
        size: int | None,
        content_type: str,
        cache_control: str,
        inspect: Inspector | None = None,
        if_none_match: bool = False,
    ) -> int:
        """Store a file streamed from `body`, visible only if its sha256 (and size, when given) match; returns its size.

        Raises ChecksumMismatch (nothing visible) otherwise. Memory stays bounded whatever the size. `inspect`, when
        given, reads the verified bytes from a local seekable copy before they become visible (no second download);
        an exception from it aborts the put. With `if_none_match` an existing object is never replaced: the put
        raises PreconditionFailed instead. UnstorableKey: the destination cannot hold this key at all.
        """
        ...

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        cache_control: str,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        """Write a small object atomically; returns its new etag. Raises PreconditionFailed on a lost condition."""
        ...

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and etag, or None when absent."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and etag of an object, or None when absent."""
        ...

    def open(self, key: str) -> StoredStream:
        """A stream of the object's bytes carrying the etag of the version it reads; ObjectNotFound when absent."""
        ...

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Remove an object; absent is not an error, unless `if_match` asks for that version (PreconditionFailed)."""
        ...

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix` whose key sorts after `start_after`, in key order."""
        ...

    def stored_sha256(self, key: str) -> tuple[int, str | None] | None:
        """(size, the sha256 hex the backend recorded when the object was written, or None when it keeps none), or
        None when the object is absent. One small request: no byte of the object is read."""
        ...

    def describe(self) -> str:
        """The destination as the user wrote it, for messages."""
        ...


def validate_key(key: str) -> str:
    """`key` itself when it is a safe relative '/'-separated path; StorageError naming it otherwise."""
    problem = None
    if not key:
        problem = "is empty"
    elif key.startswith("/"):
        problem = "is absolute"
    elif "\\" in key or "\0" in key:
        problem = "contains a backslash or NUL"
    elif not _encodable(key):
        problem = "is not valid Unicode (a lone surrogate)"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "has an empty, '.' or '..' segment"
    elif TEMP_FILE.match(key.rsplit("/", 1)[-1]):
        problem = "looks like a temporary upload file"
    if problem:
        raise StorageError(f"refusing key {key!r}: it {problem}")
    return key


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------------- what every backend shares
def check_conditions(key: str, if_match: str | None, if_none_match: bool) -> None:
    if if_match is not None and if_none_match:
        raise ValueError(f"{key}: if_match and if_none_match exclude each other")


def mismatch(key: str, sha256: str, actual: str, size: int | None, received: int) -> ChecksumMismatch | None:
    """The error to raise when what was received is not what was promised, else None."""
    if size is not None and received != size:
        return ChecksumMismatch(f"{key}: received {received} bytes, expected {size}")
    if actual != sha256.lower():
        return ChecksumMismatch(f"{key}: sha256 {actual} does not match the expected {sha256}")
    return None


def copy_hashing(key: str, body: Readable, sink: Callable[[bytes], Any], size: int | None) -> tuple[str, int]:
    """Copy `body` into `sink` in bounded chunks; returns (sha256 hex, byte count). Stops early past `size`."""
    digest = hashlib.sha256()
    received = 0
    while chunk := body.read(COPY_CHUNK):
        digest.update(chunk)
        received += len(chunk)
        if size is not None and received > size:
            raise ChecksumMismatch(f"{key}: received more than the expected {size} bytes")
        write_chunk(key, sink, chunk)
    return digest.hexdigest(), received


def write_chunk(key: str, sink: Callable[[bytes], Any], chunk: bytes) -> None:
    """`sink(chunk)`, with a local disk error (ENOSPC, EIO…) raised as a StorageError naming the key."""
    try:
        sink(chunk)
    except OSError as error:
        raise StorageError(f"{key}: cannot write: {error.strerror or error}") from error


def open_storage(
    dest: str, *, endpoint_url: str | None = None, max_connections: int = DEFAULT_S3_CONNECTIONS
) -> Storage:
    """The backend for `dest`: `s3://bucket[/prefix]` or a folder path (created when missing).

    Raises ValueError for a malformed destination and StorageError for a folder that cannot be written.
    """
    if not dest:
        raise ValueError("empty destination: give a folder path or s3://bucket[/prefix]")
    scheme, separator, rest = dest.partition("://")
    if separator and scheme.lower() == "s3":
        from sync.s3_storage import S3Storage  # noqa: PLC0415 - botocore loads only for S3 destinations

        bucket, _, prefix = rest.partition("/")
        return S3Storage(
            bucket,
            prefix.strip("/"),
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            max_connections=max_connections,
        )
    if separator or dest.lower().startswith("s3:"):
        raise ValueError(f"unsupported destination {dest!r}: give a folder path or s3://bucket[/prefix]")
    from sync.folder_storage import FolderStorage  # noqa: PLC0415 - the backends import this module

    return FolderStorage(Path(dest))


def sha256_of(storage: Storage, key: str) -> str:
    """The sha256 of a stored object, read as it streams in."""
    digest = hashlib.sha256()
    with storage.open(key) as body:
        while chunk := body.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def put_chunks(storage: Storage, key: str, chunks: Iterable[bytes], *, content_type: str, cache_control: str) -> int:
    """Store an object written in chunks (a root page, the state) in one write, spooled rather than joined in memory;
    returns its size."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
        hasher, size = hashlib.sha256(), 0
        for chunk in chunks:
            hasher.update(chunk)
            size += spool.write(chunk)
        spool.seek(0)
        return storage.put_file(
            key, spool, sha256=hasher.hexdigest(), size=size, content_type=content_type, cache_control=cache_control
        )
