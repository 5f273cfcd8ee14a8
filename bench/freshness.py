"""Benchmark 7: freshness where clients look, from an upstream change to the first client response that carries it.

The path is the production one on 127.0.0.1: the fake PyPI (journal times are wall-clock) → planner polling every
10 s → SQS (moto) → four workers → S3 (moto), and the workers' own boto3 CloudFront client invalidating on the local
edge (`devstack/edge.py` with `cache=True`: the distribution's TTLs, Cache-Control, stale-while-revalidate,
invalidations taking effect after 5 s). Clients read through nginx (the redirectors' config) → edge → bucket; without
nginx they read the edge directly and the table says so. Nothing is scaled: every second is a real second.

Per configuration, upstream changes `rate` projects a minute for `--window` seconds. Popular pages are read every
second; rarely-read pages every `--rare-interval` seconds (random phase), so the first read after a change may find
the edge's copy fresh, in its stale-while-revalidate window, or past it. Every polled page was read once before the
changes began, so the edge holds its old copy. Lags are from the moment the bench changed the project upstream.
Bucket lag is MirrorLagSeconds as the mirror reports it (journal time, whole seconds, so up to 1 s long); probe lag
is EdgeLagSeconds, the planner's EdgeProbe reading pages back through a second edge location of the same
distribution (invalidations reach both), so its reads never warm the clients' cache. "rare: stale for" is how long
after the page reached the bucket (S3 Last-Modified, whole seconds) a rare read still received the old page.
Run: .venv/bin/python -m bench.freshness [--rates 30 300 1000] [--modes targeted wildcard ttl exhausted]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

import sync.project_sync
import sync.run
from bench.lag import CREDENTIALS, WallClockIndex, worker_loop
from devstack.edge import EdgeServer
from devstack.origins import S3Origin
from devstack.redirector import LOCAL_ZONE_ID, Redirector, find_nginx, start_redirector
from infra.edge.render import RedirectorSettings
from sync.config import MirrorConfig
from sync.dispatch import Deadline
from sync.handlers import Runtime
from sync.invalidation import (
    FREE_PATHS_PER_MONTH,
    PRICE_PER_PATH_USD,
    EdgeSettings,
    InvalidationMode,
    current_month,
)
from sync.lambda_settings import HandlerSettings
from sync.layout import INVALIDATION_USAGE_KEY, PAGE_CACHE_CONTROL
from sync.models import normalize_project_name
from sync.progress import Reporter
from tests.upstream.corpus import build_corpus
from tests.upstream.server import UpstreamServer

BUCKET = "freshness"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
BUDGET_USD = 5.0  # infra's default invalidationMonthlyBudgetUsd
CHANGES_PER_MONTH = 20_000 * 30  # a whole-index mirror: about 20,000 upstream changes a day
WORKERS = 4
POLL_INTERVAL = 10.0
POPULAR_INTERVAL = 1.0
MAX_TAIL = 300.0  # seconds after the last change the clients keep reading at most
MODES = ("targeted", "wildcard", "ttl", "exhausted")  # exhausted: targeted with this month's budget spent


@dataclass
class Watch:
    """One polled page: when its project changed upstream and when a client first received the change."""

    project: str
    marker: bytes
    interval: float
    changed_at: float | None = None
    seen_at: float | None = None
    reads: list[float] = field(default_factory=list)  # when each read started (Unix time), oldest first

    @property
    def lag(self) -> float | None:
        return None if self.changed_at is None or self.seen_at is None else self.seen_at - self.changed_at

    def stale_for(self, published_at: float) -> float | None:
        """How long after the page reached the bucket a read still got the old page (0: none did); None: never seen."""
        if self.seen_at is None:
            return None
        stale = [read for read in self.reads if published_at <= read < self.seen_at]
        return max((read - published_at for read in stale), default=0.0)


@dataclass
class Config:
    mode: str
    rate: int
    rows: dict[str, Any] = field(default_factory=dict)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95 (nearest rank) and max."""
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan"), float("nan")
    rank = lambda q: ordered[max(0, math.ceil(q * len(ordered)) - 1)]  # noqa: E731
    return rank(0.5), rank(0.95), ordered[-1]


