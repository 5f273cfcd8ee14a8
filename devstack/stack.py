"""The whole request path on one machine: moto (S3 + SQS) fed by the Lambda handlers, the edge, the redirector.

`LocalStack` starts a moto server on 127.0.0.1, creates the bucket and the queue the Pulumi program would, and
runs the sync through the *same* entry points the Lambdas use (`planner_handler`, then `worker_handler` on the
queue's messages, as the event source mapping would deliver them). The bucket is served by the local edge (the
deployed CloudFront function, run by node, caching as the distribution does and taking the sync's invalidations)
and, in front of it, nginx with the redirectors' rendered config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from devstack.edge import EdgeError, EdgeServer
from devstack.origins import S3Origin
from devstack.redirector import (
    LOCAL_ZONE_ID,
    NGINX_HINT,
    Redirector,
    RedirectorError,
    find_nginx,
    free_port,
    host_network,
    start_redirector,
)
from infra.edge.render import RedirectorSettings
from sync import handlers

BUCKET = "pypi-cdn-local"
QUEUE = "pypi-cdn-sync"
QUEUE_ARN = f"arn:aws:sqs:us-east-1:123456789012:{QUEUE}"
DEFAULT_PROJECTS = ("six", "idna", "packaging")
STACK_PORT = 8702
RESYNC_SECONDS = 60.0
MAX_DRAIN_ROUNDS = 1000  # SQS receives per sync: far above what a small project list needs
DRAIN_SECONDS = 600.0
LAMBDA_SECONDS = 900.0  # the Lambda maximum, as a fake context's remaining time


@dataclass(frozen=True)
class FakeLambdaContext:
    """What the handlers read from a Lambda context."""

    deadline: float
    function_name: str = "pypi-cdn-local"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:pypi-cdn-local"
    aws_request_id: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def lambda_context(seconds: float = LAMBDA_SECONDS) -> FakeLambdaContext:
    return FakeLambdaContext(deadline=time.monotonic() + seconds)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The Lambda event the SQS event source mapping builds from `receive_message`'s messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
            for message in messages
        ]
    }


class LocalStack:
    """moto + handlers + edge (+ nginx when installed); `index_url` is where pip points."""

    def __init__(self, *, upstream: str, projects: Sequence[str], port: int | None = None, redirector: bool = True):
        self.upstream = upstream
        self.projects = tuple(projects)
        self.port = port
        self.want_redirector = redirector
        self._runtime_dir = tempfile.TemporaryDirectory(prefix="pypi-cdn-stack-")
        self._saved_env: dict[str, str | None] = {}
        self.moto: ThreadedMotoServer | None = None
        self.edge: EdgeServer | None = None
        self.redirector: Redirector | None = None
        self.endpoint_url = ""
        self.queue_url = ""

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        # A planner pass with nothing to measure emits no metric; powertools warns about that on every pass.
        warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
        moto_port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
        self.moto.start()
        self.endpoint_url = f"http://127.0.0.1:{moto_port}"
        # moto keeps its buckets per process, not per server: start from none, whatever stack ran here before.
        reset = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=10).close()  # noqa: S310 (http://127.0.0.1: our own moto)
        self._set_env(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint_url,
            }
        )
        s3 = boto3.client("s3", endpoint_url=self.endpoint_url)
        s3.create_bucket(Bucket=BUCKET)
        sqs = boto3.client("sqs", endpoint_url=self.endpoint_url)
        self.queue_url = sqs.create_queue(QueueName=QUEUE, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
        self._set_env(
            {
                "PYPI_CDN_UPSTREAM": self.upstream,
                "PYPI_CDN_DEST": f"s3://{BUCKET}",
                "PYPI_CDN_QUEUE_URL": self.queue_url,
                "PYPI_CDN_PROJECTS": ",".join(self.projects),
                "PYPI_CDN_CONTACT": "pypi-cdn local stack",
                "PYPI_CDN_INLINE_THRESHOLD": "0",  # fan every project out over the queue, as at scale
                "PYPI_CDN_PLANNER_WINDOW": "0",  # one planner pass per invocation
                "POWERTOOLS_METRICS_NAMESPACE": "pypi-cdn",
                "POWERTOOLS_SERVICE_NAME": "pypi-cdn-sync",
            }
        )
        self.edge = EdgeServer(
            S3Origin(self.endpoint_url, BUCKET), port=0 if self.want_redirector else self.port or 0, cache=True
        )
        self._set_env(
            {  # the sync invalidates what it publishes on the edge's cache, with its own boto3 CloudFront client
                "PYPI_CDN_DISTRIBUTION_ID": self.edge.distribution_id or "",
                "AWS_ENDPOINT_URL_CLOUDFRONT": self.edge.cloudfront_endpoint_url or "",
                "PYPI_CDN_PUBLIC_URL": self.edge.url,  # pages point at provenance documents on the edge
            }
        )
        handlers.runtime.cache_clear()  # the handlers build their runtime from this environment
        if self.want_redirector:
            settings = RedirectorSettings(
                domain="localhost",
                cdn_hostname="localhost",
                dynamic_origin=self.upstream,
                hosted_zone_id=LOCAL_ZONE_ID,
            )
            network = host_network() if self.upstream.startswith("https://") else {}
            self.redirector = start_redirector(
                settings, Path(self._runtime_dir.name), cdn_url=self.edge.url, http_port=self.port, **network
            )
        return self

    def close(self) -> None:
        """Stop what started (idempotent) and restore the environment."""
        for stop in (
            self.redirector and self.redirector.stop,
            self.edge and self.edge.close,
            self.moto and self.moto.stop,
        ):
            if stop:
                stop()
        self.redirector = self.edge = self.moto = None
        handlers.runtime.cache_clear()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._runtime_dir.cleanup()

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def index_url(self) -> str:
        front = self.redirector.url if self.redirector else self.edge.url if self.edge else ""
        return f"{front}/simple/"

    # ----------------------------------------------------------------------------------------------- sync
    def sync(self) -> dict[str, Any]:
        """The planner, workers on every queued message until the queue is empty, and the planner again.

        The second planner pass is the next scheduled tick: it folds the projects the workers added or removed
        into the root pages.
        """
        planned = handlers.planner_handler({}, lambda_context())
        sqs = boto3.client("sqs", endpoint_url=self.endpoint_url)
        failures = 0
        deadline = time.monotonic() + DRAIN_SECONDS
        for _ in range(MAX_DRAIN_ROUNDS):
            if time.monotonic() > deadline:
                break
            messages = sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                break
            response = handlers.worker_handler(sqs_event(messages, QUEUE_ARN), lambda_context())
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
            failures += len(failed)
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:  # what the event source mapping does with the records a batch did not report
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
            if failed:
                break  # failed messages come back after the visibility timeout: the next tick retries them
        folded = handlers.planner_handler({}, lambda_context())
        root_written = planned["root_written"] or folded["root_written"]
        return {**planned, "worker_failures": failures, "root_written": root_written}

    def wait_for_edge(self) -> None:
        """Wait until the invalidations the syncs sent so far have taken effect at the edge (5 s after each)."""
        ledger = self.edge.invalidations.ledger if self.edge and self.edge.invalidations else None
        if ledger is not None:
            time.sleep(max(0.0, ledger.settled_at() - ledger.clock()))

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream", default="https://pypi.org", help="index to mirror (default https://pypi.org)")
    parser.add_argument(
        "--project",
        action="append",
        dest="projects",
        metavar="NAME",
        help=f"project to mirror (repeatable; default {' '.join(DEFAULT_PROJECTS)})",
    )
    parser.add_argument("--port", type=int, default=STACK_PORT, help=f"port on 127.0.0.1 (default {STACK_PORT})")


def run(args: argparse.Namespace) -> int:
    """Start the stack, sync, print the pip command, re-sync every minute until Ctrl-C."""
    with_nginx = find_nginx() is not None
    if not with_nginx:
        print(f"note: nginx is not installed, so the redirector is left out ({NGINX_HINT})", file=sys.stderr)
    stack = LocalStack(
        upstream=args.upstream, projects=args.projects or DEFAULT_PROJECTS, port=args.port, redirector=with_nginx
    )
    try:
        stack.start()
    except (RedirectorError, EdgeError, OSError) as error:
        print(f"error: cannot start the local stack: {error}", file=sys.stderr)
        stack.close()
        return 4
    stop = threading.Event()
    try:
        summary = stack.sync()
        print(f"synced: {summary}")
        path = "nginx redirector → local edge" if stack.redirector else "local edge"
        print(f"index: {stack.index_url}   ({path} → moto S3 at {stack.endpoint_url})")
        print(f"try:   pip install --index-url {stack.index_url} {stack.projects[0]}")
        print(f"serving until Ctrl-C; the planner runs again every {RESYNC_SECONDS:.0f} s")
        while not stop.wait(RESYNC_SECONDS):
            stack.sync()
    except KeyboardInterrupt:
        print()
    finally:
        stack.close()
    return 0
