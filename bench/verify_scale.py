"""Benchmark 7: `python -m sync verify` over synthetic mirrors of N objects, on a folder and on S3 (moto).

Each mirror has real pages (sync/render.py) naming small files laid out as PyPI's (tests/synthetic_mirror.py):
`--files` files per project, every other one with its `.metadata`. The folder is written as plain files; the bucket
is loaded straight into moto's in-process backend (each object with its SHA256 recorded, as the mirror's PUTs leave
it) and served by a moto server in this process. The verify runs as a child process (peak RSS and CPU from `wait4`,
bench.compare's wrapper), counting its S3 requests by operation. The table ends with the bytes per object between
the two sizes of a destination and an extrapolation to 10 million objects.
Run: .venv/bin/python -m bench.verify_scale [--folder-sizes 100000,1000000] [--s3-sizes 100000] [--s3-modes rehash]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compare import CREDENTIALS, run_child
from tests.synthetic_mirror import load_moto, write_folder

S3_HEAD_RATE_PER_PREFIX = 5_500  # AWS: "at least 5,500 GET/HEAD requests per second per partitioned prefix"
GET_PRICE_PER_1000 = 0.0004  # S3 Standard, us-east-1: GET and HEAD ($); LIST is billed as PUT
LIST_PRICE_PER_1000 = 0.005
TEN_MILLION = 10_000_000
BUCKETS = itertools.count()
MAX_IN_FLIGHT = 64  # the goal's cap on requests in flight
PYPI_PROJECTS = 930_000
# `python -m sync` with every botocore API call counted by operation (retries are inside one call), written at exit.
COUNTING_CLI = """
import atexit, collections, json, sys
import botocore.client
counts = collections.Counter()
call = botocore.client.BaseClient._make_api_call
def counted(self, operation, params):
    counts[operation] += 1
    return call(self, operation, params)
