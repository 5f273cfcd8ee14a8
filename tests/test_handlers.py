"""The Lambda handlers, called directly: planner and queue worker over moto S3 + SQS (+ CloudFront) and a fake PyPI."""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from datetime import UTC, datetime

import boto3
import pytest

from devstack.stack import lambda_context, sqs_event
from sync import handlers
from sync.config import MirrorConfig
from sync.handlers import run_local
from sync.lambda_settings import LAG_METRIC
from sync.layout import ROSTER_PREFIX, STATUS_CACHE_CONTROL, STATUS_KEY
from sync.lease import acquire
from sync.progress import Reporter
from sync.state import load_state, save_state
from sync.storage import open_storage
from sync.verify import verify_mirror
from tests.s3proxy import Fault as S3Fault
from tests.upstream.server import Fault

SAMPLE = ["foo-bar", "tiny", "zope-hookable"]
WRITES = ("PUT", "DELETE", "POST")
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


class Lambda:
    """Environment, queue and helpers around the real handler functions."""

    def __init__(self, monkeypatch, upstream, s3, **env: str):
        self.s3 = s3
        self.sqs = boto3.client("sqs", endpoint_url=s3.endpoint_url)
        self.queue_url = self.sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:16]}")["QueueUrl"]
        settings = {
            "PYPI_CDN_DEST": s3.dest,
            "PYPI_CDN_UPSTREAM": upstream.url,
            "PYPI_CDN_QUEUE_URL": self.queue_url,
            "AWS_ENDPOINT_URL": s3.endpoint_url,
            "PYPI_CDN_INLINE_THRESHOLD": "10",
            "PYPI_CDN_TIME_MARGIN": "1",
            "PYPI_CDN_POLL_INTERVAL": "0",
            **env,
        }
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        handlers.runtime.cache_clear()
        self.storage = open_storage(s3.dest, endpoint_url=s3.endpoint_url)

    def plan(self, event: dict | None = None, remaining_ms: int = 120_000) -> dict:
        return handlers.planner_handler(event or {}, lambda_context(remaining_ms / 1000))

    def receive(self) -> list[dict]:
        """Up to 10 queued messages as the records of a Lambda SQS event."""
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            VisibilityTimeout=30,
        )
        return sqs_event(answer.get("Messages", []), "arn:aws:sqs:us-east-1:123456789012:q")["Records"]

    def work(self, records: list[dict]) -> list[str]:
        """Invoke the worker on `records` and delete what succeeded, as the event source mapping does."""
        response = handlers.worker_handler({"Records": records}, lambda_context(120))
        failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
        for record in records:
            if record["messageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"])
        return failed

    def drain(self, rounds: int = 20) -> int:
        """Work the queue until it is empty (bounded); returns how many messages were processed."""
        processed = 0
        for _ in range(rounds):
            records = self.receive()
            if not records:
                return processed
            self.work(records)
            processed += len(records)
        raise AssertionError(f"queue not empty after {rounds} rounds")

    def sound(self) -> None:
        report = verify_mirror(self.storage)
        assert report.problems == []
        assert report.orphans == []

    def root_names(self) -> list[str]:
        found = self.storage.get_bytes("simple/index.v1_json")
        return [] if found is None else [p["name"] for p in json.loads(found[0])["projects"]]

    def markers(self) -> list[str]:
        return [info.key.removeprefix(ROSTER_PREFIX) for info in self.storage.list(ROSTER_PREFIX)]


@pytest.fixture
def aws(monkeypatch, upstream, s3_dest):
    return Lambda(monkeypatch, upstream, s3_dest)


def emf_values(output: str, metric: str) -> list[float]:
    values: list[float] = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line and metric in line:
            value = json.loads(line)[metric]
            values.extend(value if isinstance(value, list) else [value])
    return values


# ------------------------------------------------------------------------------------------------ planner
def test_first_run_syncs_a_small_index_inline_and_publishes_the_root(aws, caplog):
    summary = aws.plan()
    assert summary["planned"] == 3
    assert summary["synced_inline"] == 3
    assert summary["handed_off"] == 0
    assert summary["root_written"] is True
    assert aws.receive() == []
    assert aws.root_names() == SAMPLE
    aws.sound()
    state = load_state(aws.storage)
    assert sorted(state.projects) == SAMPLE
    assert state.pending == {}
    finished = [r for r in caplog.records if r.getMessage() == "planner_finished"]  # powertools structured logs
    assert [(r.planned, r.synced_inline, r.root_written) for r in finished] == [(3, 3, True)]


