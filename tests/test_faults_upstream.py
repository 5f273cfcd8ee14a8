"""Upstream faults, one per case: the run retries what is retryable, names the rest in one line each, exits with a
documented code, leaves a mirror `verify` calls sound, and a later run resumes without downloading again.

Every case runs the CLI's own code path (`sync.cli.mirror_once`) in-process against the local fake PyPI, with the
client's retries kept short (2 retries, 10 ms backoff, 1 s timeouts) so a persistent fault fails fast.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sync import cli
from sync.config import MirrorConfig
from sync.progress import Reporter
from sync.storage import Storage, open_storage
from sync.upstream import UpstreamClient
from sync.verify import VerifyReport, verify_mirror
from tests.upstream.index import FakeIndex
from tests.upstream.server import Fault, UpstreamServer

CLIENT_TIMEOUT = 1.0  # seconds, connect and read: a delayed answer past it is a timeout
FAST_CLIENT = {"retries": 2, "backoff": 0.01, "connect_timeout": CLIENT_TIMEOUT, "read_timeout": CLIENT_TIMEOUT}
PERSISTENT = 1000  # uses of a fault: more than any run retries


@dataclass
class RunOutcome:
    """What one CLI run left behind: its exit code, its stderr lines and its JSON events."""

    code: int
    stderr: list[str]
    events: list[dict[str, Any]]
    seconds: float

    @property
    def failed_lines(self) -> list[str]:
        return [line for line in self.stderr if line.startswith("failed: ")]

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr if line.startswith("error: ")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.events if record["event"] == event]


@dataclass
class FaultRig:
    """A destination mirrored from `upstream` by the CLI's code path, with the checks every fault case makes."""

    upstream: UpstreamServer
    index: FakeIndex
    dest: str
    endpoint_url: str | None = None  # what the mirror connects to (through a fault proxy, for S3)
    check_endpoint_url: str | None = None  # what the checks connect to (the S3 server itself: faster, no faults)
    settings: dict[str, Any] = field(default_factory=dict)
    known_objects: dict[str, str] = field(default_factory=dict)  # key -> sha256 of every object upstream served

    @functools.cached_property
    def storage(self) -> Storage:
        """The destination as the checks see it."""
        return open_storage(self.dest, endpoint_url=self.check_endpoint_url or self.endpoint_url)

    def config(self, **overrides: Any) -> MirrorConfig:
        settings = {"upstream": self.upstream.url, "endpoint_url": self.endpoint_url, "workers": 4}
        return MirrorConfig(dest=self.dest, **{**settings, **self.settings, **overrides})

    def mirror(self, **overrides: Any) -> RunOutcome:
        """One `python -m sync mirror` run (in-process, through `cli.mirror_once`)."""
        events, stderr = io.StringIO(), io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stderr(stderr):
            code = cli.mirror_once(self.config(**overrides), Reporter(events, json_lines=True))
        return RunOutcome(
            code,
            stderr.getvalue().splitlines(),
            [json.loads(line) for line in events.getvalue().splitlines()],
            time.monotonic() - started,
        )

    def stored(self) -> set[str]:
        return {info.key for info in self.storage.list("packages/")}

    def downloads(self) -> list[str]:
        """Storage keys of the files requested from upstream since the log was last reset."""
        return [r.path.lstrip("/") for r in self.upstream.requests if r.path.startswith("/packages/")]

    def assert_sound(self, *, orphans_allowed: bool = True) -> VerifyReport:
        """`verify` finds no problem, and every visible object is whole: it hashes to what upstream published."""
        report = verify_mirror(self.storage)  # hashes every object a page names
        assert report.problems == []
        if not orphans_allowed:
            assert report.orphans == []
        self.remember_objects()
        assert_whole(self.storage, report.orphans, self.known_objects)
        return report

    def remember_objects(self) -> None:
        """Record the objects upstream serves now, so they stay known after upstream deletes them."""
        self.known_objects.update(objects_of(self.index))

    def assert_resumes(self, orphans: frozenset[str] = frozenset()) -> RunOutcome:
        """A run with upstream healthy again succeeds, downloads only what is not stored yet, leaves no orphan
        (but `orphans`)."""
        self.upstream.clear_faults()
        self.upstream.clear_overrides()
        before = self.stored()
        self.upstream.reset_log()
        outcome = self.mirror()
        assert outcome.code == cli.EXIT_OK, outcome.stderr
        again = sorted(set(self.downloads()) & before)
        assert again == [], f"downloaded again although stored: {again}"
        assert set(self.assert_sound().orphans) == orphans
        return outcome


def objects_of(index: FakeIndex) -> dict[str, str]:
    objects = {}
    for project in index.projects():
        for dist in project.files:
            objects[dist.url_path.lstrip("/")] = dist.sha256
            if dist.metadata_sha256 is not None:
                objects[dist.url_path.lstrip("/") + ".metadata"] = dist.metadata_sha256
    return objects


