"""Audit a mirror: every link of every page resolves to a stored object with the sha256 (and size) the page says;
two pages naming one key with different digests is a conflict; objects no page names are listed as orphans.

While the destination's lease exists a run is writing, or died writing: the root listing and a project's second page
may then lag behind what is stored; so may the two pages of a project the last run failed (the next run retries it).
Those are reported as pending, not as problems; a page naming a missing or wrong object is a problem whatever the
lease or the state says.

Memory does not grow with the mirror. The page pass reads project pages in key order and spills each page's claims
to disk (sync/claims.py); the object pass merges the claims, sorted by key, with the stored listing, also in key
order. Modes: `checksum` compares the sha256 the destination recorded at write time (S3: one HeadObject per object;
objects that have none, and a random `rehash_sample`, are re-hashed); `rehash` reads every byte; `sizes` compares
the listing's sizes only. Requests run on at most `workers` threads, results are taken in key order, so a checkpoint
is one project name and one key (sync/verify_progress.py). Shards split the object pass by key; sharing a folder
(sync/verify_share.py), they split the page pass by project as well. With `reclaim`, orphans old enough are deleted
(or, in a dry run, listed) as they are found: sync/reclaim.py says when that is safe.
"""

from __future__ import annotations

import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from sync.claims import KeyClaims, Shard, grouped
from sync.layout import FILES_PREFIX, LEASE_KEY
from sync.reclaim import Reclaim
from sync.storage import ObjectInfo, Storage, StorageError, sha256_of
from sync.verify_pages import ProjectOutcome, RootCheck, project_dirs, read_project, retrying
from sync.verify_progress import Checkpoint, VerifyProgress
from sync.verify_share import WAIT_SECONDS, SharedPages

KEPT_LINES = 10_000  # findings of each kind kept in the report; all are counted and passed to `on_finding`
MAX_WORKERS = 64

Item = TypeVar("Item")
Result = TypeVar("Result")


class Mode(StrEnum):
    CHECKSUM = "checksum"
    REHASH = "rehash"
    SIZES = "sizes"


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)  # orphans deleted (a dry run: that would be)
    pending: list[str] = field(default_factory=list)  # what an unfinished run leaves for the next run to complete
    counts: Counter[str] = field(default_factory=Counter)  # findings by kind, and the work done (see `totals`)
    unfinished: bool = False  # the lease exists: a run is writing, or died writing
    retrying: frozenset[str] = frozenset()  # projects the last run failed, which the next run retries
    on_finding: Callable[[str, str], None] | None = None  # (kind, line) of each finding as it is made

    @property
    def sound(self) -> bool:
        return not self.counts["problem"]

    @property
    def projects(self) -> int:
        return self.counts["projects"]

    @property
    def objects_checked(self) -> int:
        return self.counts["objects"]

    def add(self, kind: str, line: str) -> None:
        """A finding: "problem", "orphan", "pending", or "reclaimed" ("reclaimable" in a dry run)."""
        self.counts[kind] += 1
        kept = {"problem": self.problems, "orphan": self.orphans, "pending": self.pending}.get(kind, self.reclaimed)
        if len(kept) < KEPT_LINES:
            kept.append(line)
        if self.on_finding is not None:
            self.on_finding(kind, line)

    def lagging(self, message: str, project: str | None = None) -> None:
        """A page or listing behind what is stored: pending while a run is unfinished or the project awaits its
        retry, else a problem."""
        self.add("pending" if self.unfinished or project in self.retrying else "problem", message)