def test_idle_run_makes_one_upstream_request_and_writes_only_the_status(monkeypatch, upstream, s3_proxy_dest):
    aws = Lambda(monkeypatch, upstream, s3_proxy_dest)
    aws.plan()
    upstream.reset_log()
    s3_proxy_dest.proxy.reset_counts()
    summary = aws.plan()
    assert summary["planned"] == 0
    assert len(upstream.requests) == 1
    writes = [(verb, key) for verb, key in s3_proxy_dest.proxy.log if verb in WRITES]
    assert writes == [("PUT", s3_proxy_dest.object_key(STATUS_KEY))]


def parse_time(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def status(aws: Lambda) -> dict:
    found = aws.storage.get_bytes(STATUS_KEY)
    assert found is not None
    return json.loads(found[0])


def test_every_pass_publishes_the_status_and_a_pass_with_work_left_keeps_the_last_sync(aws, fake_index):
    first = aws.plan()
    published = status(aws)
    assert set(published) == {
        "upstream", "api_version", "last_serial", "projects", "pending", "last_check", "last_sync", "lag_seconds"
    }  # fmt: skip
    assert published["upstream"] == os.environ["PYPI_CDN_UPSTREAM"]
    assert (published["api_version"], published["last_serial"], published["projects"]) == ("1.4", first["serial"], 3)
    assert (published["pending"], published["lag_seconds"]) == (0, 0)
    assert published["last_sync"] == published["last_check"]
    assert abs(parse_time(published["last_check"]) - time.time()) < 60
    response = aws.s3.client.get_object(Bucket=aws.s3.bucket, Key=aws.s3.object_key(STATUS_KEY))
    assert (response["ContentType"], response["CacheControl"]) == ("application/json", STATUS_CACHE_CONTROL)

    fake_index.add_file("tiny", "tiny-9.0.tar.gz", b"tiny nine", version="9.0")
    time.sleep(1.1)  # the status counts whole seconds
    out_of_time = aws.plan(remaining_ms=500)  # the change is planned but left pending
    assert out_of_time["left_pending"] == 1
    behind = status(aws)
    assert (behind["pending"], behind["last_serial"], behind["last_sync"]) == (
        1,
        fake_index.serial,
        published["last_sync"],
    )
    assert behind["lag_seconds"] == parse_time(behind["last_check"]) - parse_time(published["last_sync"]) >= 1
    aws.plan()
    caught_up = status(aws)
    assert (caught_up["pending"], caught_up["lag_seconds"]) == (0, 0)
    assert caught_up["last_sync"] == caught_up["last_check"] >= behind["last_check"]


def test_the_status_names_the_upstream_without_its_credentials(monkeypatch, upstream, s3_dest):
    credentialed = upstream.url.replace("http://", "http://mirror:s3cret@")
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_UPSTREAM=credentialed)
    aws.plan()
    assert status(aws)["upstream"] == upstream.url
    assert b"s3cret" not in aws.storage.get_bytes(STATUS_KEY)[0]


def test_a_planner_that_cannot_write_the_status_still_finishes_its_pass(monkeypatch, upstream, s3_proxy_dest):
    aws = Lambda(monkeypatch, upstream, s3_proxy_dest)
    denied = S3Fault.error(403, "AccessDenied", "Access Denied")
    s3_proxy_dest.proxy.inject("PUT", re.escape(STATUS_KEY), denied, times=10)
    summary = aws.plan()
    assert summary["synced_inline"] == 3
    assert aws.storage.get_bytes(STATUS_KEY) is None
    assert load_state(aws.storage).serial == summary["serial"]


