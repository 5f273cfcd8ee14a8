"""Benchmark 5: pypi-cdn against bandersnatch, side by side, to a folder and to S3 (moto), and against the wire.

A deterministic corpus is served by the fake PyPI (tests/upstream) on 127.0.0.1; moto runs in its own process behind
the counting S3 proxy (tests/s3proxy.py). Each tool runs as a child process; its peak RSS and CPU come from
`os.wait4`. Every round runs, for each destination, both tools cold, then both with nothing changed, then (after 5% of
the projects changed upstream) both again, alternating which tool goes first from round to round. The table shows
medians over the rounds. `--live` mirrors ten real projects from pypi.org instead (latest 10 releases each).
Run: .venv/bin/python -m bench.compare [--rounds 3] [--projects 200] [--skip-bandersnatch] [--live]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import urllib3

from bench._bandersnatch import BANDERSNATCH_VERSION, bandersnatch_command, ensure_bandersnatch
from tests.s3proxy import S3Proxy
from tests.upstream.corpus import CorpusStats, build_corpus, sized_wheel
from tests.upstream.index import FakeIndex
from tests.upstream.server import Fault, UpstreamServer

REPO = Path(__file__).resolve().parent.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
LIVE_PROJECTS = (
    "six",
    "idna",
    "certifi",
    "attrs",
    "packaging",
    "pyparsing",
    "click",
    "markupsafe",
    "itsdangerous",
    "jinja2",
)
LIVE_RELEASES = 10
CHANGED_SHARE = 0.05
RUN_TIMEOUT = 1800  # seconds one tool run may take before the bench gives up on it
RSS_POLL_SECONDS = 0.05


@dataclass
class Run:
    """What one child-process run of one tool cost."""

    tool: str
    dest_kind: str  # "folder" or "s3"
    phase: str  # "cold", "no-op" or "changed"
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    exit_code: int
    upstream: Counter[str] = field(default_factory=Counter)  # requests by kind: pages, files, feed
    s3: Counter[str] = field(default_factory=Counter)  # S3 requests by verb
    files_found: int | None = None  # distribution files in the destination after the run
    bytes_found: int = 0  # their bytes


@dataclass(frozen=True)
class Workload:
    files: int  # distribution files a cold run must store
    objects: int  # those files and their `.metadata` files
    total_bytes: int


# ------------------------------------------------------------------------------------------------ one tool run
# A small Python that forks the tool and reports what `wait4` says of it. The tool is not forked from this process:
# Linux carries the forking process's RSS high-water mark across exec into ru_maxrss, which would report this
# process's corpus-sized RSS as the tool's peak.
MEASURE_CHILD = """
import json, os, sys, time
started = time.perf_counter()
child = os.fork()
if child == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(child, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss,
               "exit": os.waitstatus_to_exitcode(status)}, out)
