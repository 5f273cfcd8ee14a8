"""Claims: what each page says a `packages/` object is, sorted by key on disk, so that every link of every page is
audited against the stored listing in bounded memory whatever the mirror's size.

Pages are read in project order, but their objects' keys are spread over the whole key space. Each claim is a line
`key<TAB>sha256<TAB>size<TAB>project`; lines are sorted in runs of RUN_CLAIMS in memory, written to disk, and merged
on reading (heapq.merge over the run files). Keys and project names hold no control character (the page parser
refuses them), so a line sorts as its key, then its sha256, then its project.
"""

from __future__ import annotations

import heapq
import os
import re
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sync.layout import FILES_PREFIX
from sync.models import ProjectPage
from sync.provenance import provenance_objects

RUN_CLAIMS = 100_000  # lines sorted in memory at once: ~25 MB of Python bytes
READ_BUFFER = 64 * 1024  # per run file while merging: 10 million claims are ~100 runs, ~6 MB of buffers
DISTINCT_KEPT = 8  # different (sha256, size) claims kept per key; more are counted, not named
SHARD_FORMAT = re.compile(r"\A(\d+)/(\d+)\Z")
MAX_SHARDS = 256


@dataclass(frozen=True)
class Claim:
    key: str
    sha256: str
    size: int | None  # None where the page gives none (core metadata files)
    project: str

    def line(self) -> bytes:
        size = "" if self.size is None else str(self.size)
        return f"{self.key}\t{self.sha256}\t{size}\t{self.project}\n".encode()

    @classmethod
    def from_line(cls, line: bytes) -> Claim:
        key, sha256, size, project = line.decode().rstrip("\n").split("\t")
        return cls(key, sha256, int(size) if size else None, project)


def claims_of(page: ProjectPage) -> Iterator[Claim]:
    """Every object the page names, as sync.files.objects_named counts them (but one claim per link): each file,
    its core metadata and its provenance document when mirrored."""
    for dist in page.files:
        yield Claim(dist.key, dist.sha256, dist.size, page.normalized)
        if dist.has_metadata and dist.metadata_sha256:
            yield Claim(dist.metadata_key, dist.metadata_sha256, None, page.normalized)
    for key, sha256 in provenance_objects(page):
        yield Claim(key, sha256, None, page.normalized)


@dataclass
class KeyClaims:
    """All claims on one key: the distinct (sha256, size) pairs, each with the first project naming it."""

    key: str
    distinct: dict[tuple[str, int | None], str] = field(default_factory=dict)
    claims: int = 0  # every claim, identical ones included
    unnamed: int = 0  # distinct claims past DISTINCT_KEPT, counted only

    def add(self, claim: Claim) -> None:
        self.claims += 1
        pair = (claim.sha256, claim.size)
        if pair in self.distinct:
            return
        if len(self.distinct) < DISTINCT_KEPT:
            self.distinct[pair] = claim.project
        else:
            self.unnamed += 1

    @property
    def digests(self) -> set[str]:
        return {sha256 for sha256, _ in self.distinct}