def read_page(front: str, project: str) -> bytes:
    request = urllib.request.Request(f"{front}/simple/{project}/", headers={"Accept": PIP_ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def poll(watch: Watch, front: str, stop: threading.Event, phase: float) -> None:
    """Read the page every `watch.interval` seconds (after `phase`) until it carries the change or `stop`."""
    if stop.wait(phase):
        return
    while not stop.is_set():
        started = time.monotonic()
        watch.reads.append(time.time())
        try:
            body = read_page(front, watch.project)
        except OSError:
            body = b""
        if watch.changed_at is not None and watch.marker in body:
            watch.seen_at = watch.reads[-1]
            return
        stop.wait(max(0.0, watch.interval - (time.monotonic() - started)))


def probing(planner: Runtime) -> bool:
    return planner.probe is not None and planner.probe.pending > 0


def plan_every(planner: Runtime, stop: threading.Event) -> None:
    """The planner's passes every POLL_INTERVAL seconds, as one scheduled invocation makes them, until `stop`."""
    while not stop.is_set():
        started = time.monotonic()
        planner.plan(Deadline(POLL_INTERVAL * 6))
        stop.wait(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))


def monthly_cost(paths_per_change: float) -> float:
    """Invalidations a month at CHANGES_PER_MONTH changes, beyond the free paths."""
    return max(0.0, paths_per_change * CHANGES_PER_MONTH - FREE_PATHS_PER_MONTH) * PRICE_PER_PATH_USD


class Bench:
    """moto + the fake PyPI + one first sync, shared by every configuration."""

    def __init__(self, corpus: int, seed: int) -> None:
        self.index = WallClockIndex()
        build_corpus(self.index, projects=corpus, files_per_project=(1, 1))
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=BUCKET)
        self.upstream = UpstreamServer(self.index).__enter__()
        self.rng = random.Random(seed)
        self.quiet = Reporter(open(os.devnull, "w"), json_lines=True)  # noqa: SIM115
        self.serial_number = 0
        first = HandlerSettings(mirror=self._mirror_config(8), inline_threshold=corpus, poll_interval=0)
        setup = Runtime(first, self.quiet, lag_sink=None)
        setup.plan(Deadline(900))
        setup.close()

    def _mirror_config(self, workers: int) -> MirrorConfig:
        return MirrorConfig(
            dest=f"s3://{BUCKET}", upstream=self.upstream.url, endpoint_url=self.endpoint, workers=workers
        )

    def close(self) -> None:
        self.upstream.__exit__(None, None, None)
        self.moto.stop()

    def run(self, config: Config, args: argparse.Namespace) -> None:
        s3 = boto3.client("s3", endpoint_url=self.endpoint)
        mode = InvalidationMode.TARGETED if config.mode == "exhausted" else InvalidationMode(config.mode)
        edge_settings = EdgeSettings(mode, BUDGET_USD)
        s3.delete_object(Bucket=BUCKET, Key=INVALIDATION_USAGE_KEY)
        if config.mode == "exhausted":
            spent = f'{{"month": "{current_month()}", "paths": {edge_settings.monthly_path_allowance}}}'
            s3.put_object(Bucket=BUCKET, Key=INVALIDATION_USAGE_KEY, Body=spent.encode())
        sqs = boto3.client("sqs", endpoint_url=self.endpoint)
        queue_url = sqs.create_queue(
            QueueName=f"freshness-{config.mode}-{config.rate}", Attributes={"VisibilityTimeout": "60"}
        )["QueueUrl"]
        with tempfile.TemporaryDirectory(prefix="freshness-") as runtime_dir:
            edge = EdgeServer(S3Origin(self.endpoint, BUCKET), cache=True)
            # The probe reads another edge location of the same distribution, so its reads never warm the clients'.
            probe_edge = EdgeServer(S3Origin(self.endpoint, BUCKET), cache=True, function=edge.function)
            if edge.invalidations is not None and probe_edge.cache is not None:
                edge.invalidations.ledger.add_cache(probe_edge.cache)
            redirector = self._redirector(edge, Path(runtime_dir)) if args.nginx else None
            try:
                self._measure(config, args, (edge, probe_edge), redirector, queue_url, edge_settings, sqs)
            finally:
                if redirector is not None:
                    redirector.stop()
                probe_edge.close()
                edge.close()

    def _published_at(self, project: str) -> float:
        """When the project's JSON page was last written to the bucket (S3's Last-Modified: whole seconds)."""
        head = boto3.client("s3", endpoint_url=self.endpoint).head_object(
            Bucket=BUCKET, Key=f"simple/{project}/index.v1_json"
        )
        return head["LastModified"].timestamp()

    def _redirector(self, edge: EdgeServer, runtime_dir: Path) -> Redirector:
        settings = RedirectorSettings(
            domain="localhost",
            cdn_hostname="localhost",
            dynamic_origin=self.upstream.url,
            hosted_zone_id=LOCAL_ZONE_ID,
        )
        return start_redirector(settings, runtime_dir, cdn_url=edge.url)

    def _measure(  # noqa: PLR0917 - one configuration's whole set-up, passed once
        self,
        config: Config,
        args: argparse.Namespace,
        edges: tuple[EdgeServer, EdgeServer],
        redirector: Redirector | None,
        queue_url: str,
        edge_settings: EdgeSettings,
        sqs: Any,
    ) -> None:
        edge, probe_edge = edges
        front = redirector.url if redirector else edge.url
        changes = max(1, round(config.rate * args.window / 60))
        projects = self.rng.sample([p.name for p in self.index.projects()], changes)
        offsets = sorted(self.rng.uniform(0, args.window) for _ in range(changes))
        numbers = range(self.serial_number, self.serial_number + changes)
        self.serial_number += changes
        watched = self.rng.sample(range(changes), min(changes, args.popular + args.rare))
        watches: dict[int, Watch] = {}
        for position, change in enumerate(watched):
            interval = POPULAR_INTERVAL if position < args.popular else args.rare_interval
            project = normalize_project_name(projects[change])
            marker = f"{projects[change].lower()}-99.{numbers[change]}.tar.gz".encode()
            watches[change] = Watch(project, marker, interval)
        for watch in watches.values():
            read_page(front, watch.project)  # the edge holds the old page, as for any page read before
        lags: list[float] = []
        probed: list[float] = []
        lock = threading.Lock()

        def collect(seconds: float) -> None:
            with lock:
                lags.append(seconds)

        def collect_probe(seconds: float) -> None:
            with lock:
                probed.append(seconds)

        settings = HandlerSettings(
            mirror=self._mirror_config(2),
            queue_url=queue_url,
            distribution_id=edge.distribution_id,
            cloudfront_endpoint_url=edge.cloudfront_endpoint_url,
            probe_url=probe_edge.url,  # EdgeProbe reads CloudFront itself, not through the redirectors
            inline_threshold=0,
            edge=edge_settings,
        )
        planner = Runtime(settings, self.quiet, lag_sink=collect, edge_lag_sink=collect_probe)
        workers = [Runtime(settings, self.quiet, lag_sink=collect) for _ in range(WORKERS)]
        stop, stop_clients = threading.Event(), threading.Event()
        threads = [threading.Thread(target=worker_loop, args=(w, sqs, queue_url, stop), daemon=True) for w in workers]
        threads.append(threading.Thread(target=plan_every, args=(planner, stop), daemon=True))
        clients = [
            threading.Thread(target=poll, args=(w, front, stop_clients, self.rng.uniform(0, w.interval)), daemon=True)
            for w in watches.values()
        ]
        started = time.monotonic()
        for thread in [*threads, *clients]:
            thread.start()
        for number, project in enumerate(projects):
            time.sleep(max(0.0, started + offsets[number] - time.monotonic()))
            watch = watches.get(number)
            if watch is not None:
                watch.changed_at = time.time()
            self.index.add_file(
                project,
                f"{project.lower()}-99.{numbers[number]}.tar.gz",
                self.rng.randbytes(self.rng.randint(2_000, 20_000)),
                version=f"99.{numbers[number]}",
            )
        last_change = time.monotonic()
        while time.monotonic() - last_change < MAX_TAIL and (
            len(lags) < changes or any(w.seen_at is None for w in watches.values()) or probing(planner)
        ):
            time.sleep(0.5)
        stop_clients.set()
        stop.set()
        for thread in [*clients, *threads]:
            thread.join(timeout=MAX_TAIL)
        for runtime in [planner, *workers]:
            runtime.close()
        ledger = edge.invalidations.ledger if edge.invalidations else None
        paths = ledger.paths_created if ledger else 0
        popular = [w.lag for w in list(watches.values())[: args.popular] if w.lag is not None]
        rare_watches = list(watches.values())[args.popular :]
        rare = [w.lag for w in rare_watches if w.lag is not None]
        stale = [seconds for w in rare_watches if (seconds := w.stale_for(self._published_at(w.project))) is not None]
        config.rows = {
            "changes": changes,
            "bucket": percentiles(lags),
            "published": len(lags),
            "popular": percentiles(popular),
            "popular_seen": f"{len(popular)}/{min(args.popular, len(watches))}",
            "rare": percentiles(rare),
            "rare_seen": f"{len(rare)}/{max(0, len(watches) - args.popular)}",
            "rare_stale": percentiles(stale),
            "probe": percentiles(probed),
            "probed": len(probed),
            "paths": paths,
            "cost": BUDGET_USD if config.mode == "exhausted" else monthly_cost(paths / changes),
        }


