"""Benchmark 3: one minute of PyPI-like changes through planner -> SQS (moto) -> workers -> S3 (moto): the lag.

The fake PyPI's journal carries the wall-clock time of each change, so the lag is what the `MirrorLagSeconds`
metric reports in production: from the upstream change (journal time, whole seconds, so up to 1 s too long) to the
end of the sync that published its page. One planner container polls the feed every 10 s (as one scheduled
invocation does for 50 s of each minute); four worker containers take SQS batches of 10, like the event source
mapping. Every change goes through the queue (inline threshold 0).
Run: .venv/bin/python -m bench.lag [--changes 30 300]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import statistics
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from devstack.stack import sqs_event
from sync.config import MirrorConfig
from sync.dispatch import Deadline
from sync.handlers import Runtime
from sync.lambda_settings import HandlerSettings
from sync.progress import Reporter
from tests.upstream.corpus import build_corpus
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

BENCH_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:bench"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
CORPUS_PROJECTS = 600
WORKERS = 4
POLL_INTERVAL = 10.0
MINUTE = 60.0
TAIL = 40.0  # seconds after the minute for the last changes to be published


class WallClockIndex(FakeIndex):
    """A FakeIndex whose journal times are the wall-clock moments of its changes."""

    def __init__(self) -> None:
        super().__init__()
        self._times: dict[int, datetime] = {}

    def timestamp(self, serial: int) -> datetime:
        return self._times.setdefault(serial, datetime.now(UTC))


def worker_loop(runtime: Runtime, sqs: Any, queue_url: str, stop: threading.Event) -> None:
    """What the event source mapping does for one worker: poll, invoke, delete what succeeded."""
    while not stop.is_set():
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            continue
        response = runtime.work(sqs_event(messages, BENCH_QUEUE_ARN), None)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def run_minute(changes: int, index: WallClockIndex, upstream_url: str, endpoint: str, queue_url: str) -> dict:
    lags: list[float] = []
    lock = threading.Lock()

    def collect(seconds: float) -> None:
        with lock:
            lags.append(seconds)

    settings = HandlerSettings(
        mirror=MirrorConfig(dest="s3://bench", upstream=upstream_url, endpoint_url=endpoint, workers=2),
        queue_url=queue_url,
        inline_threshold=0,
        poll_interval=POLL_INTERVAL,
        planner_window=MINUTE + TAIL,
    )
    quiet = Reporter(open(os.devnull, "w"), json_lines=True)  # noqa: SIM115
    planner = Runtime(settings, quiet, lag_sink=collect)
    workers = [Runtime(settings, quiet, lag_sink=collect) for _ in range(WORKERS)]
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    stop = threading.Event()
    threads = [threading.Thread(target=worker_loop, args=(w, sqs, queue_url, stop), daemon=True) for w in workers]
    rng = random.Random(changes)
    projects = rng.sample([p.name for p in index.projects()], changes)
    offsets = sorted(rng.uniform(0, MINUTE) for _ in range(changes))
    planner_thread = threading.Thread(target=lambda: planner.poll(Deadline(MINUTE + TAIL + 30)), daemon=True)
    started = time.monotonic()
    for thread in [*threads, planner_thread]:
        thread.start()
    for number, (project, offset) in enumerate(zip(projects, offsets, strict=True)):
        time.sleep(max(0.0, started + offset - time.monotonic()))
        index.add_file(
            project,
            f"{project.lower()}-99.{number}.tar.gz",
            rng.randbytes(rng.randint(2_000, 60_000)),
            version=f"99.{number}",
        )
    last_change = time.monotonic()
    while len(lags) < changes and time.monotonic() - last_change < TAIL:
        time.sleep(0.2)
    all_published = time.monotonic() - last_change
    stop.set()
    planner_thread.join(timeout=MINUTE + TAIL + 30)
    for thread in threads:
        thread.join(timeout=30)
    for runtime in [planner, *workers]:
        runtime.close()
    ordered = sorted(lags)
    return {
        "changes": changes,
        "published": len(lags),
        "p50": statistics.median(ordered) if ordered else float("nan"),
        "p95": ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan"),
        "max": max(ordered, default=float("nan")),
        "drain": all_published,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, nargs="+", default=[30, 300])
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    index = WallClockIndex()
    build_corpus(index, projects=CORPUS_PROJECTS, files_per_project=(1, 3))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    queue_url = boto3.client("sqs", endpoint_url=endpoint).create_queue(
        QueueName="bench", Attributes={"VisibilityTimeout": "60"}
    )["QueueUrl"]
    rows = []
    with UpstreamServer(index) as upstream:
        first_sync = HandlerSettings(
            mirror=MirrorConfig(dest="s3://bench", upstream=upstream.url, endpoint_url=endpoint, workers=8),
            inline_threshold=CORPUS_PROJECTS,
            poll_interval=0,
        )
        setup = Runtime(first_sync, Reporter(open(os.devnull, "w"), json_lines=True), lag_sink=None)  # noqa: SIM115
        setup.plan(Deadline(600))
        setup.close()
        rows = [run_minute(count, index, upstream.url, endpoint, queue_url) for count in args.changes]
    moto.stop()
    print(
        f"lag from an upstream change to its published page (planner polls every {POLL_INTERVAL:.0f} s, "
        f"{WORKERS} workers, batches of 10)"
    )
    print(
        f"{'changes/min':>11} {'published':>9} {'p50 s':>6} {'p95 s':>6} {'max s':>6} "
        f"{'last change -> all published s':>31}"
    )
    for row in rows:
        print(
            f"{row['changes']:>11} {row['published']:>9} {row['p50']:>6.1f} {row['p95']:>6.1f} {row['max']:>6.1f} "
            f"{row['drain']:>31.1f}"
        )


if __name__ == "__main__":
    main()