@pytest.mark.hostile_class(7)
def test_many_changes_fan_out_over_the_queue_and_workers_publish_them(monkeypatch, upstream, fake_index, s3_dest):
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_INLINE_THRESHOLD="0")
    first = aws.plan()
    assert (first["planned"], first["handed_off"], first["synced_inline"]) == (3, 3, 0)
    assert first["root_written"] is True
    assert aws.root_names() == []  # nothing published yet: the root lists only what workers published
    assert load_state(aws.storage).serial == fake_index.serial
    assert aws.drain() == 3
    assert sorted(aws.markers()) == [f"{name}.added" for name in SAMPLE]
    second = aws.plan()
    assert second["roster_changes"] == 3
    assert second["root_written"] is True
    assert aws.root_names() == SAMPLE
    assert aws.markers() == []
    aws.sound()

    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"tiny two", version="2.0")
    fake_index.add_file("zope.Hookable", "zope.hookable-9.0.tar.gz", b"nine", version="9.0")  # no removal in the feed
    upstream.inject(r"^/simple/zope-hookable/", Fault.status(404), times=1000)  # but its page answers 404
    third = aws.plan()
    assert third["handed_off"] == 2
    assert third["root_written"] is False  # the set of projects is unchanged until a worker says otherwise
    assert aws.drain() == 2
    assert aws.markers() == ["zope-hookable.missing"]  # one 404: the page stays until a second sync agrees
    assert aws.storage.get_bytes("simple/zope-hookable/index.v1_json") is not None
    assert aws.plan()["root_written"] is False  # folds the marker
    assert aws.plan()["handed_off"] == 1  # the confirming sync
    assert aws.drain() == 1
    assert aws.markers() == ["zope-hookable.removed"]
    assert aws.plan()["root_written"] is True
    assert aws.root_names() == ["foo-bar", "tiny"]
    assert "tiny-2.0.tar.gz" in aws.storage.get_bytes("simple/tiny/index.html")[0].decode()
    aws.sound()


def test_a_planner_finding_another_one_mid_pass_leaves_the_work_to_it(aws, fake_index):
    aws.plan()
    fake_index.add_file("tiny", "tiny-5.0.tar.gz", b"tiny five", version="5.0")
    with acquire(aws.storage, owner="other-planner", ttl=60):
        summary = aws.plan()
    assert (summary["busy"], summary["planned"], summary["synced_inline"]) == (True, 1, 0)
    assert load_state(aws.storage).serial < fake_index.serial
    assert aws.plan()["synced_inline"] == 1


def test_a_planner_out_of_time_checkpoints_and_the_next_run_continues(aws, fake_index):
    out_of_time = aws.plan(remaining_ms=500)  # less than the 1 s margin: nothing can be handed off
    assert out_of_time["planned"] == 3
    assert out_of_time["left_pending"] == 3
    state = load_state(aws.storage)
    assert sorted(state.pending) == SAMPLE
    assert state.serial == fake_index.serial
    assert aws.root_names() == []
    resumed = aws.plan()
    assert resumed["synced_inline"] == 3
    assert resumed["left_pending"] == 0
    assert aws.root_names() == SAMPLE
    aws.sound()


def test_backfill_event_plans_from_the_whole_listing(monkeypatch, upstream, fake_index, s3_dest):
    Lambda(monkeypatch, upstream, s3_dest).plan()  # first sync, inline
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_INLINE_THRESHOLD="1")
    for name in ("tiny", "zope-hookable"):  # lost from the mirror behind the change feed's back
        for key in (f"simple/{name}/index.v1_json", f"simple/{name}/index.html"):
            aws.storage.delete(key)
    state = load_state(aws.storage)
    for name in ("tiny", "zope-hookable"):
        del state.projects[name]
    save_state(aws.storage, state)
    assert aws.plan()["planned"] == 0  # the feed has nothing new
    backfill = aws.plan({"backfill": True})
    assert backfill["planned"] == 2
    assert backfill["handed_off"] == 2
    assert sorted(json.loads(r["body"])["project"] for r in aws.receive()) == ["tiny", "zope-hookable"]


# ------------------------------------------------------------------------------------------------ worker
def test_worker_reports_only_failed_messages_and_emits_the_lag(monkeypatch, upstream, fake_index, s3_dest, capsys):
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_INLINE_THRESHOLD="0")
    aws.plan()
    aws.drain()
    aws.plan()
    added = fake_index.add_file("tiny", "tiny-3.0.tar.gz", b"tiny three", version="3.0")
    fake_index.add_file("Foo_Bar", "foo_bar-2.0.tar.gz", b"foo bar two", version="2.0")
    upstream.inject(r"/tiny-3\.0\.tar\.gz$", Fault.corrupt(), times=20)
    assert aws.plan()["handed_off"] == 2
    records = aws.receive()
    records.append({**records[0], "messageId": "not-a-job", "body": "garbage"})
    capsys.readouterr()
    failed = aws.work(records)
    tiny_id = next(r["messageId"] for r in records if r["body"] != "garbage" and "tiny" in r["body"])
    assert sorted(failed) == sorted([tiny_id, "not-a-job"])
    page = aws.storage.get_bytes("simple/tiny/index.html")[0].decode()
    assert added.filename not in page  # the old page stays while the new file cannot be verified
    assert "foo_bar-2.0.tar.gz" in aws.storage.get_bytes("simple/foo-bar/index.html")[0].decode()
    lags = emf_values(capsys.readouterr().out, LAG_METRIC)
    foo_serial = fake_index.project("Foo_Bar").last_serial
    expected = time.time() - fake_index.timestamp(foo_serial).timestamp()
    assert len(lags) == 1
    assert abs(lags[0] - expected) < 60
    aws.sound()


