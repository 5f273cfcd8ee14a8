"""The storage protocol on a local folder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import io
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from sync.retry import attempts
from sync.storage import (
    TEMP_FILE,
    Inspector,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Readable,
    StorageError,
    StoredStream,
    UnstorableKey,
    check_conditions,
    copy_hashing,
    mismatch,
    validate_key,
    write_chunk,
)

TEMP_ATTEMPTS = 3  # tries at a temp file whose folder a concurrent delete keeps pruning
TEMP_NAME_BYTES = 64  # at most this much of `<name>` goes into a temp file's name: a long name still gets a temp file
FOLDER_RUN_NAMES = 65_536  # a folder walk sorts this many names in memory; a bigger folder's runs go to disk
RUN_READ = 2**16  # bytes a spilled run is read at a time while the runs are merged

T = TypeVar("T")


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
        with contextlib.suppress(FileNotFoundError):
            for attempt in attempts(FileNotFoundError, attempts=TEMP_ATTEMPTS, wait_initial=0.001, wait_max=0.01):
                with attempt:
                    return self._make_temp(key, path, name)
        raise StorageError(f"{key}: the folder of {path} keeps disappearing")

    def _make_temp(self, key: str, path: Path, name: str) -> tuple[int, str]:
        """One try at the temp file of `_new_temp`: FileNotFoundError when its directory vanished meanwhile."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return tempfile.mkstemp(prefix=f".{name}.tmp-", dir=path.parent)
        except FileNotFoundError:
            raise
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                raise UnstorableKey(f"{key}: the path is too long for {self.root}") from error
            raise StorageError(f"{key}: cannot write {path}: {error.strerror or error}") from error

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
            key, path, lambda handle: copy_hashing(key, body, handle.write, size)
        )
        try:
            if error := mismatch(key, sha256, actual, size, received):
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
        check_conditions(key, if_match, if_none_match)
        path = self._path(key)
        temp, _ = self._write_temp(key, path, lambda handle: write_chunk(key, handle.write, data))
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
        return ObjectInfo(key, info.st_size, self._etag(info), info.st_mtime)

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
        keys all sort before `start_after` is not entered. At most FOLDER_RUN_NAMES names of one folder are held (a
        flat simple/ of PyPI's 930,000 projects is one folder: its runs are sorted on disk), each stat'ed in turn."""
        try:
            with os.scandir(directory) as scan:
                names = _sorted_in_runs(filter(None, map(_walked_name, scan)))
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
                yield ObjectInfo(key, info.st_size, self._etag(info), info.st_mtime)


def _sorted_in_runs(names: Iterator[str]) -> Iterable[str]:
    """`names` sorted: in memory up to FOLDER_RUN_NAMES of them (a list: a small folder costs no more than before);
    past that, sorted runs of that many are written to unnamed temporary files and merged as they are read back."""
    run = sorted(islice(names, FOLDER_RUN_NAMES))
    if len(run) < FOLDER_RUN_NAMES:
        return run
    spills: list[BinaryIO] = []
    try:
        while run:
            spills.append(cast(BinaryIO, tempfile.TemporaryFile()))  # noqa: SIM115 - closed by _merged
            spills[-1].write(b"".join(name.encode("utf-8", "surrogatepass") + b"\0" for name in run))
            run = sorted(islice(names, FOLDER_RUN_NAMES))
    except BaseException:
        _close_all(spills)
        raise
    return _merged(spills)


def _merged(spills: list[BinaryIO]) -> Iterator[str]:
    """The runs' names in order; the run files are closed when the merge ends or the walk drops it."""
    try:
        yield from heapq.merge(*map(_read_run, spills))
    finally:
        _close_all(spills)


def _close_all(files: list[BinaryIO]) -> None:
    for file in files:
        file.close()


def _read_run(spill: BinaryIO) -> Iterator[str]:
    """The names a run holds, in its order (each ends in NUL, which no file name holds)."""
    spill.seek(0)
    rest = b""
    while chunk := spill.read(RUN_READ):
        *whole, rest = (rest + chunk).split(b"\0")
        yield from (name.decode("utf-8", "surrogatepass") for name in whole)


def _walked_name(entry: os.DirEntry[str]) -> str | None:
    """How a folder walk sorts and lists `entry`: `name/` for a folder, `name` for a regular file, None to skip it."""
    if entry.is_dir(follow_symlinks=False):
        return entry.name + "/"
    if entry.is_file(follow_symlinks=False) and not TEMP_FILE.match(entry.name):
        return entry.name
    return None


def _absent_on_disk(error: OSError) -> bool:
    """Whether a file-system error means the object is absent (a name too long cannot exist either)."""
    return isinstance(error, FileNotFoundError | NotADirectoryError) or error.errno == errno.ENAMETOOLONG
