"""Benchmark 6: a first whole-index sync of a PyPI-sized index, to a folder or to S3: peak RSS, time and requests.

The fake PyPI lists `--projects` file-less projects and has no change feed, so the run reads the root listing, plans
every project, fetches every page, publishes it, records it in the state and writes the root pages: all that grows
with the number of projects, without the files' transfer time. `python -m sync mirror` runs as a child process,
measured by `wait4` (bench.compare's wrapper). With `--s3` the destination is a bucket on a moto server (its own
process, bench/moto_s3.py), reached through tests/s3proxy.py, which counts the S3 requests by verb.
Run: .venv/bin/python -m bench.full_sync [--projects 930000] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from packaging.utils import canonicalize_name

from bench.compare import moto_server, run_child
from sync.layout import ROOT_JSON_KEY, page_keys
from tests.s3proxy import S3Proxy
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

BUCKET = "full-sync"
SAMPLED_PAGES = 1_000  # project pages HEAD-checked after an S3 run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=930_000)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--s3", action="store_true", help="sync to a moto S3 bucket instead of a folder")
    parser.add_argument(
        "--no-count", action="store_true", help="with --s3: reach moto directly, without the counting proxy's CPU"
    )
    args = parser.parse_args()
    index = FakeIndex()
    index.add_bulk_names(args.projects)
    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(UpstreamServer(index, xmlrpc_enabled=False))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        proxy: S3Proxy | None = None
        s3 = None
        if args.s3:
            endpoint = stack.enter_context(moto_server(lean=True))
            if not args.no_count:
                proxy = stack.enter_context(S3Proxy(endpoint))
                endpoint = proxy.url
            env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            s3.create_bucket(Bucket=BUCKET)
            if proxy:
                proxy.reset_counts()
            dest, extra = f"s3://{BUCKET}", ["--endpoint-url", endpoint]
        else:
            dest, extra = str(work / "mirror"), []
        command = [sys.executable, "-m", "sync", "mirror", "--upstream", server.url, "--dest", dest]
        command += ["--workers", str(args.workers), *extra]
        seconds, cpu, peak_mb, code = run_child(command, env, work / "run.log", timeout=4 * 3600)
        upstream_requests = len(server.requests)
        s3_requests = proxy.counts if proxy else Counter()
        if code != 0:
            published = 0
        elif s3 is not None:
            published = _published_on_s3(s3)
        else:
            published = sum(1 for _ in (work / "mirror" / "simple").iterdir()) - 2  # less the two root pages
        where = "s3" if args.s3 else "folder"
        header = ("dest", "projects", "exit", "published", "wall s", "CPU s", "peak RSS MB")
        print(" ".join(f"{title:>{width}}" for title, width in zip(header, (6, 9, 4, 9, 7, 6, 11), strict=True)))
        print(f"{where:>6} {args.projects:>9,} {code:>4} {published:>9,} {seconds:>7.0f} {cpu:>6.0f} {peak_mb:>11.0f}")
        print(f"upstream requests: {upstream_requests:,} ({upstream_requests / args.projects:.2f} a project)")
        if proxy:
            per_project = ", ".join(f"{verb} {n / args.projects:.2f}" for verb, n in sorted(s3_requests.items()))
            print(f"S3 requests a project: {per_project}", flush=True)


def _published_on_s3(s3: Any) -> int:
    """Projects the root JSON page names, once a sample of their pages is found stored.

    Not a LIST: moto scans and sorts the whole bucket for every list page, which is quadratic at two million keys.
    """
    body = s3.get_object(Bucket=BUCKET, Key=ROOT_JSON_KEY)["Body"].read()
    names = [project["name"] for project in json.loads(body)["projects"]]
    for name in random.Random(0).sample(names, min(SAMPLED_PAGES, len(names))):
        for key in page_keys(canonicalize_name(name)):
            s3.head_object(Bucket=BUCKET, Key=key)  # raises if a named page is missing
    return len(names)


if __name__ == "__main__":
    main()
