"""Benchmark 1: one planner pass over a 1,000,000-project mirror with 20,000 upstream changes (or a backfill).

The fake PyPI and moto S3 run in this process; the planner runs in a child process through the real Lambda entry
point (`sync.handlers.planner_handler`), so its wall time and peak memory are its own. SQS is a recording stub
in the child: moto's SQS takes minutes for 20,000 messages, which would time the emulator, not the planner; the
enqueue rate of moto is measured separately for reference. `--backfill` measures the first sync's planner instead:
an empty bucket and the event `{"backfill": true}`, so the whole root listing is planned and handed to SQS.
Run: .venv/bin/python -m bench.planner [--projects N] [--changes N] [--backfill]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import subprocess
import sys
import time

import boto3
from moto.server import ThreadedMotoServer

from sync.handlers import planner_handler, runtime
from sync.state import MirrorState, ProjectState, ProjectStates, save_state
from sync.storage import open_storage
from tests.upstream.index import BULK_DISPLAY, FakeIndex
from tests.upstream.server import UpstreamServer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def child(*, backfill: bool) -> None:
    """Run one planner invocation as Lambda would and print its summary, wall time and peak RSS."""

    class Context:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 900_000

    sent: list[int] = []

    class RecordingSqs:
        @staticmethod
        def send_message_batch(QueueUrl: str, Entries: list[dict]) -> dict:  # boto3 argument names
            sent.append(len(Entries))
            return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}

    queue = runtime().queue
    assert queue is not None
    queue.sqs = RecordingSqs()
    started, cpu_started = time.perf_counter(), _cpu_seconds()
    summary = planner_handler({"backfill": True} if backfill else {}, Context())
    seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
    with open("/proc/self/status", encoding="ascii") as status:
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(
        json.dumps(
            {
                "summary": summary,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "peak_mb": peak_kb / 1024,
                "sent": sum(sent),
                "batches": len(sent),
            }
        )
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--backfill", action="store_true", help="an empty mirror planned with {'backfill': true}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(backfill=args.backfill)
        return
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    setup_started = time.perf_counter()
    index = FakeIndex()
    index.add_bulk_names(args.projects)
    mirrored_serial = index.serial
    rng = random.Random(5)
    changed = set()
    for i in range(args.changes):  # PyPI-like: uploads to random existing projects, some more than once
        n = rng.randrange(args.projects)
        changed.add(n)
        index.add_file(BULK_DISPLAY.format(n), f"bulk_project_{n:07d}-1.0.{i}.tar.gz", b"%d" % i, version=f"1.0.{i}")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    sqs = boto3.client("sqs", endpoint_url=endpoint)
    queue_url = sqs.create_queue(QueueName="bench")["QueueUrl"]
    storage = open_storage("s3://bench", endpoint_url=endpoint)
    state_mb = 0.0
    if not args.backfill:
        state = MirrorState(
            serial=mirrored_serial,
            projects=ProjectStates(
                (f"bulk-project-{i:07d}", ProjectState(1000 + i + 1, None)) for i in range(args.projects)
            ),
        )
        save_state(storage, state)
        state_mb = len(state.to_json()) / 1e6
        del state
    setup_seconds = time.perf_counter() - setup_started
    with UpstreamServer(index) as upstream:
        env = {
            **os.environ,
            "PYPI_CDN_DEST": "s3://bench",
            "PYPI_CDN_UPSTREAM": upstream.url,
            "PYPI_CDN_QUEUE_URL": queue_url,
            "AWS_ENDPOINT_URL": endpoint,
            "PYPI_CDN_POLL_INTERVAL": "0",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "bench.planner", "--child", *(["--backfill"] if args.backfill else [])]
        answer = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        feed_requests = upstream.count("/pypi")
        listing_requests = upstream.count("/simple/")
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    probe = [{"Id": str(i), "MessageBody": json.dumps({"project": f"p{i}"})} for i in range(10)]
    probe_started = time.perf_counter()
    for _ in range(100):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=probe)
    moto_rate = 1000 / (time.perf_counter() - probe_started)
    moto.stop()
    summary = result["summary"]
    rows = [
        ("projects upstream", f"{args.projects:,}"),
        ("projects in the mirror (state.json)", f"{0 if args.backfill else args.projects:,} ({state_mb:.0f} MB)"),
        ("upstream changes (distinct projects)", f"{args.changes:,} ({len(changed):,})"),
        ("planned / handed off to SQS", f"{summary['planned']:,} / {summary['handed_off']:,}"),
        ("messages sent (SendMessageBatch calls)", f"{result['sent']:,} ({result['batches']:,})"),
        ("change-feed requests", f"{feed_requests}"),
        ("root listing requests", f"{listing_requests}"),
        ("root pages written", f"{summary['root_written']}"),
        ("planner wall time", f"{result['seconds']:.1f} s"),
        (
            "planner CPU time (user + system)",
            f"{result['cpu_seconds']:.1f} s",
        ),
        ("planner peak RSS", f"{result['peak_mb']:.0f} MB"),
        ("(moto SQS enqueue rate, for reference)", f"{moto_rate:,.0f} messages/s"),
        ("(setup, not measured)", f"{setup_seconds:.0f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'planner pass':<{width}}  value")
    print(f"{'-' * width}  {'-' * 20}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