def test_a_project_twice_in_one_batch_is_synced_once(monkeypatch, upstream, s3_dest):
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_INLINE_THRESHOLD="0")
    aws.plan()
    records = aws.receive()
    twin = next(r for r in records if "tiny" in r["body"])
    upstream.reset_log()
    failed = aws.work([*records, {**twin, "messageId": "twin"}])
    assert failed == []
    assert upstream.count("/simple/tiny/") == 1


# ------------------------------------------------------------------------------------------------ edge
def test_published_pages_are_invalidated_at_the_edge(monkeypatch, upstream, fake_index, s3_dest):
    cloudfront = boto3.client("cloudfront", endpoint_url=s3_dest.endpoint_url)
    distribution = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": uuid.uuid4().hex,
            "Comment": "",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {"Id": "o", "DomainName": "b.s3.amazonaws.com", "S3OriginConfig": {"OriginAccessIdentity": ""}}
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "o",
                "ViewerProtocolPolicy": "https-only",
                "MinTTL": 0,
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
            },
        }
    )["Distribution"]["Id"]
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_DISTRIBUTION_ID=distribution)

    def invalidated() -> list[list[str]]:
        items = cloudfront.list_invalidations(DistributionId=distribution)["InvalidationList"].get("Items", [])
        return [
            cloudfront.get_invalidation(DistributionId=distribution, Id=i["Id"])["Invalidation"]["InvalidationBatch"][
                "Paths"
            ]["Items"]
            for i in items
        ]

    assert aws.plan()["invalidated_paths"] == 8  # 3 projects x 2 pages + the root's 2
    fake_index.add_file("tiny", "tiny-4.0.tar.gz", b"tiny four", version="4.0")
    assert aws.plan()["invalidated_paths"] == 2
    assert sorted(invalidated()[-1]) == ["/simple/tiny/index.html", "/simple/tiny/index.v1_json"]
    assert len(invalidated()) == 2


# ------------------------------------------------------------------------------------------------ local
@pytest.mark.hostile_class(7)
def test_run_local_drives_the_same_planner_and_workers_with_threads(upstream, fake_index, tmp_path):
    config = MirrorConfig(dest=str(tmp_path / "mirror"), upstream=upstream.url, workers=2)
    reporter = Reporter(io.StringIO(), json_lines=True)
    first = run_local(config, reporter, inline_threshold=0, workers=3)
    assert (first.planned, first.handed_off, first.failed, first.root_written) == (3, 3, [], True)
    storage = open_storage(config.dest)
    assert json.loads(storage.get_bytes("simple/index.v1_json")[0])["projects"] == [{"name": n} for n in SAMPLE]
    report = verify_mirror(storage)
    assert (report.problems, report.orphans) == ([], [])
    fake_index.remove_project("tiny")
    second = run_local(config, reporter, inline_threshold=0, workers=3)
    assert (second.planned, second.root_written) == (1, True)  # the feed's "remove project" confirms the 404
    assert [p["name"] for p in json.loads(storage.get_bytes("simple/index.v1_json")[0])["projects"]] == [
        "foo-bar",
        "zope-hookable",
    ]
    idle = run_local(config, reporter)
    assert (idle.planned, idle.root_written) == (0, False)


def test_the_planner_polls_the_feed_again_within_its_window(monkeypatch, upstream, s3_dest):
    aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_POLL_INTERVAL="0.2", PYPI_CDN_PLANNER_WINDOW="0.7")
    aws.plan()  # first sync
    upstream.reset_log()
    started = time.monotonic()
    summary = aws.plan()
    assert summary["passes"] == 4  # at 0, 0.2, 0.4 and 0.6 s
    assert time.monotonic() - started < 3
    assert upstream.count("/pypi") == 4  # one change-feed request a pass