def verify_mirror(
    storage: Storage,
    *,
    mode: Mode = Mode.REHASH,
    rehash_sample: float = 0.0,
    workers: int = 8,
    shard: Shard | None = None,
    checkpoint: Path | None = None,
    on_finding: Callable[[str, str], None] | None = None,
    progress: VerifyProgress | None = None,
    reclaim: Reclaim | None = None,
    share: Path | None = None,
    share_wait: float = WAIT_SECONDS,
) -> VerifyReport:
    """Check every page's links against the stored objects (see the module doc for the modes).

    With `checkpoint` (a local folder) the verify saves how far it got and, run again with the same destination,
    mode and shard, resumes there. Raises CheckpointError for another verify's checkpoint. With `reclaim`, orphans
    are reclaimed as it says (sync/reclaim.py). With `share`, a folder all shards reach, the shards share one page
    pass (sync/verify_share.py), waiting up to `share_wait` seconds for each other; raises ShareError past it.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers {workers}: expected 1 to {MAX_WORKERS}")
    if not 0.0 <= rehash_sample <= 1.0:
        raise ValueError(f"rehash sample {rehash_sample}: expected a share from 0 to 1")
    shard = shard or Shard()
    identity = {"dest": storage.describe(), "mode": str(mode), "shard": str(shard)}
    if reclaim is not None:
        identity["reclaim"] = "delete" if reclaim.delete else "dry-run"
    shared = SharedPages(share, shard, storage.describe(), wait_seconds=share_wait) if share else None
    if shared is not None:
        identity["share"] = str(share)
    saved = Checkpoint(
        checkpoint, identity, claims=shared.claims_dir() if shared else None, parts=shard.count if shared else 1
    )
    report = VerifyReport(
        unfinished=storage.head(LEASE_KEY) is not None, retrying=retrying(storage), on_finding=on_finding
    )
    report.counts.update(saved.saved.get("counts", {}))
    run = _Run(
        storage,
        report=report,
        checkpoint=saved,
        progress=progress,
        shard=shard,
        workers=workers,
        reclaim=reclaim,
        shared=shared,
    )
    try:
        if not saved.saved.get("pages_done"):
            run.check_pages(saved.saved.get("pages_after") or "")
        run.check_objects(saved.saved.get("objects_after") or "", mode, rehash_sample)
        run.save(done=True)
    except KeyboardInterrupt:
        run.save()
        raise
    finally:
        saved.close()
    if progress is not None:
        progress.summary(run.totals())
    return report


class _Run:
    """One verify's passes, and what it saves and shows as it goes."""

    def __init__(
        self,
        storage: Storage,
        *,
        report: VerifyReport,
        checkpoint: Checkpoint,
        progress: VerifyProgress | None,
        shard: Shard,
        workers: int,
        reclaim: Reclaim | None,
        shared: SharedPages | None,
    ):
        self.storage, self.report, self.checkpoint, self.progress = storage, report, checkpoint, progress
        self.shard, self.workers, self.shared = shard, workers, shared
        self.phase = "pages"
        self.position: dict[str, Any] = {
            key: checkpoint.saved.get(key) for key in ("pages_after", "pages_done", "objects_after", "pages_started")
        }
        self.reclaim = reclaim
        self.started_objects = report.counts["objects"]  # checked before a resume: not this run's work
        self.started = time.monotonic()

    def check_pages(self, after: str) -> None:
        """Read each project's pages in key order; spill their claims; check the pages and the root listing (the
        root: the first shard only). Unshared, the other shards read the JSON pages for their claims and nothing
        else; shared, each shard reads and checks the pages of the projects it owns, and spills all their claims."""
        shared, shard, spill = self.shared, self.shard, self.checkpoint.spill
        full = shard.first or shared is not None
        if self.position["pages_started"] is None:  # a resumed verify keeps the first start: older is safer
            self.position["pages_started"] = self.reclaim.clock() if self.reclaim else time.time()
        if shared is not None:
            shared.begin()

        def read(item: tuple[str, frozenset[str]]) -> ProjectOutcome | None:
            if shared is not None and not shard.owns(item[0]):
                return None  # another shard's
            return read_project(self.storage, *item, full=full)

        dirs = project_dirs(self.storage, after)
        root = RootCheck(self.storage, self.report, after) if shard.first else None
        for (name, found), outcome in _in_order(dirs, read, self.workers):
            if root is not None:
                root.seen(name, quarantined=partial(_quarantined, outcome, self.storage, name, found))
            if outcome is None:
                self.position["pages_after"] = name
                continue
            for kind, line, project in outcome.findings:
                self.report.lagging(line, project) if kind == "lagging" else self.report.add(kind, line)
            for claim in outcome.claims:
                if shared is not None or shard.holds(claim.key):
                    spill.add(claim)
            self.report.counts["projects"] += 1
            self.position["pages_after"] = name
            self._tick()
        if root is not None:
            root.finish()
        self.position["pages_done"] = True
        self.save()
        if self.progress is not None:
            self.progress.update(self.totals(), force=True)  # the page pass's own totals: its projects and CPU
        if shared is not None:
            spill.flush()  # a verify without a checkpoint saves nothing, but the other shards need every claim
            shared.finish(spill.runs, self.position["pages_started"])

    def check_objects(self, after: str, mode: Mode, rehash_sample: float) -> None:
        """Merge the claims with the stored listing, key by key; check each named object as `mode` says."""
        self.phase = "objects"
        lower, upper = self.shard.bounds()
        after = max(lower, after)
        sample = random.Random()  # noqa: S311 - picks a sample, keeps no secret
        pages_started = self.position["pages_started"]
        if self.shared is None:
            claims = self.checkpoint.spill.grouped(after, upper)
        else:
            marks = self.shared.wait()
            pages_started = min(mark["pages_started"] for mark in marks)  # the oldest read of a page bounds reclaim
            claims = grouped(self.shared.runs(marks), after, upper)
        joined = _join(claims, _stored(self.storage, after, upper))

        def request(item: tuple[str, KeyClaims | None, ObjectInfo | None]) -> list[tuple[str, str | None]]:
            key, claims, info = item
            if claims is None or info is None or mode is Mode.SIZES or _wrong_size(claims, info):
                return []
            return _digests(self.storage, key, mode, sample.random() < rehash_sample)

        reclaim = self.reclaim
        cutoff = reclaim.cutoff(pages_started) if reclaim else 0.0
        for (key, claims, info), digests in _in_order(joined, request, self.workers):
            _judge(self.report, key, claims, info, digests)
            orphan = info if claims is None else None
            if reclaim and orphan and (line := reclaim.orphan(self.storage, orphan, cutoff, self.report.counts)):
                self.report.add(reclaim.done, line)
            self.position["objects_after"] = key
            self._tick()

    def totals(self) -> dict[str, Any]:
        counts = self.report.counts
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = (counts["objects"] - self.started_objects) / seconds
        return {
            "phase": self.phase,
            "shard": str(self.shard),
            "projects": counts["projects"],
            "objects": counts["objects"],
            "checksums": counts["checksums"],
            "rehashed": counts["rehashed"],
            "problems": counts["problem"],
            "orphans": counts["orphan"],
            "pending": counts["pending"],
            **(self.reclaim.totals(counts) if self.reclaim else {}),
            "seconds": round(seconds, 1),
            "cpu_seconds": round(time.process_time(), 1),
            "objects_per_second": round(rate, 1),
        }

    def save(self, *, done: bool = False) -> None:
        self.checkpoint.save({**self.position, "counts": dict(self.report.counts), "done": done})

    def _tick(self) -> None:
        if self.progress is not None:
            self.progress.update(self.totals())
        if self.checkpoint.due():
            self.save()


