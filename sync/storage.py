"""One storage protocol, two backends (a local folder and S3); every verb maps onto one S3 request."""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, Protocol, TypeVar, cast

from botocore.exceptions import BotoCoreError, ClientError

COPY_CHUNK = 1024 * 1024  # bytes read from a source stream at a time
# Spools (S3 uploads, root pages, the state) stay in RAM up to this size, then spill to a temp file: with a file
# thread per upload, 2 x workers of them can be full at once.
SPOOL_IN_MEMORY = 1024 * 1024
DEFAULT_S3_CONNECTIONS = 32  # size the pool at least to the number of threads that share one S3Storage
S3_MAX_ATTEMPTS = 5  # tries in all; "standard" mode retries 5xx, SlowDown, throttling and dropped connections


BUCKET_NAME = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
IPV4_LIKE = re.compile(r"\A\d+\.\d+\.\d+\.\d+\Z")
TEMP_FILE = re.compile(r"\A\..*\.tmp-[A-Za-z0-9_]+\Z")  # `.<name>.tmp-<random>`: a folder upload in progress
TEMP_NAME_BYTES = 64  # at most this much of `<name>` goes into a temp file's name: a long name still gets a temp file
BOTO_ERRORS = (ClientError, BotoCoreError)

T = TypeVar("T")
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


def _check_conditions(key: str, if_match: str | None, if_none_match: bool) -> None:
    if if_match is not None and if_none_match:
        raise ValueError(f"{key}: if_match and if_none_match exclude each other")


def _mismatch(key: str, sha256: str, actual: str, size: int | None, received: int) -> ChecksumMismatch | None:
    """The error to raise when what was received is not what was promised, else None."""
    if size is not None and received != size:
        return ChecksumMismatch(f"{key}: received {received} bytes, expected {size}")
    if actual != sha256.lower():
        return ChecksumMismatch(f"{key}: sha256 {actual} does not match the expected {sha256}")
    return None


def _copy_hashing(key: str, body: Readable, sink: Callable[[bytes], Any], size: int | None) -> tuple[str, int]:
    """Copy `body` into `sink` in bounded chunks; returns (sha256 hex, byte count). Stops early past `size`."""
    digest = hashlib.sha256()
    received = 0
    while chunk := body.read(COPY_CHUNK):
        digest.update(chunk)
        received += len(chunk)
        if size is not None and received > size:
            raise ChecksumMismatch(f"{key}: received more than the expected {size} bytes")
        _write_chunk(key, sink, chunk)
    return digest.hexdigest(), received


def _write_chunk(key: str, sink: Callable[[bytes], Any], chunk: bytes) -> None:
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
        bucket, _, prefix = rest.partition("/")
        return S3Storage(
            bucket,
            prefix.strip("/"),
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            max_connections=max_connections,
        )
    if separator or dest.lower().startswith("s3:"):
        raise ValueError(f"unsupported destination {dest!r}: give a folder path or s3://bucket[/prefix]")
    return FolderStorage(Path(dest))


