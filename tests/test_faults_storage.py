"""Storage faults: S3 throttling, 5xx, resets and corrupted uploads (through the fault-injecting S3 proxy), lost
conditional writes, and a full disk under a folder destination. After each: retried or named, a documented exit code,
`verify` sound, nothing partial visible, and a later run that downloads nothing it already stored.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.retries.standard import ExponentialBackoff

from sync import cli
from sync.layout import LEASE_KEY, STATE_KEY
from sync.storage import TEMP_FILE
from sync.verify import verify_mirror
from tests.fixtures.s3 import S3Destination
from tests.s3proxy import BAD_DIGEST, CORRUPT_BODY, INTERNAL_ERROR, LOSE_RESPONSE, PRECONDITION_FAILED, RESET, SLOW_DOWN
from tests.s3proxy import Fault as S3Fault
from tests.test_faults_upstream import PERSISTENT, FaultRig, Release, new_release, synced_rig, use_fast_client
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer


@pytest.fixture
def s3_rig(
    upstream: UpstreamServer, fake_index: FakeIndex, s3_proxy_dest: S3Destination, monkeypatch: pytest.MonkeyPatch
) -> FaultRig:
    """An S3 mirror (through the fault proxy) synced once; botocore retries without their back-off sleeps."""
    use_fast_client(monkeypatch)
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.01)
    return synced_rig(
        upstream, fake_index, s3_proxy_dest.dest, s3_proxy_dest.endpoint_url, s3_proxy_dest.client.meta.endpoint_url
    )


@pytest.fixture
def folder_rig(
    upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FaultRig:
    use_fast_client(monkeypatch)
    return synced_rig(upstream, fake_index, str(tmp_path / "mirror"))


def release_and_removal(mirrored: FaultRig) -> tuple[Release, str]:
    """A new release of the first project, and one of its old files removed upstream: (release, removed key)."""
    release = new_release(mirrored)
    project = mirrored.index.project(release.project)
    removed = project.files[0]
    mirrored.index.remove_file(project.name, removed.filename)
    return release, removed.url_path.lstrip("/")


def disarm(proxy: Any) -> None:
    """Drop every fault still armed on the S3 proxy."""
    with proxy._state.lock:
        proxy._state.rules.clear()


# What a fault targets, as a regex over the object key the proxy sees.
S3_TARGETS: dict[str, Callable[[Release, str], str]] = {
    "file": lambda release, removed: re.escape(release.file_path.lstrip("/")) + "$",
    "page": lambda release, removed: re.escape(f"simple/{release.project}/index.v1_json") + "$",
    "removed file": lambda release, removed: re.escape(removed) + "$",
    "state": lambda release, removed: re.escape(STATE_KEY) + "$",
    "lease": lambda release, removed: re.escape(LEASE_KEY) + "$",
}


@dataclass(frozen=True)
class S3FaultCase:
    """`fault` on the next `uses` requests of `operation` on `target`; which page is published afterwards."""

    name: str
    operation: str
    target: str
    fault: S3Fault
    uses: int
    expected: int  # exit code
    page_after: str  # "new" or "old"
    orphans_the_removed_file: bool = False  # a known gap: a failed delete is not retried once the page is written


S3_FAULTS = [
    S3FaultCase("file PUT SlowDown twice", "PUT", "file", SLOW_DOWN, 2, cli.EXIT_OK, "new"),
    S3FaultCase("file PUT connection reset once", "PUT", "file", RESET, 1, cli.EXIT_OK, "new"),
    S3FaultCase("file PUT BadDigest once", "PUT", "file", BAD_DIGEST, 1, cli.EXIT_OK, "new"),
    S3FaultCase("page GET SlowDown once", "GET", "page", SLOW_DOWN, 1, cli.EXIT_OK, "new"),
    S3FaultCase("page PUT 500 once", "PUT", "page", INTERNAL_ERROR, 1, cli.EXIT_OK, "new"),
    S3FaultCase("removed file DELETE SlowDown once", "DELETE", "removed file", SLOW_DOWN, 1, cli.EXIT_OK, "new"),
    S3FaultCase("state PUT 500 once", "PUT", "state", INTERNAL_ERROR, 1, cli.EXIT_OK, "new"),
    S3FaultCase("lease PUT response lost once", "PUT", "lease", LOSE_RESPONSE, 1, cli.EXIT_OK, "new"),
    S3FaultCase("lease PUT 412 once", "PUT", "lease", PRECONDITION_FAILED, 1, cli.EXIT_OK, "new"),
    S3FaultCase("file PUT SlowDown always", "PUT", "file", SLOW_DOWN, PERSISTENT, cli.EXIT_PARTIAL, "old"),
    S3FaultCase("file PUT BadDigest always", "PUT", "file", BAD_DIGEST, PERSISTENT, cli.EXIT_PARTIAL, "old"),
    S3FaultCase("file PUT connection reset always", "PUT", "file", RESET, PERSISTENT, cli.EXIT_PARTIAL, "old"),
    S3FaultCase("page PUT 500 always", "PUT", "page", INTERNAL_ERROR, PERSISTENT, cli.EXIT_PARTIAL, "old"),
    S3FaultCase(
        "removed file DELETE 500 always",
        "DELETE",
        "removed file",
        INTERNAL_ERROR,
        PERSISTENT,
        cli.EXIT_PARTIAL,
        "new",
        orphans_the_removed_file=True,
    ),
    S3FaultCase("state PUT SlowDown always", "PUT", "state", SLOW_DOWN, PERSISTENT, cli.EXIT_DESTINATION, "old"),
    S3FaultCase("lease PUT 412 always", "PUT", "lease", PRECONDITION_FAILED, PERSISTENT, cli.EXIT_LEASE_HELD, "old"),
]


@pytest.mark.parametrize("case", S3_FAULTS, ids=[case.name for case in S3_FAULTS])
def test_s3_fault(s3_rig: FaultRig, s3_proxy_dest: S3Destination, case: S3FaultCase) -> None:
    proxy = s3_proxy_dest.proxy
    assert proxy is not None
    release, removed = release_and_removal(s3_rig)
    target = S3_TARGETS[case.target](release, removed)
    proxy.inject(case.operation, target, case.fault, times=case.uses)
    proxy.reset_counts()
    outcome = s3_rig.mirror()
    assert outcome.code == case.expected, outcome.stderr
    assert not any("Traceback" in line for line in outcome.stderr)
    hits = [key for operation, key in proxy.log if operation == case.operation and re.search(target, key)]
    assert len(hits) >= min(case.uses, 2)  # the fault was met (and, for a single use, its retry went out)
    expected, page_after = case.expected, case.page_after
    disarm(proxy)
    page = s3_rig.storage.get_bytes(f"simple/{release.project}/index.v1_json")
    assert page is not None
    new_file = release.file_path.rsplit("/", 1)[-1].encode()
    assert (new_file in page[0]) == (page_after == "new")
    if page_after == "old":
        assert page[0] == release.old_page
    if expected == cli.EXIT_OK:
        assert outcome.stderr == []
        assert s3_rig.storage.head(removed) is None
    elif expected == cli.EXIT_PARTIAL:
        assert len(outcome.failed_lines) == 1
        assert outcome.failed_lines[0].startswith(f"failed: {release.project}: ")
        assert s3_proxy_dest.dest in outcome.failed_lines[0]  # the line names the object and the destination
    else:
        assert len(outcome.error_lines) == 1
        assert s3_proxy_dest.dest in outcome.error_lines[0]
    s3_rig.assert_sound()
    left = frozenset(key for key in s3_rig.known_objects if key.startswith(removed))  # the file and its metadata
    s3_rig.assert_resumes(left if case.orphans_the_removed_file else frozenset())


def test_a_corrupted_upload_moto_accepts_is_caught_by_verify(s3_rig: FaultRig, s3_proxy_dest: S3Destination) -> None:
    """Real S3 refuses a PUT whose body does not match its ChecksumSHA256 (BadDigest, the cases above); moto 5.2
    stores it. `verify` still finds such an object, and names it."""
    proxy = s3_proxy_dest.proxy
    assert proxy is not None
    release = new_release(s3_rig)
    key = release.file_path.lstrip("/")
    proxy.inject("PUT", re.escape(key) + "$", CORRUPT_BODY)
    assert s3_rig.mirror().code == cli.EXIT_OK  # moto answered 200 to the corrupted upload
    report = verify_mirror(s3_rig.storage)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"wrong sha256: {key} ")


class FullDisk:
    """ENOSPC for writes (or fsyncs) of files whose path matches a pattern, as a full disk answers.

    Only the matching temp files of FolderStorage fail: the real code path handles the error.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pattern: str, *, on: str) -> None:
        self.pattern = re.compile(pattern)
        self.failures = 0
        if on == "write":
            real_fdopen = os.fdopen
            monkeypatch.setattr(os, "fdopen", lambda fd, *a, **kw: self._wrap(fd, real_fdopen(fd, *a, **kw)))
        else:
            real_fsync = os.fsync
            monkeypatch.setattr(os, "fsync", lambda fd: self._fail() if self._matches(fd) else real_fsync(fd))

    def _matches(self, fd: int) -> bool:
        return bool(self.pattern.search(os.readlink(f"/proc/self/fd/{fd}")))

    def _fail(self) -> None:
        self.failures += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _wrap(self, fd: int, handle: Any) -> Any:
        return _FullFile(handle, self._fail) if self._matches(fd) else handle


