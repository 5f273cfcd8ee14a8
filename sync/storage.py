"""One storage protocol, two backends (a local folder and S3); every verb maps onto one S3 request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"
PAGE_CACHE_CONTROL = "public, max-age=60, stale-while-revalidate=300, stale-if-error=86400"
STATE_PREFIX = ".pypi-cdn/"  # private: the CDN never serves it; holds the lease and sync state


class StorageError(Exception):
    """The destination refused or failed an operation; the message names the key."""


class ChecksumMismatch(StorageError):
    """The bytes received do not hash to the sha256 the upstream page promised; nothing became visible."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # opaque version token for conditional writes (S3 ETag; a content hash for folders)


class Storage(Protocol):
    """Where the mirror lives. Keys are '/'-separated, relative to the destination root."""

    def put_file(
        self, key: str, body: BinaryIO, *, sha256: str, size: int | None, content_type: str, cache_control: str
    ) -> None:
        """Store a file streamed from `body`, visible only if its sha256 (and size, when given) match.

        Raises ChecksumMismatch (nothing visible) otherwise. Memory stays bounded whatever the size.
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

    def open(self, key: str) -> BinaryIO:
        """A stream of the object's bytes (for verification); raises StorageError when absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object; absent is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order."""
        ...

    def describe(self) -> str:
        """The destination as the user wrote it, for messages."""
        ...