"""


def run_child(
    command: Sequence[str], env: dict[str, str], log_path: Path, timeout: float = RUN_TIMEOUT
) -> tuple[float, float, float, int]:
    """Run `command`; returns (wall seconds, CPU seconds, peak RSS MB, exit code) of it and its reaped children."""
    usage_path = log_path.with_suffix(".usage.json")
    with log_path.open("ab") as log:
        wrapper = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", MEASURE_CHILD, str(usage_path), *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            wrapper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(wrapper.pid, signal.SIGKILL)
            wrapper.wait()
            return timeout, 0.0, 0.0, -signal.SIGKILL
    usage = json.loads(usage_path.read_text())
    return usage["seconds"], usage["cpu"], usage["rss_kb"] / 1024, usage["exit"]


def pypi_cdn_command(upstream: str, dest: str, endpoint_url: str | None, workers: int, live: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "sync",
        "mirror",
        "--upstream",
        upstream,
        "--dest",
        dest,
        "--workers",
        str(workers),
        "--log-format",
        "json",
    ]
    if endpoint_url:
        command += ["--endpoint-url", endpoint_url]
    if live:
        command += [arg for name in LIVE_PROJECTS for arg in ("--project", name)]
        command += ["--keep-latest", str(LIVE_RELEASES)]
    return command


# ----------------------------------------------------------------------------------------------- the servers
@contextmanager
def moto_server(*, lean: bool = False) -> Iterator[str]:
    """moto's S3 in its own process on a free 127.0.0.1 port (so it never competes with the fake PyPI for a GIL);
    `lean` serves moto's S3 app without its dispatcher and access log (bench/moto_s3.py), for millions of requests."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.moto_s3", str(port)]
        if lean
        else [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"moto server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a moto holding millions of objects can take long to exit
            process.kill()
            process.wait()


class Destinations:
    """Fresh folders and buckets for each run series, and a count of the distribution files each ended up with."""

    def __init__(self, root: Path, moto_url: str | None):
        self.root = root
        self.client = (
            boto3.client(
                "s3",
                endpoint_url=moto_url,
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            )
            if moto_url
            else None
        )
        self.made: list[tuple[str, str]] = []

    def new(self, dest_kind: str, tool: str) -> str:
        name = f"{tool}-{uuid.uuid4().hex[:8]}"
        if dest_kind == "folder":
            path = self.root / name
            self.made.append(("folder", str(path)))
            return str(path)
        assert self.client is not None
        self.client.create_bucket(Bucket=name)
        self.made.append(("s3", name))
        return f"s3://{name}/mirror"

    def stored_files(self, dest: str) -> tuple[int, int]:
        """(count, bytes) of the distribution files (not `.metadata`) under any `packages/` prefix of `dest`."""
        if dest.startswith("s3://"):
            assert self.client is not None
            bucket = dest.removeprefix("s3://").split("/")[0]
            objects = [
                (item["Key"], item["Size"])
                for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                for item in page.get("Contents", ())
            ]
        else:
            objects = [(str(p), p.stat().st_size) for p in Path(dest).rglob("*") if p.is_file()]
        files = [size for key, size in objects if "packages/" in key and not key.endswith(".metadata")]
        return len(files), sum(files)

    def clear(self) -> None:
        for kind, name in self.made:
            if kind == "folder":
                shutil.rmtree(name, ignore_errors=True)
                continue
            assert self.client is not None
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
                if keys:
                    self.client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            self.client.delete_bucket(Bucket=name)
        self.made.clear()


def upstream_counts(server: UpstreamServer) -> Counter[str]:
    with server._lock:  # the request log's own lock: snapshot it whole
        records = list(server.requests)
    kinds: Counter[str] = Counter()
    for record in records:
        if record.method == "POST":
            kinds["feed"] += 1
        elif record.path.startswith("/packages/"):
            kinds["files"] += 1
        else:
            kinds["pages"] += 1
    return kinds


# ------------------------------------------------------------------------------------------------- the corpus
def build_index(args: argparse.Namespace) -> tuple[FakeIndex, CorpusStats]:
    index = FakeIndex()
    stats = build_corpus(
        index,
        projects=args.projects,
        files_per_project=(args.min_files, args.max_files),
        seed=args.seed,
        large_files=args.large_files,
        large_size=args.large_mb * 2**20,
        metadata_ratio=0.5,
        yank_ratio=0.05,
    )
    return index, stats


def change_projects(index: FakeIndex, share: float, seed: int) -> int:
    """Upload one new wheel (a real zip, with metadata) to `share` of the projects, and yank a file in every other one
    of those.

    Returns the number of new files.
    """
    rng = random.Random(seed)
    projects = index.projects()
    chosen = rng.sample(projects, max(1, round(len(projects) * share)))
    for position, project in enumerate(chosen):
        stem = project.normalized.replace("-", "_")
        version = f"99.{position}"
        filename = f"{stem}-{version}-py3-none-any.whl"
        metadata = f"Metadata-Version: 2.1\nName: {project.name}\nVersion: {version}\n".encode()
        body = sized_wheel(filename, metadata, rng.randint(4 * 1024, 200 * 1024), rng.randbytes)
        index.add_file(project.name, filename, body, version=version, metadata=metadata)
        if position % 2 == 0 and project.files:
            index.yank(project.name, project.files[0].filename, "bench: changed upstream")
    return len(chosen)


# -------------------------------------------------------------------------------------------------- the wire
def measure_wire(server: UpstreamServer, index: FakeIndex, latency: float) -> tuple[float, float]:
    """(bytes/s of one download of the largest file, seconds of one small request) against the fake PyPI.

    Afterwards every request to the fake PyPI waits `latency` seconds before it is answered.
    """
    files = [f for p in index.projects() for f in p.files]
    largest = max(files, key=lambda f: f.size)
    smallest_meta = next(f for f in sorted(files, key=lambda f: f.size) if f.metadata is not None)
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(server.url.rsplit(":", 1)[1]), maxsize=1)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        response = pool.request("GET", largest.url_path, preload_content=False)
        for _chunk in response.stream(2**20):
            pass
        best = min(best, time.perf_counter() - started)
    if latency > 0:
        server.inject(".", Fault.delay(latency), times=10**9)
    latencies = []
    for _ in range(200):
        started = time.perf_counter()
        pool.request("GET", smallest_meta.url_path + ".metadata")
        latencies.append(time.perf_counter() - started)
    pool.close()
    return largest.size / best, statistics.median(latencies)


