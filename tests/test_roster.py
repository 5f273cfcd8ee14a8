"""Syncs alongside others: the project lease, the published page read once, the state's ETag sent upstream."""

from __future__ import annotations

import io
import threading
import time

import pytest

from sync.config import MirrorConfig
from sync.jobs import Outcome, ProjectJob
from sync.lease import LeaseHeld
from sync.progress import Reporter
from sync.project_sync import ProjectSync
from sync.roster import LeasedProjectSync
from sync.run import publish_root
from sync.state import ProjectState
from sync.storage import open_storage
from sync.upstream import UpstreamClient
from sync.verify import verify_mirror
from tests.test_mirror import CountingStorage
from tests.upstream.server import Fault


def test_two_syncs_of_one_project_at_once_leave_a_sound_mirror(upstream, fake_index, tmp_path):
    dest = str(tmp_path / "mirror")
    storage = open_storage(dest)
    config = MirrorConfig(dest=dest, upstream=upstream.url, workers=2)
    reporter = Reporter(io.StringIO(), json_lines=True)
    syncers = [
        LeasedProjectSync(
            ProjectSync(config, UpstreamClient(upstream.url), storage, reporter), owner=f"w{i}", lease_wait=20
        )
        for i in range(2)
    ]
    for i in range(30):
        fake_index.add_file("Foo_Bar", f"foo_bar-9.{i}.tar.gz", b"x" * 2000 + bytes([i]), version=f"9.{i}")
    upstream.inject(r"/simple/foo-bar/", Fault.delay(0.3), times=1)  # the first sync holds the lease a while
    serial = fake_index.project("Foo_Bar").last_serial
    results = []
    barrier = threading.Barrier(2, timeout=10)

    def one(syncer: LeasedProjectSync) -> None:
        barrier.wait()
        results.append(syncer.sync(ProjectJob("foo-bar", serial)))

    threads = [threading.Thread(target=one, args=(s,)) for s in syncers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(r.outcome for r in results) == sorted([Outcome.UPDATED, Outcome.UNCHANGED])
    publish_root(storage, ["foo-bar"])
    report = verify_mirror(storage)
    assert report.problems == []
    assert report.orphans == []


def test_a_busy_project_is_retried_later_not_synced_alongside(upstream, tmp_path):
    dest = str(tmp_path / "mirror")
    storage = open_storage(dest)
    mirror = ProjectSync(
        MirrorConfig(dest=dest, upstream=upstream.url),
        UpstreamClient(upstream.url),
        storage,
        Reporter(io.StringIO(), json_lines=True),
    )
    holder = LeasedProjectSync(mirror, owner="holder")
    waiter = LeasedProjectSync(mirror, owner="waiter", lease_wait=0.3)
    with holder.project_lease("tiny"):
        started = time.monotonic()
        result = waiter.sync(ProjectJob("tiny"))
        assert time.monotonic() - started < 5
    assert result.outcome is Outcome.FAILED
    assert "project lease" in result.errors[0]
    assert storage.get_bytes("simple/tiny/index.html") is None
    assert waiter.sync(ProjectJob("tiny")).outcome is Outcome.UPDATED  # once the lease is free


def test_a_project_lease_is_refused_while_held(upstream, tmp_path):
    storage = open_storage(str(tmp_path / "mirror"))
    mirror = ProjectSync(
        MirrorConfig(dest=str(tmp_path / "mirror"), upstream=upstream.url),
        UpstreamClient(upstream.url),
        storage,
        Reporter(io.StringIO(), json_lines=True),
    )
    with LeasedProjectSync(mirror, owner="holder").project_lease("tiny"), pytest.raises(LeaseHeld, match="holder"):
        LeasedProjectSync(mirror, owner="other", lease_wait=0).project_lease("tiny")


def test_a_worker_reads_the_published_page_once_and_sends_the_states_etag(upstream, fake_index, tmp_path):
    storage = CountingStorage(open_storage(str(tmp_path / "mirror")))
    config = MirrorConfig(dest=str(tmp_path / "mirror"), upstream=upstream.url)
    syncer = LeasedProjectSync(
        ProjectSync(config, UpstreamClient(upstream.url), storage, Reporter(io.StringIO(), json_lines=True)),
        owner="w",
    )
    first = syncer.sync(ProjectJob("tiny"))
    assert first.outcome is Outcome.UPDATED
    upstream.reset_log()
    storage.reset()
    again = syncer.sync(ProjectJob("tiny", first.serial, known=ProjectState(first.serial, first.etag)))
    assert again.outcome is Outcome.UNCHANGED
    assert [r.status for r in upstream.requests if r.path == "/simple/tiny/"] == [304]
    assert storage.calls["get_bytes"] == 1
    fake_index.add_file("tiny", "tiny-7.0.tar.gz", b"tiny seven", version="7.0")
    storage.reset()
    changed = syncer.sync(ProjectJob("tiny", known=ProjectState(first.serial, first.etag)))
    assert changed.outcome is Outcome.UPDATED
    assert storage.calls["get_bytes"] == 1  # the page read under the lease is the one the new page is written over