def _in_order(items: Iterable[Item], work: Callable[[Item], Result], workers: int) -> Iterator[tuple[Item, Result]]:
    """(item, work(item)) in the order of `items`, `workers` at a time; at most 2 x workers items are held."""
    window: deque[tuple[Item, Future[Result]]] = deque()
    with ThreadPoolExecutor(workers) as pool:
        for item in items:
            window.append((item, pool.submit(work, item)))
            if len(window) >= 2 * workers:
                first, future = window.popleft()
                yield first, future.result()
        for item, future in window:
            yield item, future.result()


def _quarantined(outcome: ProjectOutcome | None, storage: Storage, name: str, found: frozenset[str]) -> bool:
    """Whether project `name` is quarantined, from its outcome; one another shard read is read here (rarely: only
    an unlisted project is asked about)."""
    return (outcome or read_project(storage, name, found, full=False)).quarantined


def _stored(storage: Storage, after: str, upper: str | None) -> Iterator[ObjectInfo]:
    for info in storage.list(FILES_PREFIX, start_after=after):
        if upper is not None and info.key > upper:
            return
        yield info


def _join(
    groups: Iterator[KeyClaims], stored: Iterator[ObjectInfo]
) -> Iterator[tuple[str, KeyClaims | None, ObjectInfo | None]]:
    """Both streams in key order, merged: (key, its claims or None, the stored object or None)."""
    group, info = next(groups, None), next(stored, None)
    while group is not None or info is not None:
        if info is None or (group is not None and group.key < info.key):
            assert group is not None
            yield group.key, group, None
            group = next(groups, None)
        elif group is None or info.key < group.key:
            yield info.key, None, info
            info = next(stored, None)
        else:
            yield info.key, group, info
            group, info = next(groups, None), next(stored, None)


def _wrong_size(claims: KeyClaims, info: ObjectInfo) -> bool:
    return any(size is not None and size != info.size for _, size in claims.distinct)


def _digests(storage: Storage, key: str, mode: Mode, sampled: bool) -> list[tuple[str, str | None]]:
    """(source, sha256) of what is stored at `key`: the recorded checksum and/or the bytes re-hashed."""
    found: list[tuple[str, str | None]] = []
    try:
        if mode is Mode.CHECKSUM:
            recorded = storage.stored_sha256(key)
            if recorded is None:
                return [("gone", None)]
            if recorded[1] is not None:
                found.append(("checksum", recorded[1]))
        if not found or sampled:
            found.append(("bytes", sha256_of(storage, key)))
    except StorageError as error:  # botocore also raises when the bytes do not match the recorded checksum
        found.append(("bytes", f"unreadable ({error})"))
    return found


def _judge(
    report: VerifyReport,
    key: str,
    claims: KeyClaims | None,
    info: ObjectInfo | None,
    digests: list[tuple[str, str | None]],
) -> None:
    """Every claim on `key` against what is stored there."""
    if claims is None:
        report.add("orphan", key)
        return
    named = {sha256: project for (sha256, _), project in claims.distinct.items()}
    if len(named) > 1 or claims.unnamed:
        says = ", ".join(f"simple/{project}/ says {sha256}" for sha256, project in named.items())
        more = f" and {claims.unnamed} more" if claims.unnamed else ""
        report.add("problem", f"conflicting claims: {key}: {says}{more}")
    gone = info is None or any(source == "gone" for source, _ in digests)
    for (_, size), project in claims.distinct.items():
        if gone:
            report.add("problem", f"missing: simple/{project}/ names {key}, which is not stored")
        elif info is not None and size is not None and info.size != size:
            report.add("problem", f"wrong size: {key} is {info.size} bytes, simple/{project}/ says {size}")
    if gone:
        return
    report.counts["objects"] += 1
    for source, digest in digests:
        report.counts["checksums" if source == "checksum" else "rehashed"] += 1
        for sha256, project in named.items():
            if digest != sha256:
                how = "S3 recorded sha256" if source == "checksum" else "hashes to"
                report.add("problem", f"wrong sha256: {key} {how} {digest}, simple/{project}/ says {sha256}")