class ClaimSpill:
    """Claims added in any order, read back sorted by key. The runs live in `directory`: the first `keep` runs
    already there (what an interrupted verify's checkpoint counts) are part of the spill, any later ones are removed.
    With `parts` > 1 each run is written as one file per shard of the key space (`run-N.part-J`), so that shard J of
    a sharded verify merges only its keys (`part_runs`)."""

    def __init__(self, directory: Path, *, keep: int = 0, run_claims: int = RUN_CLAIMS, parts: int = 1):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.run_claims, self.parts = run_claims, parts
        self._run: list[bytes] = []
        self._runs = keep
        kept = {path for index in range(keep) for path in self._files(index)}
        if missing := sorted(path.name for path in kept if not path.exists()):
            raise FileNotFoundError(f"{directory}: claim runs {', '.join(missing)} are missing")
        for path in set(directory.glob("run-*")) - kept:
            path.unlink()

    @property
    def runs(self) -> int:
        return self._runs

    def _files(self, index: int) -> list[Path]:
        return [run_path(self.directory, index, part, self.parts) for part in range(self.parts)]

    def part_runs(self, part: int) -> list[Path]:
        """The run files holding the claims of shard `part` of `parts`."""
        return [self._files(index)[part] for index in range(self._runs)]

    def add(self, claim: Claim) -> None:
        self._run.append(claim.line())
        if len(self._run) >= self.run_claims:
            self.flush()

    def flush(self) -> None:
        """Write the claims held in memory as one sorted run (atomically: a crash leaves no half run)."""
        if not self._run:
            return
        self._run.sort()
        # a line sorts as its key; `upto\t\xff` sorts after the lines of key `upto` and before any longer key
        ends = [bisect_right(self._run, upto.encode() + b"\t\xff") for upto in _upper_bounds(self.parts)]
        starts = [0, *ends]
        for path, start, end in zip(self._files(self._runs), starts, [*ends, len(self._run)], strict=True):
            temp = path.with_name(path.name + ".tmp")
            with temp.open("wb") as out:
                out.writelines(self._run[start:end])
                out.flush()
                os.fsync(out.fileno())
            temp.replace(path)
        self._runs += 1
        self._run.clear()

    def clear(self) -> None:
        for path in [*self.directory.glob("run-*")]:
            path.unlink(missing_ok=True)
        self._runs, self._run = 0, []

    def grouped(self, after: str = "", upto: str | None = None) -> Iterator[KeyClaims]:
        """The claims of each key in (after, upto], in key order; flushes what is held in memory first."""
        self.flush()
        return grouped([path for part in range(self.parts) for path in self.part_runs(part)], after, upto)


def run_path(directory: Path, index: int, part: int = 0, parts: int = 1) -> Path:
    """Run `index` of a spill in `directory`; split in `parts`, its file for shard `part`."""
    return directory / (f"run-{index:06d}" if parts == 1 else f"run-{index:06d}.part-{part:03d}")


def _upper_bounds(parts: int) -> list[str]:
    """The upper bound of each shard of `parts` but the last (which has none)."""
    return [str(Shard(part, parts).bounds()[1]) for part in range(parts - 1)]


def grouped(runs: list[Path], after: str = "", upto: str | None = None) -> Iterator[KeyClaims]:
    """The claims in the sorted run files `runs`, merged: those of each key in (after, upto], in key order."""
    files = [path.open("rb", buffering=READ_BUFFER) for path in runs]
    try:
        group: KeyClaims | None = None
        for line in heapq.merge(*files):
            claim = Claim.from_line(line)
            if claim.key <= after:
                continue
            if upto is not None and claim.key > upto:
                break
            if group is None or group.key != claim.key:
                if group is not None:
                    yield group
                group = KeyClaims(claim.key)
            group.add(claim)
        if group is not None:
            yield group
    finally:
        for file in files:
            file.close()


@dataclass(frozen=True)
class Shard:
    """Part `index` of `count` of the packages/ key space: contiguous key ranges cut at the first two hex digits of
    PyPI's `packages/<xx>/…` layout. Any key falls in exactly one shard, whatever its layout."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`i/n`, counting from 0: `0/4` … `3/4`."""
        found = SHARD_FORMAT.match(text)
        if not found or not 0 <= int(found[1]) < int(found[2]) <= MAX_SHARDS:
            raise ValueError(f"shard {text!r}: expected I/N with 0 <= I < N <= {MAX_SHARDS}")
        return cls(int(found[1]), int(found[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def first(self) -> bool:
        """The shard that also checks the pages themselves and the root listing."""
        return self.index == 0

    def holds(self, key: str) -> bool:
        after, upto = self.bounds()
        return after < key and (upto is None or key <= upto)

    def owns(self, project: str) -> bool:
        """Whether this shard reads `project`'s pages when the shards share their page pass (a stable hash)."""
        return zlib.crc32(project.encode()) % self.count == self.index

    def bounds(self) -> tuple[str, str | None]:
        """(after, upto): the shard holds the keys k with after < k <= upto (no upper bound when None)."""
        return self._cut(self.index), self._cut(self.index + 1) if self.index + 1 < self.count else None

    def _cut(self, index: int) -> str:
        return f"{FILES_PREFIX}{index * 256 // self.count:02x}" if index else ""