def print_table(configs: list[Config], args: argparse.Namespace) -> None:
    path = "redirector (nginx) → caching edge → bucket" if args.nginx else "caching edge → bucket (nginx absent)"
    print(f"freshness through {path}; pages stored with Cache-Control: {sync.project_sync.PAGE_CACHE_CONTROL}")
    print(
        f"{args.window:.0f} s of changes per row; popular pages read every {POPULAR_INTERVAL:.0f} s, rare ones every "
        f"{args.rare_interval:.0f} s; lags in seconds from the upstream change; $/month: invalidations at "
        f"{CHANGES_PER_MONTH // 30:,} changes a day (exhausted: the ${BUDGET_USD:.0f} budget, then TTL)"
    )
    columns = [
        "mode",
        "changes/min",
        "bucket p50/p95/max",
        "probe p50/p95/max (n)",
        "popular p50/p95/max (seen)",
        "rare p50/p95/max (seen)",
        "rare: stale for",
        "paths",
        "$/month",
    ]

    def triple(values: tuple[float, float, float]) -> str:
        return "/".join(f"{value:.0f}" for value in values)

    rows = [
        [
            config.mode,
            str(config.rate),
            triple(config.rows["bucket"]),
            f"{triple(config.rows['probe'])} ({config.rows['probed']})",
            f"{triple(config.rows['popular'])} ({config.rows['popular_seen']})",
            f"{triple(config.rows['rare'])} ({config.rows['rare_seen']})",
            triple(config.rows["rare_stale"]),
            str(config.rows["paths"]),
            f"{config.rows['cost']:,.0f}",
        ]
        for config in configs
    ]
    widths = [max(len(cell) for cell in column) for column in zip(columns, *rows, strict=True)]
    print("| " + " | ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[30, 300, 1000], help="upstream changes a minute")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--window", type=float, default=60.0, help="seconds of upstream changes per configuration")
    parser.add_argument("--popular", type=int, default=12, help="changed pages read every second")
    parser.add_argument("--rare", type=int, default=12, help="changed pages read every --rare-interval seconds")
    parser.add_argument("--rare-interval", type=float, default=90.0)
    parser.add_argument("--corpus", type=int, default=1100, help="projects in the mirror")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--page-cache-control",
        default=PAGE_CACHE_CONTROL,
        help="Cache-Control the sync stores on pages (a design variant; default: the sync's own)",
    )
    args = parser.parse_args(argv)
    args.nginx = find_nginx() is not None
    # What the sync's publishing steps write: the project pages and the root pages.
    sync.project_sync.PAGE_CACHE_CONTROL = sync.run.PAGE_CACHE_CONTROL = args.page_cache_control
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    bench = Bench(args.corpus, args.seed)
    configs = [Config(mode, rate) for mode in args.modes for rate in args.rates]
    try:
        for config in configs:
            bench.run(config, args)
            print(f"done: {config.mode} at {config.rate}/min: {config.rows}", flush=True)
    finally:
        bench.close()
    print_table(configs, args)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still stops its nginx and servers
    raise SystemExit(main())