# ------------------------------------------------------------------------------------------------ the rounds
def run_series(
    args: argparse.Namespace,
    server: UpstreamServer,
    proxy: S3Proxy | None,
    dests: Destinations,
    *,
    work_dir: Path,
    index: FakeIndex,
    round_number: int,
) -> list[Run]:
    """One round: cold, no-op, then 5% changed, each for every (destination, tool), alternating the tool order."""
    tools = ["pypi-cdn"] if args.skip_bandersnatch else ["pypi-cdn", "bandersnatch"]
    if round_number % 2:
        tools.reverse()
    dest_kinds = ["folder"] if args.skip_s3 else ["folder", "s3"]
    targets = {(kind, tool): dests.new(kind, tool) for kind in dest_kinds for tool in tools}
    env = {**os.environ, **CREDENTIALS}
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        env.pop(name, None)
    upstream_url = "https://pypi.org" if args.live else server.url
    runs: list[Run] = []
    for phase in ("cold", "no-op", "changed"):
        if phase == "changed":
            if args.live:
                break
            change_projects(index, CHANGED_SHARE, args.seed + round_number)
        for kind in dest_kinds:
            for tool in tools:
                dest = targets[(kind, tool)]
                endpoint = proxy.url if kind == "s3" and proxy else None
                if tool == "pypi-cdn":
                    command = pypi_cdn_command(upstream_url, dest, endpoint, args.workers, args.live)
                else:
                    command = bandersnatch_command(
                        work_dir,
                        upstream_url,
                        dest,
                        endpoint_url=endpoint,
                        workers=args.bandersnatch_workers,
                        live=(LIVE_PROJECTS, LIVE_RELEASES) if args.live else None,
                        credentials=CREDENTIALS,
                    )
                server.reset_log()
                if proxy:
                    proxy.reset_counts()
                seconds, cpu, rss, code = run_child(command, env, work_dir / f"{tool}-{kind}.log")
                run = Run(
                    tool,
                    kind,
                    phase,
                    seconds,
                    cpu,
                    rss,
                    code,
                    upstream_counts(server),
                    proxy.counts if proxy and kind == "s3" else Counter(),
                )
                if phase == "cold":
                    run.files_found, run.bytes_found = dests.stored_files(dest)
                runs.append(run)
                print(
                    f"  round {round_number + 1} {phase:7} {kind:6} {tool:12} {seconds:7.2f} s  exit {code}",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def measure_big_root(bulk_names: int) -> dict[str, float]:
    """Plan a whole-index mirror from a root listing `bulk_names` projects in a child process: seconds, peak MB."""
    index = FakeIndex()
    index.add_bulk_names(bulk_names)
    with UpstreamServer(index) as server:
        code = (
            "import json, sys, time\n"
            "from sync.config import MirrorConfig\n"
            "from sync.plan import plan_run\n"
            "from sync.progress import Reporter\n"
            "from sync.state import MirrorState\n"
            "from sync.upstream import UpstreamClient\n"
            "import tempfile\n"
            "config = MirrorConfig(upstream=sys.argv[1], dest=tempfile.mkdtemp())\n"
            "started = time.perf_counter()\n"
            "plan = plan_run(config, UpstreamClient(config.upstream), MirrorState(), Reporter())\n"
            "seconds = time.perf_counter() - started\n"
            "peak = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024\n"
            "print(json.dumps({'planned': len(plan.projects), 'seconds': seconds, 'peak_mb': peak}))\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", code, server.url],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=RUN_TIMEOUT,
        ).stdout
    return json.loads(output.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------- report
def median(runs: list[Run], value: str) -> float:
    return statistics.median(float(getattr(r, value)) for r in runs)


def median_count(counters: list[Counter[str]], key: str) -> float:
    return statistics.median(c.get(key, 0) for c in counters)


def completeness(group: list[Run], workload: Workload) -> str:
    """ "yes" when every run exited 0 and every cold run left all distribution files in place; else what failed."""
    found = [r.files_found for r in group if r.files_found is not None]
    worst_exit = max(r.exit_code for r in group)
    if worst_exit == 0 and all(count >= workload.files for count in found):
        return "yes" if found else "-"
    return f"NO ({min(found, default='?')} files, exit {worst_exit})"


def render_table(runs: list[Run], workload: Workload) -> str:
    """Markdown: one row per (phase, destination, tool) with medians, then the ratios."""
    header = (
        "| phase | dest | tool | wall s | files/s | MB/s | upstream req (pages/files/feed) | S3 req by verb | "
        "S3 req/object | peak RSS MB | CPU s | complete |"
    )
    lines = [header, "|" + "---|" * 12]
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.phase, run.dest_kind, run.tool), []).append(run)
    for (phase, kind, tool), group in groups.items():
        wall = median(group, "seconds")
        cold = phase == "cold"
        upstream = {k: median_count([r.upstream for r in group], k) for k in ("pages", "files", "feed")}
        upstream_text = (  # "-" in live mode: pypi.org's requests are not logged
            f"{sum(upstream.values()):g} ({upstream['pages']:g}/{upstream['files']:g}/{upstream['feed']:g})"
            if any(upstream.values())
            else "-"
        )
        verbs = sorted({verb for r in group for verb in r.s3})
        s3 = {verb: median_count([r.s3 for r in group], verb) for verb in verbs}
        s3_text = " ".join(f"{verb} {count:g}" for verb, count in s3.items()) or "-"
        per_file = f"{sum(s3.values()) / workload.objects:.2f}" if cold and kind == "s3" else "-"
        lines.append(
            f"| {phase} | {kind} | {tool} | {wall:.2f} | "
            + (f"{workload.files / wall:.0f} | {workload.total_bytes / 2**20 / wall:.1f}" if cold else "- | -")
            + f" | {upstream_text} | {s3_text} | {per_file} | {median(group, 'peak_rss_mb'):.0f}"
            f" | {median(group, 'cpu_seconds'):.1f} | {completeness(group, workload)} |"
        )
    ratios = []
    for phase in ("cold", "no-op", "changed"):
        for kind in ("folder", "s3"):
            ours, theirs = groups.get((phase, kind, "pypi-cdn")), groups.get((phase, kind, "bandersnatch"))
            if ours and theirs:
                ratios.append(f"| {phase} | {kind} | {median(theirs, 'seconds') / median(ours, 'seconds'):.1f}x |")
    if ratios:
        lines += ["", "| phase | dest | bandersnatch wall / pypi-cdn wall |", "|---|---|---|", *ratios]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--min-files", type=int, default=4, help="fewest files per project")
    parser.add_argument("--max-files", type=int, default=16, help="most files per project")
    parser.add_argument("--large-files", type=int, default=3, help="files of --large-mb each")
    parser.add_argument("--large-mb", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=10, help="pypi-cdn's requests in flight (its default: 10)")
    parser.add_argument(
        "--bandersnatch-workers",
        type=int,
        default=10,
        choices=range(1, 11),
        metavar="1-10",
        help="bandersnatch's workers (its default: 3; at most 10)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay every answer of the fake PyPI by this much (a WAN round trip; default 0)",
    )
    parser.add_argument("--skip-bandersnatch", action="store_true", help="run pypi-cdn only")
    parser.add_argument("--skip-s3", action="store_true", help="mirror to folders only")
    parser.add_argument(
        "--big-root",
        type=int,
        default=930_000,
        metavar="N",
        help="also plan a whole-index mirror from a root of N projects (0: skip)",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help=f"mirror {len(LIVE_PROJECTS)} real projects from pypi.org (latest {LIVE_RELEASES} "
        "releases each) instead of the fake corpus; reaches the internet",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.projects < 1 or not 0 <= args.min_files <= args.max_files or args.workers < 1:
        parser.error("need --rounds >= 1, --projects >= 1, 0 <= --min-files <= --max-files and --workers >= 1")
    if not args.skip_bandersnatch:
        ensure_bandersnatch()
    runs: list[Run] = []
    wire: tuple[float, float] | None = None
    workload = Workload(0, 0, 0)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp, ExitStack() as servers:
        work_dir = Path(tmp)
        moto_url = None if args.skip_s3 else servers.enter_context(moto_server())
        dests = Destinations(work_dir, moto_url)
        for round_number in range(args.rounds):
            index, stats = build_index(args)
            metadata_files = sum(1 for p in index.projects() for f in p.files if f.metadata is not None)
            workload = Workload(stats.files, stats.files + metadata_files, stats.total_bytes)
            with UpstreamServer(index) as server, ExitStack() as round_servers:
                proxy = round_servers.enter_context(S3Proxy(moto_url)) if moto_url else None
                if args.live:
                    pass
                elif wire is None:
                    wire = measure_wire(server, index, args.latency_ms / 1000)
                elif args.latency_ms:
                    server.inject(".", Fault.delay(args.latency_ms / 1000), times=10**9)
                runs += run_series(
                    args, server, proxy, dests, work_dir=work_dir, index=index, round_number=round_number
                )
            dests.clear()
        failed = [r for r in runs if r.exit_code != 0]
        for run in failed:
            log = (work_dir / f"{run.tool}-{run.dest_kind}.log").read_text(errors="replace")[-2000:]
            print(f"{run.tool} {run.dest_kind} {run.phase} exited {run.exit_code}:\n{log}", file=sys.stderr)
    if args.live:
        # The most any run stored (pypi.org's releases are not known in advance; `.metadata` not counted).
        most = max(runs, key=lambda r: r.files_found or 0)
        workload = Workload(most.files_found or 1, most.files_found or 1, most.bytes_found)
    print(f"\n## pypi-cdn vs bandersnatch {BANDERSNATCH_VERSION} ({'live: pypi.org' if args.live else 'fake PyPI'})\n")
    print(
        f"corpus: {len(LIVE_PROJECTS) if args.live else args.projects} projects, {workload.files} files"
        f" (+ {workload.objects - workload.files} "
        f".metadata), {workload.total_bytes / 2**20:.1f} MB; {args.rounds} alternating rounds, medians; workers: "
        f"pypi-cdn {args.workers}, bandersnatch {args.bandersnatch_workers}; upstream latency "
        f"{args.latency_ms:g} ms; {os.cpu_count()} cores\n"
    )
    print(render_table(runs, workload))
    if wire is not None:
        print_wire(runs, workload, wire, args.workers)
    if args.big_root:
        big = measure_big_root(args.big_root)
        print(
            f"\nplanning a whole-index mirror from a root of {args.big_root:,} projects: "
            f"{big['planned']:,.0f} planned in {big['seconds']:.1f} s, peak RSS {big['peak_mb']:.0f} MB"
        )
    return 1 if failed else 0


def print_wire(runs: list[Run], workload: Workload, wire: tuple[float, float], workers: int) -> None:
    bandwidth, latency = wire
    cold = [r for r in runs if (r.tool, r.dest_kind, r.phase) == ("pypi-cdn", "folder", "cold")]
    if not cold:
        return
    requests = statistics.median(sum(r.upstream.values()) for r in cold)  # pypi-cdn's own, as the fake PyPI logged
    floor = workload.total_bytes / bandwidth + requests * latency / workers
    wall = median(cold, "seconds")
    print(
        f"\nwire: {bandwidth / 2**20:.0f} MB/s (one download of the largest file), {latency * 1000:.2f} ms a small "
        f"request; floor = {workload.total_bytes / 2**20:.1f} MB / bandwidth + {requests:g} requests (pypi-cdn cold, "
        f"measured) * latency / {workers} = {floor:.2f} s; bound 2 * floor = {2 * floor:.2f} s; pypi-cdn cold folder "
        f"{wall:.2f} s "
        f"({'within' if wall <= 2 * floor else 'NOT within'} 2x of the wire)"
    )


if __name__ == "__main__":
    sys.exit(main())
