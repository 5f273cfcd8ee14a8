"""Benchmark 4: an idle planner run (nothing changed upstream): upstream requests, S3 requests, seconds.

A corpus is mirrored first into moto S3; the idle run then goes through the Lambda entry point with S3 behind the
counting proxy of the tests. Run: .venv/bin/python -m bench.idle [--projects N]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import boto3
from moto.server import ThreadedMotoServer

from sync import handlers
from tests.s3proxy import S3Proxy
from tests.upstream.corpus import build_corpus
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


class Context:
    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=300)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    handlers.logger.setLevel(logging.WARNING)
    index = FakeIndex()
    build_corpus(index, projects=args.projects, files_per_project=(1, 4))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    queue_url = boto3.client("sqs", endpoint_url=endpoint).create_queue(QueueName="bench")["QueueUrl"]
    with UpstreamServer(index) as upstream, S3Proxy(endpoint) as proxy:
        os.environ.update(
            {
                "PYPI_CDN_DEST": "s3://bench",
                "PYPI_CDN_UPSTREAM": upstream.url,
                "PYPI_CDN_QUEUE_URL": queue_url,
                "AWS_ENDPOINT_URL": proxy.url,
                "PYPI_CDN_POLL_INTERVAL": "0",
                "PYPI_CDN_INLINE_THRESHOLD": str(args.projects),
            }
        )
        first = handlers.planner_handler({}, Context())  # the first sync, inline
        runs = []
        for _ in range(3):
            upstream.reset_log()
            proxy.reset_counts()
            started = time.perf_counter()
            summary = handlers.planner_handler({}, Context())
            seconds = time.perf_counter() - started
            runs.append((summary["planned"], len(upstream.requests), proxy.counts, seconds))
    moto.stop()
    print(f"idle planner run over a {first['synced_inline']}-project mirror (S3 on moto, through a counting proxy)")
    print(
        f"{'run':>3} {'planned':>7} {'upstream req':>12} {'S3 GET':>6} {'S3 LIST':>7} {'S3 writes':>9} {'seconds':>7}"
    )
    for number, (planned, upstream_requests, counts, seconds) in enumerate(runs, 1):
        writes = counts["PUT"] + counts["DELETE"] + counts["POST"]
        print(
            f"{number:>3} {planned:>7} {upstream_requests:>12} {counts['GET']:>6} {counts['LIST']:>7} {writes:>9} "
            f"{seconds:>7.3f}"
        )


if __name__ == "__main__":
    main()