def assert_whole(storage: Storage, keys: list[str], expected: dict[str, str]) -> None:
    """Each of `keys` is an object upstream served, with all of its bytes (no partial object is visible)."""
    for key in keys:
        assert key in expected, f"unexpected object {key}"
        digest = hashlib.sha256()
        with storage.open(key) as body:
            while chunk := body.read(2**20):
                digest.update(chunk)
        assert digest.hexdigest() == expected[key], f"partial or corrupt object {key}"


def use_fast_client(monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
    """The CLI's UpstreamClient with short retries and timeouts, so persistent faults fail in about a second."""
    monkeypatch.setattr(cli, "UpstreamClient", functools.partial(UpstreamClient, **{**FAST_CLIENT, **options}))


def synced_rig(
    upstream: UpstreamServer,
    index: FakeIndex,
    dest: str,
    endpoint_url: str | None = None,
    check_endpoint_url: str | None = None,
) -> FaultRig:
    """A mirror of the sample index, synced once already (so faults hit an update run)."""
    mirrored = FaultRig(upstream, index, dest, endpoint_url, check_endpoint_url)
    first = mirrored.mirror()
    assert first.code == cli.EXIT_OK, first.stderr
    mirrored.remember_objects()
    return mirrored


@pytest.fixture
def rig(upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FaultRig:
    use_fast_client(monkeypatch)
    return synced_rig(upstream, fake_index, str(tmp_path / "mirror"))


@dataclass(frozen=True)
class Release:
    """The change a fault case syncs: a new release of one project (a file and its metadata)."""

    project: str
    file_path: str
    page_path: str
    old_page: bytes


def new_release(rig: FaultRig, size: int = 300_000) -> Release:
    project = rig.index.projects()[0]
    old_page = rig.storage.get_bytes(f"simple/{project.normalized}/index.v1_json")
    assert old_page is not None
    added = rig.index.add_file(
        project.name,
        f"{project.normalized}-9.0-py3-none-any.whl",
        hashlib.sha256(b"9.0").digest() * (size // 32),
        version="9.0",
        metadata=b"Metadata-Version: 2.1\nName: x\nVersion: 9.0\n",
    )
    rig.remember_objects()
    return Release(project.normalized, added.url_path, f"/simple/{project.normalized}/", old_page[0])


# Where a fault is injected: the new release's file, the project's page, the change feed.
TARGETS = {
    "file": lambda release: rf"^{re.escape(release.file_path)}$",
    "page": lambda release: rf"^{re.escape(release.page_path)}$",
    "feed": lambda release: r"^/pypi$",
}


@dataclass(frozen=True)
class FaultCase:
    """A fault injected `uses` times on a target; one use is retried away, PERSISTENT ones are not."""

    name: str
    target: str
    fault: Fault
    uses: int
    expected: int  # exit code


UPSTREAM_FAULTS = [
    FaultCase("file 500 once", "file", Fault.status(500), 1, cli.EXIT_OK),
    FaultCase("file 502 once", "file", Fault.status(502), 1, cli.EXIT_OK),
    FaultCase("file 503 twice", "file", Fault.status(503), 2, cli.EXIT_OK),
    FaultCase("page 503 once", "page", Fault.status(503), 1, cli.EXIT_OK),
    FaultCase("feed 502 once", "feed", Fault.status(502), 1, cli.EXIT_OK),
    FaultCase("file read timeout once", "file", Fault.delay(CLIENT_TIMEOUT + 0.5), 1, cli.EXIT_OK),
    FaultCase("page read timeout once", "page", Fault.delay(CLIENT_TIMEOUT + 0.5), 1, cli.EXIT_OK),
    FaultCase("file reset mid-body once", "file", Fault.reset_mid_body(), 1, cli.EXIT_OK),
    FaultCase("page reset mid-body once", "page", Fault.reset_mid_body(), 1, cli.EXIT_OK),
    FaultCase("file truncated once", "file", Fault.truncate(1000), 1, cli.EXIT_OK),
    FaultCase("page truncated once", "page", Fault.truncate(100), 1, cli.EXIT_OK),
    FaultCase("file wrong sha256 once", "file", Fault.corrupt(), 1, cli.EXIT_OK),
    FaultCase("page stale once", "page", Fault.stale_page(1), 1, cli.EXIT_OK),
    FaultCase("page of 50 MB", "page", Fault.huge_page(50), 1, cli.EXIT_OK),
    FaultCase("file 503 always", "file", Fault.status(503), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file 404", "file", Fault.status(404), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file read timeout always", "file", Fault.delay(CLIENT_TIMEOUT + 0.5), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file reset mid-body always", "file", Fault.reset_mid_body(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file truncated always", "file", Fault.truncate(1000), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file wrong sha256 always", "file", Fault.corrupt(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("file redirect loop", "file", Fault.redirect_loop(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page 500 always", "page", Fault.status(500), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page wrong size", "page", Fault.wrong_size(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page malformed JSON", "page", Fault.malformed_json(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page malformed HTML", "page", Fault.malformed_html(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page redirect loop", "page", Fault.redirect_loop(), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("page stale always", "page", Fault.stale_page(1), PERSISTENT, cli.EXIT_PARTIAL),
    FaultCase("feed 503 always", "feed", Fault.status(503), PERSISTENT, cli.EXIT_UPSTREAM),
    FaultCase("feed 429 always", "feed", Fault.status(429, retry_after=0), PERSISTENT, cli.EXIT_UPSTREAM),
    FaultCase("feed redirect loop", "feed", Fault.redirect_loop(), PERSISTENT, cli.EXIT_UPSTREAM),
    FaultCase("feed truncated always", "feed", Fault.truncate(50), PERSISTENT, cli.EXIT_UPSTREAM),
]


@pytest.mark.parametrize("case", UPSTREAM_FAULTS, ids=[case.name for case in UPSTREAM_FAULTS])
def test_upstream_fault(rig: FaultRig, case: FaultCase) -> None:
    release = new_release(rig)
    rig.upstream.inject(TARGETS[case.target](release), case.fault, times=case.uses)
    rig.upstream.reset_log()
    outcome = rig.mirror()
    assert outcome.code == case.expected, outcome.stderr
    assert outcome.code in cli.EXIT_CODES
    assert not any("Traceback" in line for line in outcome.stderr)
    page = rig.storage.get_bytes(f"simple/{release.project}/index.v1_json")
    assert page is not None
    if case.expected == cli.EXIT_OK:
        assert outcome.stderr == []
        assert rig.upstream.pending_faults() == 0  # every injected use was met, and retried past
        assert release.file_path.rsplit("/", 1)[-1].encode() in page[0]
    else:
        assert page[0] == release.old_page  # the last good page stays published
        assert rig.storage.head(release.file_path.lstrip("/")) is None or case.target == "page"
    if case.expected == cli.EXIT_PARTIAL:
        assert len(outcome.failed_lines) == 1
        assert outcome.failed_lines[0].startswith(f"failed: {release.project}: ")
        assert [e["project"] for e in outcome.named("project_failed")] == [release.project]
    if case.expected == cli.EXIT_UPSTREAM:
        assert len(outcome.error_lines) == 1
        assert outcome.error_lines[0].startswith(f"error: upstream {rig.upstream.url}")
    rig.assert_sound()
    rig.assert_resumes()


def test_retry_after_is_honoured(rig: FaultRig) -> None:
    release = new_release(rig)
    rig.upstream.inject(TARGETS["file"](release), Fault.status(429, retry_after=1), times=1)
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert outcome.seconds >= 1.0
    statuses = [r.status for r in rig.upstream.requests if r.path == release.file_path]
    assert statuses == [429, 200]
    rig.assert_sound(orphans_allowed=False)


def test_retry_after_is_capped(rig: FaultRig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile Retry-After cannot stall the run: the client caps it."""
    use_fast_client(monkeypatch, max_retry_after=0.2)
    release = new_release(rig)
    rig.upstream.inject(TARGETS["file"](release), Fault.status(429, retry_after=86_400), times=1)
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert outcome.seconds < 10
    rig.assert_sound(orphans_allowed=False)


def test_page_over_the_size_limit_is_refused_unread(rig: FaultRig, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fast_client(monkeypatch, max_page_size=2**20)
    release = new_release(rig)
    rig.upstream.inject(TARGETS["page"](release), Fault.huge_page(50), times=PERSISTENT)
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_PARTIAL
    assert "limit" in outcome.failed_lines[0]
    assert rig.storage.get_bytes(f"simple/{release.project}/index.v1_json")[0] == release.old_page
    rig.assert_sound()
    rig.assert_resumes()


def test_malformed_feed_answer_exits_3(rig: FaultRig) -> None:
    new_release(rig)
    rig.upstream.override_path("/pypi", b"<?xml version='1.0'?><methodResponse><params>", "text/xml")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_UPSTREAM
    assert outcome.error_lines[0].startswith(f"error: upstream {rig.upstream.url}")
    assert "malformed" in outcome.error_lines[0]
    rig.assert_sound()
    rig.assert_resumes()


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A port whose listen backlog is full: the kernel drops further SYNs, so connecting times out."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        fillers = []
        try:
            for _ in range(8):  # fill the accept queue; later connects stay in SYN_SENT
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(server.getsockname())
                fillers.append(filler)
            yield server.getsockname()[1]
        finally:
            for filler in fillers:
                filler.close()


def test_connect_timeout_exits_3_and_leaves_the_mirror_as_it_was(rig: FaultRig) -> None:
    before = {info.key: info.etag for info in rig.storage.list("")}
    with unanswered_port() as port:
        outcome = rig.mirror(upstream=f"http://127.0.0.1:{port}")
    assert outcome.code == cli.EXIT_UPSTREAM
    assert len(outcome.error_lines) == 1
    assert outcome.error_lines[0].startswith(f"error: upstream http://127.0.0.1:{port}: ")
    assert "timed out" in outcome.error_lines[0].lower() or "timeout" in outcome.error_lines[0].lower()
    assert {info.key: info.etag for info in rig.storage.list("")} == before
    rig.assert_sound(orphans_allowed=False)
