"""kill -9 at seeded random points of `python -m sync mirror`, then `verify`, then a fresh run that resumes.

Each trial mirrors a ~50 MB corpus (a run takes about a second) into its own folder from its own upstream server, so
request counts are per trial. After the kill: every page names only objects present with the right hash, and every
visible object is whole. The killed run's lease blocks the next run (exit 5, one line naming the holder) until it
expires — 10 s, the shortest the config allows — then a fresh run takes over, completes, leaves the mirror sound with
no orphan, and downloads only what was not stored yet. Trials run in parallel threads so the lease waits overlap.
"""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from sync.cli import EXIT_LEASE_HELD, EXIT_OK
from sync.folder_storage import FolderStorage
from sync.layout import LEASE_KEY
from sync.storage import TEMP_FILE
from sync.verify import verify_mirror
from tests.test_faults_upstream import assert_whole, objects_of
from tests.upstream.corpus import build_corpus
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

REPO = Path(__file__).resolve().parent.parent
TRIALS = 24
PARALLEL_TRIALS = TRIALS  # all at once: the lease waits overlap
LEASE_TTL = 10  # seconds: MirrorConfig's minimum
TRIAL_CONFIG = f"lease_ttl = {LEASE_TTL}\nworkers = 2\n"
EARLY_KILLS = 0.2  # share of trials killed while the process starts, before it plans
RUN_TIMEOUT = 60


@dataclass
class Trial:
    """What one kill trial saw; `problems` lists every broken expectation."""

    seed: int
    projects_before_kill: int = -1  # projects the run had published when killed (-1: killed while starting)
    kill_after: float = 0.0  # seconds after that point
    stored_at_kill: int = 0
    lease_blocked: bool = False
    downloads_on_resume: int = 0
    temp_files_left: int = 0  # invisible uploads the killed run had in progress, still on disk
    pending_after_kill: list[str] = field(default_factory=list)  # what `verify` saw the next run must complete
    problems: list[str] = field(default_factory=list)

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)


@dataclass(frozen=True)
class Corpus:
    index: FakeIndex
    objects: dict[str, str]  # key -> sha256
    projects: int


def mirror_command(upstream: UpstreamServer, dest: Path, config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sync",
        "mirror",
        "--upstream",
        upstream.url,
        "--dest",
        str(dest),
        "--config",
        str(config),
        "--log-format",
        "json",
    ]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO, check=False)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    index = FakeIndex()
    stats = build_corpus(index, projects=16, files_per_project=(2, 5), seed=7, large_files=8, large_size=8 * 2**20)
    return Corpus(index, objects_of(index), stats.projects)


def wait_for_events(process: subprocess.Popen[str], events: list[str]) -> bool:
    """Read the run's JSON event lines until it has emitted `events` in order; False if it ended first."""
    assert process.stderr is not None
    deadline = time.monotonic() + RUN_TIMEOUT
    waiting = list(events)
    while waiting and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            return False
        if f'"event": "{waiting[0]}"' in line:
            waiting.pop(0)
    return not waiting


def stored_keys(storage: FolderStorage) -> set[str]:
    return {info.key for info in storage.list("packages/")}


def lease_expiry(storage: FolderStorage) -> float | None:
    found = storage.get_bytes(LEASE_KEY)
    if found is None:
        return None
    return datetime.fromisoformat(json.loads(found[0])["expires_at"].replace("Z", "+00:00")).timestamp()


def kill(trial: Trial, rng: random.Random, command: list[str], projects: int) -> str:
    """Start the run and SIGKILL it at a seeded point: while starting, or just after the k-th project is published
    (k = 0: once it planned; k = all: while it publishes the root and saves its state). Returns its lease owner."""
    early = rng.random() < EARLY_KILLS
    trial.projects_before_kill = -1 if early else rng.randint(0, projects)
    trial.kill_after = round(rng.uniform(0.05, 0.4) if early else rng.uniform(0, 0.05), 3)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        if early or wait_for_events(process, ["plan"] + ["project_synced"] * trial.projects_before_kill):
            time.sleep(trial.kill_after)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=RUN_TIMEOUT)
    finally:
        assert process.stderr is not None
        process.stderr.close()
    return f"{socket.gethostname()}:{process.pid}"


def quiesce(upstream: UpstreamServer) -> None:
    """Wait until the upstream has logged what the killed run had in flight, so the log then holds only new runs."""
    deadline = time.monotonic() + 5
    logged = -1
    while logged != len(upstream.requests) and time.monotonic() < deadline:
        logged = len(upstream.requests)
        time.sleep(0.2)


def lease_owner(storage: FolderStorage) -> str | None:
    found = storage.get_bytes(LEASE_KEY)
    return None if found is None else json.loads(found[0])["owner"]