class _FullFile:
    """A file object whose writes fail: the disk is full."""

    def __init__(self, handle: Any, fail: Callable[[], None]) -> None:
        self._handle = handle
        self.write = lambda data: fail()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


def temp_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if TEMP_FILE.match(path.name)]


@dataclass(frozen=True)
class DiskFullCase:
    name: str
    pattern: str  # regex over the paths written while the disk is full
    on: str  # "write" or "fsync"
    expected: int  # exit code


DISK_FULL = [
    DiskFullCase("file write", r"-9\.0-py3-none-any\.whl\.tmp-", "write", cli.EXIT_PARTIAL),
    DiskFullCase("file fsync", r"-9\.0-py3-none-any\.whl\.tmp-", "fsync", cli.EXIT_PARTIAL),
    DiskFullCase("page write", r"/\.index\.v1_json\.tmp-", "write", cli.EXIT_PARTIAL),
    DiskFullCase("every write", r"\.tmp-", "write", cli.EXIT_DESTINATION),
]


@pytest.mark.parametrize("case", DISK_FULL, ids=[case.name for case in DISK_FULL])
def test_disk_full_under_a_folder(
    folder_rig: FaultRig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, case: DiskFullCase
) -> None:
    rig = folder_rig
    release, _ = release_and_removal(rig)
    with monkeypatch.context() as patched:
        disk = FullDisk(patched, case.pattern, on=case.on)
        outcome = rig.mirror()
    assert disk.failures > 0
    assert outcome.code == case.expected, outcome.stderr
    message = (outcome.failed_lines or outcome.error_lines)[0]
    assert os.strerror(errno.ENOSPC) in message
    assert temp_files(tmp_path) == []  # nothing half-written is left behind
    page = rig.storage.get_bytes(f"simple/{release.project}/index.v1_json")
    assert page is not None
    assert page[0] == release.old_page
    rig.assert_sound()
    rig.assert_resumes()