botocore.client.BaseClient._make_api_call = counted
atexit.register(lambda: open(sys.argv[1], "w").write(json.dumps(counts)))
from sync.cli import main
sys.exit(main(sys.argv[2:]))
"""


@dataclass
class Run:
    dest: str
    objects: int
    mode: str
    seconds: float
    cpu: float
    peak_mb: float
    exit_code: int
    rate: float  # objects per second, as the verify's summary says
    requests: Counter[str] = field(default_factory=Counter)
    load: float = 0.0  # 1-minute load average at the start
    projects: int = 0
    pages_cpu: float = 0.0  # the verify's CPU seconds when its page pass ended (its last "pages" progress line)
    cpu_seconds: float = 0.0  # the verify's own CPU at its summary (process_time: no interpreter start-up)

    def cpu_per_project(self) -> float:
        """Page pass CPU seconds per project: both pages read, checked, their claims spilled."""
        return self.pages_cpu / max(1, self.projects)

    def cpu_per_object(self) -> float:
        """Object pass CPU seconds per object."""
        return (self.cpu_seconds - self.pages_cpu) / max(1, self.objects)


def verify_run(
    dest: str, objects: int, mode: str, work: Path, *, workers: int, endpoint: str | None, shards: int = 1
) -> Run:
    """One verify of `dest`; with `shards` > 1, that many shard processes at once sharing their page pass (their
    wall time the longest, their CPU, requests and projects summed, their peak RSS the largest)."""
    load = os.getloadavg()[0]

    def child(index: int) -> dict[str, Any]:
        return _verify_child(dest, mode, work, workers=workers, endpoint=endpoint, index=index, shards=shards)

    with ThreadPoolExecutor(shards) as pool:
        parts = list(pool.map(child, range(shards)))
    kind = "s3" if dest.startswith("s3://") else "folder"
    seconds = max(part["seconds"] for part in parts)
    checked = sum(part["summary"].get("objects", 0) for part in parts)
    run = Run(
        kind, objects, mode if shards == 1 else f"{mode}/{shards}", seconds, sum(part["cpu"] for part in parts),
        max(part["peak_mb"] for part in parts), max(part["code"] for part in parts),
        parts[0]["summary"].get("objects_per_second", 0.0) if shards == 1 else checked / seconds,
        sum((part["requests"] for part in parts), Counter()), load,
    )  # fmt: skip
    run.projects = sum(part["pages"].get("projects", 0) for part in parts)
    run.pages_cpu = sum(part["pages"].get("cpu_seconds", 0.0) for part in parts)
    run.cpu_seconds = sum(part["summary"].get("cpu_seconds", 0.0) for part in parts)
    print_row(run)
    return run


def _verify_child(
    dest: str, mode: str, work: Path, *, workers: int, endpoint: str | None, index: int, shards: int
) -> dict[str, Any]:
    name = f"{mode}-{index}-of-{shards}"
    counts_path, log = work / f"counts-{name}.json", work / f"verify-{name}.log"
    command = [sys.executable, "-c", COUNTING_CLI, str(counts_path), "verify", "--dest", dest]
    command += ["--mode", mode, "--workers", str(workers), "--log-format", "json"]
    if shards > 1:
        command += ["--shard", f"{index}/{shards}", "--share-pages", str(work / f"share-{mode}")]
    if endpoint:
        command += ["--endpoint-url", endpoint]
    seconds, cpu, peak_mb, code = run_child(command, {**os.environ, **CREDENTIALS}, log, timeout=6 * 3600)
    lines = log.read_text().splitlines()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak_mb,
        "code": code,
        "summary": next((json.loads(line) for line in reversed(lines) if '"event": "summary"' in line), {}),
        "pages": next((json.loads(line) for line in reversed(lines) if '"phase": "pages"' in line), {}),
        "requests": Counter(json.loads(counts_path.read_text())) if counts_path.exists() else Counter(),
    }


HEADER = (
    f"{'dest':6} {'objects':>9} {'mode':8} {'exit':>4} {'wall s':>7} {'CPU s':>6} {'objects/s':>9} "
    f"{'peak RSS MB':>11} {'HEAD':>9} {'GET':>7} {'LIST':>5} {'load':>5} {'ms/project':>10} {'ms/object':>9}"
)


def print_row(run: Run) -> None:
    """One row of the table, printed as soon as its run ends."""
    head, get = run.requests["HeadObject"], run.requests["GetObject"]
    print(
        f"{run.dest:6} {run.objects:>9,} {run.mode:8} {run.exit_code:>4} {run.seconds:>7.1f} {run.cpu:>6.1f} "
        f"{run.rate:>9,.0f} {run.peak_mb:>11.0f} {head:>9,} {get:>7,} {run.requests['ListObjectsV2']:>5,} "
        f"{run.load:>5.1f} {run.cpu_per_project() * 1000:>10.2f} {run.cpu_per_object() * 1000:>9.2f}",
        flush=True,
    )


def folder_runs(objects: int, files: int, workers: int, modes: list[str]) -> list[Run]:
    projects = max(1, objects // (files + files // 2))
    with tempfile.TemporaryDirectory(prefix="verify-scale-") as work:
        root = Path(work) / "mirror"
        started = time.perf_counter()
        count = write_folder(root, projects, files)
        print(f"folder of {count:,} objects written in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return [verify_run(str(root), count, mode, Path(work), workers=workers, endpoint=None) for mode in modes]


def s3_runs(objects: int, files: int, workers: int, modes: list[str], shards: int = 1) -> list[Run]:
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415 - moto loads only for the S3 runs
    from moto.s3.models import s3_backends  # noqa: PLC0415

    from bench.moto_s3 import index_bucket, serve_in_thread  # noqa: PLC0415

    os.environ.update(CREDENTIALS)
    logging.getLogger("waitress").setLevel(logging.ERROR)  # its queue-depth warnings are the load, not news
    projects = max(1, objects // (files + files // 2))
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    with serve_in_thread(backend, threads=workers * shards) as endpoint:
        bucket = f"verify-scale-{objects}-{next(BUCKETS)}"  # moto's buckets outlive a run in this process
        backend.create_bucket(bucket, "us-east-1")
        started = time.perf_counter()
        count = load_moto(backend, bucket, projects, files)
        index_bucket(backend, bucket)
        print(f"bucket of {count:,} objects loaded in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="verify-scale-") as work:
            dest = f"s3://{bucket}"
            return [
                verify_run(dest, count, mode, Path(work), workers=workers, endpoint=endpoint, shards=shards)
                for mode in modes
            ]


def summary(runs: list[Run]) -> None:
    """Bytes per object between sizes, and the extrapolation to 10 million objects."""
    print()
    for dest, mode in sorted({(run.dest, run.mode) for run in runs}):
        sized = sorted((run for run in runs if (run.dest, run.mode) == (dest, mode)), key=lambda run: run.objects)
        if len(sized) >= 2:
            small, big = sized[0], sized[-1]
            slope = (big.peak_mb - small.peak_mb) * 2**20 / (big.objects - small.objects)
            at_ten_million = big.peak_mb + slope * (TEN_MILLION - big.objects) / 2**20
            print(
                f"{dest} {mode}: {slope:.1f} bytes/object from {small.objects:,} to {big.objects:,} objects; "
                f"peak at 10 million objects ~{at_ten_million:.0f} MB"
            )
    checksum = [run for run in runs if run.dest == "s3" and run.mode == "checksum" and run.cpu_seconds]
    if checksum:
        ten_million_at(max(checksum, key=lambda run: run.objects))


def ten_million_at(run: Run) -> None:
    """10 million objects and PyPI's projects, checksum mode on S3, from `run`'s CPU per project and per object."""
    per_project, per_object = run.cpu_per_project(), run.cpu_per_object()
    cpu = PYPI_PROJECTS * per_project + TEN_MILLION * per_object
    shards = int(-(-cpu // 3600))
    gets = 2 * PYPI_PROJECTS
    lists = TEN_MILLION // 1000 + shards * gets // 1000  # each shard lists all of simple/, two keys a project
    shared = TEN_MILLION + gets  # HEADs and page GETs, each page read once (--share-pages)
    unshared = TEN_MILLION + (shards + 1) * PYPI_PROJECTS  # the first shard reads both pages, the others JSON
    cost = shared * GET_PRICE_PER_1000 / 1000 + lists * LIST_PRICE_PER_1000 / 1000
    print(
        f"10 million objects, {PYPI_PROJECTS:,} projects, checksum mode on S3, from the {run.objects:,}-object run:\n"
        f"  CPU: {per_project * 1000:.2f} ms a project (both pages) + {per_object * 1000:.2f} ms an object = "
        f"{cpu / 3600:.1f} CPU-hours: {shards} shards sharing their pages for 1 h, each on a core\n"
        f"  requests, pages shared: {TEN_MILLION:,} HEAD + {gets:,} GET + {lists:,} LIST; at most {MAX_IN_FLIGHT} "
        f"in flight (all shards together) they fit in 1 h if a request takes at most "
        f"{MAX_IN_FLIGHT * 3600 / shared * 1000:.0f} ms on average\n"
        f"  requests, {shards} shards not sharing: {unshared:,} (the first reads both pages, each other one every "
        f"JSON page): at most {MAX_IN_FLIGHT * 3600 / unshared * 1000:.0f} ms a request\n"
        f"  S3's documented {S3_HEAD_RATE_PER_PREFIX:,} HEAD/s per partitioned prefix: "
        f"{TEN_MILLION / S3_HEAD_RATE_PER_PREFIX / 60:.0f} min for one prefix (packages/ spreads over 256)\n"
        f"  cost: ${cost:.2f} at ${GET_PRICE_PER_1000}/1,000 GET/HEAD and ${LIST_PRICE_PER_1000}/1,000 LIST"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--folder-sizes", default="100000,1000000", help="objects per folder mirror (comma-separated)")
    parser.add_argument("--s3-sizes", default="100000", help="objects per moto bucket (comma-separated; '' for none)")
    parser.add_argument("--s3-modes", default="checksum,rehash", help="verify modes run on each bucket")
    parser.add_argument(
        "--folder-modes",
        default="sizes,rehash",
        help="verify modes run on each folder (a folder records no checksum: checksum mode re-hashes, as rehash does)",
    )
    parser.add_argument("--files", type=int, default=10, help="files per project (each other one has .metadata)")
    parser.add_argument("--workers", type=int, default=32, help="requests in flight per verify process")
    parser.add_argument(
        "--s3-shards",
        type=int,
        default=1,
        help="on S3, run this many shards at once sharing their pages (--share-pages)",
    )
    args = parser.parse_args(argv)
    runs: list[Run] = []
    print(HEADER, flush=True)
    for size in filter(None, args.s3_sizes.split(",")):
        runs += s3_runs(int(size), args.files, args.workers, args.s3_modes.split(","), args.s3_shards)
    for size in filter(None, args.folder_sizes.split(",")):
        runs += folder_runs(int(size), args.files, args.workers, args.folder_modes.split(","))
    summary(runs)


if __name__ == "__main__":
    main()