def kill_trial(corpus: Corpus, root: Path, seed: int) -> Trial:
    trial = Trial(seed)
    dest, config = root / f"trial-{seed}", root / f"trial-{seed}.toml"
    config.write_text(TRIAL_CONFIG)
    with UpstreamServer(corpus.index) as upstream:
        command = mirror_command(upstream, dest, config)
        killed_owner = kill(trial, random.Random(seed), command, corpus.projects)
        if not dest.exists():
            return trial  # killed before it created the destination: nothing to check
        quiesce(upstream)
        storage = FolderStorage(dest)
        stored = stored_keys(storage)
        trial.stored_at_kill = len(stored)

        # At once, the killed run's lease (when it took one) refuses the next run: exit 5, one line naming it.
        upstream.reset_log()
        blocked = run(command)
        trial.lease_blocked = blocked.returncode == EXIT_LEASE_HELD
        if trial.lease_blocked:
            errors = [line for line in blocked.stderr.splitlines() if line.startswith("error: ")]
            trial.expect(len(errors) == 1 and "is leased by" in errors[0], f"lease message: {blocked.stderr!r}")
            trial.expect(upstream.count("/packages/") == 0, "a run refused the lease downloaded files")
        else:
            # A run with nothing to do takes no lease: killed after its last write, the killed run's stays.
            trial.expect(lease_owner(storage) in (None, killed_owner), f"run let in: {blocked.returncode}")

        # What the kill left: `python -m sync verify` passes, and every visible object is whole.
        verified = run([sys.executable, "-m", "sync", "verify", "--dest", str(dest)])
        trial.expect(verified.returncode == EXIT_OK, f"verify after the kill: {verified.stdout}{verified.stderr}")
        trial.pending_after_kill = [line for line in verified.stdout.splitlines() if line.startswith("pending: ")]
        try:
            assert_whole(storage, sorted(stored), corpus.objects)
        except AssertionError as error:
            trial.problems.append(f"after the kill: {error}")
        trial.temp_files_left = sum(1 for path in dest.rglob("*") if TEMP_FILE.match(path.name))

        # Once the lease expires, a fresh run takes over, completes, and downloads only what was not stored.
        expiry = lease_expiry(storage)
        if expiry is not None:
            time.sleep(min(max(expiry - time.time() + 0.05, 0), LEASE_TTL + 1))
        if trial.lease_blocked or expiry is not None:
            upstream.reset_log()
            resumed = run(command)
        else:
            resumed = blocked
        trial.expect(resumed.returncode == EXIT_OK, f"fresh run exit {resumed.returncode}: {resumed.stderr[-500:]}")
        downloads = [r.path.lstrip("/") for r in upstream.requests if r.path.startswith("/packages/")]
        trial.downloads_on_resume = len(downloads)
        missing = set(corpus.objects) - stored
        # A wheel's `.metadata` comes out of the wheel when the wheel is downloaded too (the corpus's wheels hold it).
        expected = {
            key for key in missing if not (key.endswith(".whl.metadata") and key.removesuffix(".metadata") in missing)
        }
        trial.expect(sorted(downloads) == sorted(expected), "downloads are not exactly the rest")
        final = verify_mirror(storage)
        trial.expect(final.problems == [] and final.orphans == [] and final.pending == [], f"verify: {final}")
        trial.expect(stored_keys(storage) == set(corpus.objects), "the resumed mirror lacks objects")
        trial.expect(lease_owner(storage) in (None, killed_owner), "the fresh run left its lease behind")
    return trial


def test_kill_minus_9_at_random_points_then_resume(corpus: Corpus, tmp_path: Path) -> None:
    with ThreadPoolExecutor(PARALLEL_TRIALS) as pool:
        trials = list(pool.map(lambda seed: kill_trial(corpus, tmp_path, seed), range(TRIALS)))
    print("seed  killed after (projects, s)  objects stored  lease blocked  downloads on resume  pending")
    for t in trials:  # shown when the test fails
        print(
            f"{t.seed:4}  {t.projects_before_kill:3}, {t.kill_after:5}  {t.stored_at_kill:14}  {t.lease_blocked!s:13}"
            f"  {t.downloads_on_resume:19}  {len(t.pending_after_kill)}"
        )
    failures = [f"seed {t.seed} (killed after {t.kill_after}s): {t.problems}" for t in trials if t.problems]
    assert failures == []
    # The seeded kill points spread over the run: some before any file, some mid-way, some blocked by the lease.
    assert len(trials) == TRIALS
    assert any(t.stored_at_kill == 0 for t in trials)
    assert any(0 < t.stored_at_kill < len(corpus.objects) for t in trials)
    assert any(t.lease_blocked for t in trials)