# ------------------------------------------------------------------------------------------------- folder
class FolderStorage:
    """A local folder: atomic renames, fsync'd data, create-if-absent via link(2), compare-and-swap under flock."""

    def __init__(self, root: Path):
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create folder {root}: {error.strerror or error}") from error
        if not os.access(root, os.W_OK | os.X_OK):
            raise StorageError(f"folder {root} is not writable")
        self._name_max = os.pathconf(root, "PC_NAME_MAX")

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _check_storable(self, key: str) -> None:
        """UnstorableKey when a segment of `key` is longer than the file system allows a name (ENAMETOOLONG)."""
        longest = max(len(segment.encode()) for segment in key.split("/"))
        if longest > self._name_max:
            raise UnstorableKey(
                f"{key}: a name of {longest} bytes is too long for {self.root} (at most {self._name_max})"
            )

    @staticmethod
    def _etag(info: os.stat_result) -> str:
        return f'"{info.st_mtime_ns:x}-{info.st_size:x}-{info.st_ino:x}"'

    def _new_temp(self, key: str, path: Path) -> tuple[int, str]:
        """A fresh temp file beside `path`; retried when a concurrent delete prunes the directory in between."""
        self._check_storable(key)
        name = path.name.encode()[:TEMP_NAME_BYTES].decode(errors="ignore")
        for _ in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                return tempfile.mkstemp(prefix=f".{name}.tmp-", dir=path.parent)
            except FileNotFoundError:
                continue
            except OSError as error:
                if error.errno == errno.ENAMETOOLONG:
                    raise UnstorableKey(f"{key}: the path is too long for {self.root}") from error
                raise StorageError(f"{key}: cannot write {path}: {error.strerror or error}") from error
        raise StorageError(f"{key}: the folder of {path} keeps disappearing")

    def _write_temp(self, key: str, path: Path, write: Callable[[BinaryIO], T]) -> tuple[str, T]:
        """Run `write` on a new temp file, fsync it and stamp its mtime to the nanosecond.

        Returns the temp path and what `write` returned.

        The temp file is removed on any error. The explicit stamp makes the stat-based etag change on every
        write (the kernel's file clock ticks more coarsely).
        """
        fd, temp = self._new_temp(key, path)
        try:
            with os.fdopen(fd, "wb") as handle:
                written = write(cast(BinaryIO, handle))
                try:
                    handle.flush()
                    os.fchmod(handle.fileno(), 0o644)
                    now = time.time_ns()
                    os.utime(handle.fileno(), ns=(now, now))
                    os.fsync(handle.fileno())
                except OSError as error:
                    raise StorageError(f"{key}: cannot write {path}: {error.strerror or error}") from error
        except BaseException:
            os.unlink(temp)
            raise
        return temp, written

    def _publish(self, key: str, temp: str, path: Path) -> str:
        """Atomically move `temp` onto `path`; returns the new etag."""
        try:
            os.replace(temp, path)
            self._sync_dir(path.parent)
            return self._etag(path.stat())
        except OSError as error:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise StorageError(f"{key}: cannot write {path}: {error.strerror or error}") from error

    @staticmethod
    def _sync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, directory: Path) -> Iterator[None]:
        """An exclusive flock on `directory`: serialises conditional updates of the keys inside it."""
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

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
        """Content type and cache control are not stored: a folder has no object metadata. `inspect` reads the
        temp file before its rename (or, with `if_none_match`, its link)."""
        path = self._path(key)
        temp, (actual, received) = self._write_temp(
            key, path, lambda handle: _copy_hashing(key, body, handle.write, size)
        )
        try:
            if error := _mismatch(key, sha256, actual, size, received):
                raise error
            if inspect is not None:
                try:
                    local = open(temp, "rb")  # noqa: SIM115 - closed by the `with` below
                except OSError as error:
                    raise StorageError(f"{key}: cannot read back {temp}: {error.strerror or error}") from error
                with local:
                    inspect(local)
        except BaseException:
            os.unlink(temp)
            raise
        if if_none_match:
            self._link_if_absent(key, temp, path)
        else:
            self._publish(key, temp, path)
        return received

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
        _check_conditions(key, if_match, if_none_match)
        path = self._path(key)
        temp, _ = self._write_temp(key, path, lambda handle: _write_chunk(key, handle.write, data))
        if if_none_match:
            return self._link_if_absent(key, temp, path)
        if if_match is None:
            return self._publish(key, temp, path)
        with self._locked(path.parent):
            current = self.head(key)
            if current is None or current.etag != if_match:
                os.unlink(temp)
                raise PreconditionFailed(f"{key}: changed since etag {if_match}")
            return self._publish(key, temp, path)

    def _link_if_absent(self, key: str, temp: str, path: Path) -> str:
        try:
            os.link(temp, path)
        except FileExistsError:
            raise PreconditionFailed(f"{key}: already exists") from None
        except OSError as error:
            raise StorageError(f"{key}: cannot write {path}: {error.strerror or error}") from error
        finally:
            os.unlink(temp)
        self._sync_dir(path.parent)
        return self._etag(path.stat())

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        path = self._path(key)
        try:
            with open(path, "rb") as handle:
                return handle.read(), self._etag(os.fstat(handle.fileno()))
        except OSError as error:
            if _absent_on_disk(error):
                return None
            raise StorageError(f"{key}: cannot read {path}: {error.strerror or error}") from error

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            info = path.stat()
        except OSError as error:
            if _absent_on_disk(error):
                return None
            raise StorageError(f"{key}: cannot stat {path}: {error.strerror or error}") from error
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key, info.st_size, self._etag(info))

    def open(self, key: str) -> StoredStream:
        """The etag comes from fstat of the opened descriptor: the version this stream reads, even if the key is
        replaced meanwhile (a rename leaves the open file as it was)."""
        path = self._path(key)
        try:
            raw = io.FileIO(path, "rb")
        except OSError as error:
            if _absent_on_disk(error):
                raise ObjectNotFound(f"{key}: no such object ({path})") from error
            raise StorageError(f"{key}: cannot read {path}: {error.strerror or error}") from error
        try:
            etag = self._etag(os.fstat(raw.fileno()))
        except OSError as error:
            raw.close()
            raise StorageError(f"{key}: cannot stat {path}: {error.strerror or error}") from error
        return StoredStream(raw, etag)  # the caller closes it

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        try:
            if if_match is None:
                path.unlink(missing_ok=True)
            else:
                with self._locked(path.parent):
                    current = self.head(key)
                    if current is None or current.etag != if_match:
                        raise PreconditionFailed(f"{key}: changed since etag {if_match}")
                    path.unlink()
        except OSError as error:
            if not _absent_on_disk(error):
                raise StorageError(f"{key}: cannot delete {path}: {error.strerror or error}") from error
            if if_match is not None:
                raise PreconditionFailed(f"{key}: absent, expected etag {if_match}") from None
            return
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove now-empty folders up to the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        base = prefix.rpartition("/")[0]
        if base:
            validate_key(base)
        for info in self._walk(self.root / base if base else self.root, f"{base}/" if base else "", start_after):
            if info.key.startswith(prefix) and info.key > start_after:
                yield info

    def stored_sha256(self, key: str) -> tuple[int, str | None] | None:
        """A folder records no checksum: the size only."""
        info = self.head(key)
        return None if info is None else (info.size, None)

    def _walk(self, directory: Path, key_prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Regular files under `directory` in key order: siblings sorted by name, folders as `name/`. A folder whose
        keys all sort before `start_after` is not entered. Only the names of one folder are held (a flat simple/ of
        PyPI's 930,000 projects is one folder), each stat'ed as its turn comes."""
        try:
            with os.scandir(directory) as scan:
                names = sorted(filter(None, map(_walked_name, scan)))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:
            raise StorageError(f"cannot list {directory}: {error.strerror or error}") from error
        for name in names:
            key = key_prefix + name
            if name.endswith("/"):
                if key > start_after or start_after.startswith(key):
                    yield from self._walk(directory / name, key, start_after)
                continue
            try:
                info = os.stat(directory / name, follow_symlinks=False)
            except FileNotFoundError:  # deleted since the folder was read
                continue
            except OSError as error:
                raise StorageError(f"cannot stat {directory / name}: {error.strerror or error}") from error
            if stat.S_ISREG(info.st_mode):
                yield ObjectInfo(key, info.st_size, self._etag(info))


def _walked_name(entry: os.DirEntry[str]) -> str | None:
    """How a folder walk sorts and lists `entry`: `name/` for a folder, `name` for a regular file, None to skip it."""
    if entry.is_dir(follow_symlinks=False):
        return entry.name + "/"
    if entry.is_file(follow_symlinks=False) and not TEMP_FILE.match(entry.name):
        return entry.name
    return None


# ----------------------------------------------------------------------------------------------------- S3
class S3Storage:
    """An S3 bucket (or a prefix in it): one request per verb, sha256 checked by S3 itself on every upload."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        max_connections: int = DEFAULT_S3_CONNECTIONS,
        client: Any = None,
    ):
        dest = f"s3://{bucket}/{prefix}".rstrip("/")
        if not bucket:
            raise ValueError(f"invalid S3 destination {dest!r}: no bucket name (expected s3://bucket[/prefix])")
        if not BUCKET_NAME.match(bucket) or ".." in bucket or IPV4_LIKE.match(bucket):
            raise ValueError(
                f"invalid S3 destination {dest!r}: bucket name {bucket!r} is not valid "
                "(3-63 characters: lower-case letters, digits, '.' and '-')"
            )
        if prefix:
            try:
                validate_key(prefix)
            except StorageError as error:
                raise ValueError(f"invalid S3 destination {dest!r}: prefix {prefix!r} is not a safe path") from error
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.dest = dest
        self.client = client or _s3_client(endpoint_url, max_connections)

    def describe(self) -> str:
        return self.dest

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _fail(self, key: str, action: str, error: Exception) -> NoReturn:
        """Raise the StorageError (or subclass) that `error` from botocore means, naming the key and the AWS code."""
        where = f"{self.dest}/{key}"
        if not isinstance(error, ClientError):
            raise StorageError(f"{where}: {action} failed: {error}") from error
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.response.get("Error", {}).get("Message", "")
        text = f"{where}: {action} failed: {code or 'error'} (HTTP {status}){': ' + message if message else ''}"
        if status == 412 or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise PreconditionFailed(text) from error
        if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
            raise ChecksumMismatch(text) from error
        if code == "KeyTooLongError":
            raise UnstorableKey(text) from error
        raise StorageError(text) from error

    @staticmethod
    def _absent(error: Exception) -> bool:
        if not isinstance(error, ClientError):
            return False
        code = error.response.get("Error", {}).get("Code")
        return (
            code in ("NoSuchKey", "404", "NotFound")
            and error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404
        )

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
        """`inspect` reads the spool (memory, or a temp file past SPOOL_IN_MEMORY) before the PutObject;
        `if_none_match` sends it with `If-None-Match: *`."""
        full_key = self._key(key)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            actual, received = _copy_hashing(key, body, spool.write, size)
            if error := _mismatch(key, sha256, actual, size, received):
                raise error
            if inspect is not None:
                spool.seek(0)
                inspect(cast(BinaryIO, spool))
            spool.seek(0)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=full_key,
                    Body=cast(BinaryIO, spool),
                    ContentLength=received,
                    ContentType=content_type,
                    CacheControl=cache_control,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(actual)).decode(),
                    **({"IfNoneMatch": "*"} if if_none_match else {}),
                )
            except BOTO_ERRORS as error:
                self._fail(key, "PUT", error)
        return received

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
        _check_conditions(key, if_match, if_none_match)
        conditions: dict[str, str] = {}
        if if_match is not None:
            conditions["IfMatch"] = if_match
        if if_none_match:
            conditions["IfNoneMatch"] = "*"
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                CacheControl=cache_control,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=base64.b64encode(hashlib.sha256(data).digest()).decode(),
                **conditions,
            )
        except BOTO_ERRORS as error:
            if if_match is not None and self._absent(error):
                raise PreconditionFailed(f"{self.dest}/{key}: absent, expected etag {if_match}") from error
            self._fail(key, "PUT", error)
        return response["ETag"]

    def get_bytes(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return response["Body"].read(), response["ETag"]
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "GET", error)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "HEAD", error)
        return ObjectInfo(key, response["ContentLength"], response["ETag"])

    def open(self, key: str) -> StoredStream:
        """The etag is GetObject's: the version this stream reads."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except BOTO_ERRORS as error:
            if self._absent(error):
                raise ObjectNotFound(f"{self.dest}/{key}: no such object") from error
            self._fail(key, "GET", error)
        raw = _S3Stream(response["Body"], lambda error: self._fail(key, "GET", error))
        return StoredStream(raw, response["ETag"], buffer_size=COPY_CHUNK)

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        try:
            if if_match is None:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
            else:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=if_match)
        except BOTO_ERRORS as error:
            if if_match is not None and self._absent(error):
                raise PreconditionFailed(f"{self.dest}/{key}: absent, expected etag {if_match}") from error
            self._fail(key, "DELETE", error)

    def stored_sha256(self, key: str) -> tuple[int, str | None] | None:
        """HeadObject with ChecksumMode=ENABLED: the full-object SHA256 S3 checked at the PUT (put_file and put_bytes
        name it). A multipart upload's checksum of part checksums ("…-N", COMPOSITE) is no file digest: None."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=self._key(key), ChecksumMode="ENABLED")
        except BOTO_ERRORS as error:
            if self._absent(error):
                return None
            self._fail(key, "HEAD", error)
        stored = response.get("ChecksumSHA256")
        if not stored or "-" in stored or response.get("ChecksumType") == "COMPOSITE":
            return response["ContentLength"], None
        try:
            return response["ContentLength"], base64.b64decode(stored, validate=True).hex()
        except ValueError:
            return response["ContentLength"], None

    def list(self, prefix: str, *, start_after: str = "") -> Iterator[ObjectInfo]:
        after = {"StartAfter": self.prefix + start_after} if start_after else {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix, **after
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(item["Key"][len(self.prefix) :], item["Size"], item["ETag"])
        except BOTO_ERRORS as error:
            self._fail(prefix, "LIST", error)


class _S3Stream(io.RawIOBase):
    """A GetObject body as a raw stream whose read errors become StorageErrors."""

    def __init__(self, body: Any, fail: Callable[[Exception], NoReturn]):
        self._body = body
        self._fail = fail

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk = self._body.read(len(buffer))
        except BOTO_ERRORS as error:
            self._fail(error)
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._body.close()
        super().close()


def sha256_of(storage: Storage, key: str) -> str:
    """The sha256 of a stored object, read as it streams in."""
    digest = hashlib.sha256()
    with storage.open(key) as body:
        while chunk := body.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _absent_on_disk(error: OSError) -> bool:
    """Whether a file-system error means the object is absent (a name too long cannot exist either)."""
    return isinstance(error, FileNotFoundError | NotADirectoryError) or error.errno == errno.ENAMETOOLONG


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


def _s3_client(endpoint_url: str | None, max_connections: int) -> Any:
    import boto3.session  # noqa: PLC0415 - boto3 loads only for S3 destinations
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        retries={"mode": "standard", "total_max_attempts": S3_MAX_ATTEMPTS},
        max_pool_connections=max(max_connections, 1),
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="pypi-cdn",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
