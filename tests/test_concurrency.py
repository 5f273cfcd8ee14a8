"""Concurrency: two runs on one destination (exactly one proceeds, the other is refused by the lease), and the same
project synced twice at once, as a queue delivering it twice would (the mirror stays sound)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sync.cli import EXIT_LEASE_HELD, EXIT_OK
from sync.config import MirrorConfig
from sync.jobs import Outcome, ProjectJob, ProjectResult
from sync.lease import LeaseHeld
from sync.progress import Reporter
from sync.run import RunResult, SyncRun, publish_root
from sync.storage import Storage, open_storage
from sync.upstream import UpstreamClient
from sync.verify import verify_mirror
from tests.upstream.index import FakeIndex
from tests.upstream.server import Fault, UpstreamServer

REPO = Path(__file__).resolve().parent.parent
SLOW_FILE = Fault.delay(0.2)  # each download takes this long: the first run still holds the lease when the second asks


@pytest.fixture(params=["folder", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> SimpleNamespace:
    if request.param == "folder":
        return SimpleNamespace(dest=str(tmp_path / "mirror"), endpoint_url=None)
    s3 = request.getfixturevalue("s3_dest")
    return SimpleNamespace(dest=s3.dest, endpoint_url=s3.endpoint_url)


def new_mirror(upstream: UpstreamServer, destination: SimpleNamespace) -> SyncRun:
    """A run (the CLI's) with its own client, storage connection and reporter, as a separate process would have."""
    config = MirrorConfig(
        dest=destination.dest, upstream=upstream.url, endpoint_url=destination.endpoint_url, workers=4
    )
    client = UpstreamClient(
        config.upstream, max_connections=4, retries=2, backoff=0.01, file_hosts=config.allowed_file_hosts
    )
    storage = open_storage(destination.dest, endpoint_url=destination.endpoint_url)
    return SyncRun.local(config, client, storage, Reporter(io.StringIO(), json_lines=True))


def storage_of(destination: SimpleNamespace) -> Storage:
    return open_storage(destination.dest, endpoint_url=destination.endpoint_url)


def assert_sound(storage: Storage) -> None:
    report = verify_mirror(storage)
    assert report.problems == []
    assert report.pending == []
    assert report.orphans == []


def at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` in threads released together; each result is a return value or the exception raised."""
    barrier = threading.Barrier(len(calls))

    def call(function: Callable[[], Any]) -> Any:
        barrier.wait(timeout=10)
        try:
            return function()
        except Exception as error:  # the caller asserts on it
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))


def test_two_runs_on_one_destination_exactly_one_proceeds(
    upstream: UpstreamServer, destination: SimpleNamespace
) -> None:
    upstream.inject(r"^/packages/", SLOW_FILE, times=1000)
    first, second = new_mirror(upstream, destination), new_mirror(upstream, destination)
    try:
        outcomes = at_once(lambda: first.run(owner="run-a"), lambda: second.run(owner="run-b"))
    finally:
        first.close()
        second.close()
    finished = [o for o in outcomes if isinstance(o, RunResult)]
    refused = [o for o in outcomes if isinstance(o, LeaseHeld)]
    assert (len(finished), len(refused)) == (1, 1), outcomes
    assert finished[0].failed == []
    winner = "run-a" if outcomes[0] is finished[0] else "run-b"
    assert repr(winner) in str(refused[0])
    assert_sound(storage_of(destination))


def test_two_cli_runs_at_once_exit_0_and_5(upstream: UpstreamServer, tmp_path: Path) -> None:
    upstream.inject(r"^/packages/", SLOW_FILE, times=1000)
    command = [sys.executable, "-m", "sync", "mirror", "--upstream", upstream.url, "--dest", str(tmp_path / "m")]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)
    ]
    results = [(process.pid, *process.communicate(timeout=120), process.returncode) for process in processes]
    assert sorted(code for *_, code in results) == [EXIT_OK, EXIT_LEASE_HELD]
    (winner_pid, *_), (_, _, loser_stderr, _) = sorted(results, key=lambda result: result[3])
    errors = [line for line in loser_stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert f":{winner_pid}'" in errors[0]  # names the run holding the lease (host:pid)
    assert "Traceback" not in loser_stderr
    assert_sound(open_storage(str(tmp_path / "m")))


def sync_twice_at_once(upstream: UpstreamServer, destination: SimpleNamespace, name: str) -> list[ProjectResult]:
    workers = [new_mirror(upstream, destination) for _ in range(2)]
    try:
        return at_once(*(lambda worker=worker: worker.core.sync(ProjectJob(name)) for worker in workers))
    finally:
        for worker in workers:
            worker.close()


def test_the_same_project_delivered_twice_at_once(
    upstream: UpstreamServer, fake_index: FakeIndex, destination: SimpleNamespace
) -> None:
    """Both store the files; one publishes, the other publishes the same page or loses the race for it (failed,
    to be retried: the queue redelivers it)."""
    names = [project.normalized for project in fake_index.projects()]
    for name in names:
        results = sync_twice_at_once(upstream, destination, name)
        assert all(isinstance(r, ProjectResult) for r in results), results
        published = [r for r in results if r.outcome in (Outcome.UPDATED, Outcome.UNCHANGED)]
        lost = [r for r in results if r.outcome is Outcome.FAILED]
        assert len(published) >= 1, results
        assert all("another run published the project meanwhile" in r.errors[0] for r in lost), results
    publish_root(storage_of(destination), names)
    assert_sound(storage_of(destination))


def test_the_same_project_delivered_twice_across_a_change(
    upstream: UpstreamServer, fake_index: FakeIndex, destination: SimpleNamespace
) -> None:
    """Worker A reads the page, then downloads a new file slowly; meanwhile upstream deletes an old file and worker B
    publishes the newer page and deletes that file. A must not then publish its older page naming the deleted file."""
    project = fake_index.projects()[0]
    initial = new_mirror(upstream, destination)
    assert initial.core.sync(ProjectJob(project.normalized)).outcome is Outcome.UPDATED
    publish_root(storage_of(destination), [project.normalized])
    initial.close()
    added = fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"9.0" * 1000, version="9.0")
    upstream.inject(rf"^{added.url_path}$", Fault.delay(1.5), times=1)
    slow, fast = new_mirror(upstream, destination), new_mirror(upstream, destination)
    try:
        with ThreadPoolExecutor(1) as pool:
            slow_result = pool.submit(slow.core.sync, ProjectJob(project.normalized))
            deadline = time.monotonic() + 10
            while upstream.pending_faults() and time.monotonic() < deadline:  # A is now inside its slow download
                time.sleep(0.01)
            fake_index.remove_file(project.name, project.files[0].filename)
            fast_result = fast.core.sync(ProjectJob(project.normalized))
            results = [slow_result.result(timeout=30), fast_result]
    finally:
        slow.close()
        fast.close()
    assert_sound(storage_of(destination))
    assert fast_result.outcome is Outcome.UPDATED
    assert results[0].outcome in (Outcome.FAILED, Outcome.UNCHANGED), results[0]
    page = storage_of(destination).get_bytes(f"simple/{project.normalized}/index.v1_json")
    assert page is not None
    assert project.files[0].filename.encode() not in page[0]
