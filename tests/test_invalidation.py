"""Edge refresh: which paths are invalidated, within CloudFront's in-flight limits and the monthly budget (moto)."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from moto.cloudfront.models import cloudfront_backends
from moto.core import DEFAULT_ACCOUNT_ID

from sync.invalidation import (
    MAX_PATHS_IN_FLIGHT,
    MAX_WILDCARDS_IN_FLIGHT,
    USAGE_WRITE_ATTEMPTS,
    WILDCARD_PATH,
    EdgeRefresher,
    EdgeSettings,
    InFlight,
    InvalidationMode,
    choose_paths,
    current_month,
    edge_paths,
)
from sync.layout import INVALIDATION_USAGE_KEY
from sync.progress import Reporter
from sync.storage import PreconditionFailed, StorageError, open_storage

TARGETED, WILDCARD, TTL = InvalidationMode.TARGETED, InvalidationMode.WILDCARD, InvalidationMode.TTL


@pytest.fixture
def cloudfront(monkeypatch) -> Iterator[SimpleNamespace]:
    """A moto CloudFront (in-process) with one distribution."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("cloudfront", region_name="us-east-1")
        created = client.create_distribution(
            DistributionConfig={
                "CallerReference": "test",
                "Comment": "",
                "Enabled": True,
                "Origins": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "Id": "origin",
                            "DomainName": "mirror.s3.amazonaws.com",
                            "S3OriginConfig": {"OriginAccessIdentity": ""},
                        },
                    ],
                },
                "DefaultCacheBehavior": {
                    "TargetOriginId": "origin",
                    "ViewerProtocolPolicy": "redirect-to-https",
                    "MinTTL": 0,
                    "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                    "TrustedSigners": {"Enabled": False, "Quantity": 0},
                },
            }
        )
        distribution_id = created["Distribution"]["Id"]

        def invalidations() -> list[list[str]]:
            answer = client.list_invalidations(DistributionId=distribution_id)["InvalidationList"]
            return [
                client.get_invalidation(DistributionId=distribution_id, Id=item["Id"])["Invalidation"][
                    "InvalidationBatch"
                ]["Paths"]["Items"]
                for item in answer.get("Items", [])
            ]

        def mark_in_progress() -> None:
            backend = cloudfront_backends[DEFAULT_ACCOUNT_ID]["global"]
            for invalidation in backend.invalidations.get(distribution_id, []):
                invalidation.status = "InProgress"

        yield SimpleNamespace(
            client=client, id=distribution_id, invalidations=invalidations, mark_in_progress=mark_in_progress
        )


def refresher(cloudfront, tmp_path, mode=TARGETED, budget=0.0, month="2025-11") -> EdgeRefresher:
    storage = open_storage(str(tmp_path / "mirror"))
    return EdgeRefresher(
        cloudfront.client,
        cloudfront.id,
        storage,
        settings=EdgeSettings(mode, budget),
        reporter=Reporter(io.StringIO(), json_lines=True),
        month=lambda: month,
    )


def test_edge_paths_are_the_rewritten_page_uris_of_each_project_once():
    assert edge_paths(["b", "a", "b"], root=False) == [
        "/simple/a/index.html",
        "/simple/a/index.v1_json",
        "/simple/b/index.html",
        "/simple/b/index.v1_json",
    ]
    assert edge_paths([], root=True) == ["/simple/index.html", "/simple/index.v1_json"]


def test_monthly_allowance_is_the_free_thousand_plus_what_the_budget_buys():
    assert EdgeSettings(TARGETED, 0).monthly_path_allowance == 1000
    assert EdgeSettings(TARGETED, 5).monthly_path_allowance == 2000
    assert EdgeSettings(TARGETED, 0.012).monthly_path_allowance == 1002


@pytest.mark.parametrize(
    ("count", "mode", "in_flight", "left", "expected"),
    [
        (4, TARGETED, InFlight(), 1000, "targeted"),
        (4, TARGETED, InFlight(), 3, "wildcard"),  # over the budget: one wildcard path is cheaper
        (4, TARGETED, InFlight(paths=MAX_PATHS_IN_FLIGHT - 3), 1000, "wildcard"),  # no room in flight
        (4, TARGETED, InFlight(paths=MAX_PATHS_IN_FLIGHT - 4), 1000, "targeted"),
        (4, TARGETED, InFlight(wildcards=MAX_WILDCARDS_IN_FLIGHT, paths=MAX_PATHS_IN_FLIGHT), 1000, "none"),
        (4, TARGETED, InFlight(), 0, "none"),  # budget spent: TTL only
        (4, WILDCARD, InFlight(), 1000, "wildcard"),
        (4, WILDCARD, InFlight(), 0, "none"),
        (4, TTL, InFlight(), 1000, "none"),
        (0, TARGETED, InFlight(), 1000, "none"),
        (MAX_PATHS_IN_FLIGHT + 2, TARGETED, InFlight(), 10**6, "wildcard"),  # never more than 3,000 paths
    ],
)
def test_choose_paths(count, mode, in_flight, left, expected):
    paths = [f"/simple/p{i}/index.html" for i in range(count)]
    chosen, reason = choose_paths(paths, mode, in_flight=in_flight, paths_left=left)
    kind = {(): "none", (WILDCARD_PATH,): "wildcard"}.get(chosen, "targeted" if chosen == tuple(paths) else "?")
    assert kind == expected, reason
    assert reason


def test_targeted_refresh_invalidates_exact_paths_and_counts_them(cloudfront, tmp_path):
    edge = refresher(cloudfront, tmp_path)
    result = edge.refresh(["foo-bar"], root=True)
    expected = [
        "/simple/index.html",
        "/simple/index.v1_json",
        "/simple/foo-bar/index.html",
        "/simple/foo-bar/index.v1_json",
    ]
    assert list(result.paths) == expected
    assert result.invalidation_id
    assert cloudfront.invalidations() == [expected]
    assert edge.paths_used() == 4
    assert json.loads(edge.storage.get_bytes(INVALIDATION_USAGE_KEY)[0]) == {"month": "2025-11", "paths": 4}


def test_budget_exhaustion_falls_back_to_wildcard_then_ttl(cloudfront, tmp_path):
    edge = refresher(cloudfront, tmp_path)
    big = [f"p{i}" for i in range(499)]  # 998 paths of the free 1,000
    assert len(edge.refresh(big).paths) == 998
    assert edge.refresh(["a", "b"]).paths == (WILDCARD_PATH,)  # 4 paths do not fit; a wildcard (1 path) does
    assert edge.refresh(["c"]).paths == (WILDCARD_PATH,)
    spent = edge.refresh(["d"])
    assert spent.paths == ()
    assert "budget" in spent.reason
    assert edge.paths_used() == 1000
    assert len(cloudfront.invalidations()) == 3


def test_a_new_month_starts_a_new_count(cloudfront, tmp_path):
    refresher(cloudfront, tmp_path, month="2025-11").refresh([f"p{i}" for i in range(500)])
    next_month = refresher(cloudfront, tmp_path, month="2025-12")
    assert next_month.paths_used() == 0
    assert len(next_month.refresh(["x"]).paths) == 2
    assert next_month.paths_used() == 2


def test_paths_in_flight_are_counted_and_respected(cloudfront, tmp_path):
    edge = refresher(cloudfront, tmp_path, budget=100)
    edge.refresh([f"p{i}" for i in range(1499)])  # 2,998 paths
    assert edge.in_flight() == InFlight(0, 0)  # moto completes at once
    cloudfront.mark_in_progress()
    assert edge.in_flight() == InFlight(2998, 0)
    assert edge.refresh(["one", "two"]).paths == (WILDCARD_PATH,)  # 4 more would pass 3,000 in flight
    cloudfront.mark_in_progress()
    assert edge.in_flight() == InFlight(2998, 1)


def test_concurrent_workers_share_one_budget_exactly(cloudfront, tmp_path):
    edges = [refresher(cloudfront, tmp_path) for _ in range(12)]
    results = []
    barrier = threading.Barrier(len(edges), timeout=10)

    def one(index: int) -> None:
        barrier.wait()
        results.append(edges[index].refresh([f"w{index}-{i}" for i in range(50)]))  # 100 paths each

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(edges))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(len(r.paths) for r in results) == [0, 0] + [100] * 10
    assert edges[0].paths_used() == 1000
    assert len(cloudfront.invalidations()) == 10


@pytest.mark.parametrize("losses", [2, USAGE_WRITE_ATTEMPTS])
def test_a_lost_count_write_is_retried_a_bounded_number_of_times(cloudfront, tmp_path, monkeypatch, losses):
    edge = refresher(cloudfront, tmp_path)
    put_bytes, writes = edge.storage.put_bytes, []

    def lose_the_race(key, data, **options):
        writes.append(key)
        if len(writes) <= losses:
            raise PreconditionFailed(f"{key}: another worker wrote first")
        return put_bytes(key, data, **options)

    monkeypatch.setattr(edge.storage, "put_bytes", lose_the_race)
    result = edge.refresh(["a"])
    if losses < USAGE_WRITE_ATTEMPTS:  # won on the next attempt: counted once
        assert (len(result.paths), len(writes), edge.paths_used()) == (2, losses + 1, 2)
    else:
        assert result.paths == ()
        assert result.reason == f"failed: {INVALIDATION_USAGE_KEY}: still contended after 8 attempts"
        assert (len(writes), edge.paths_used(), cloudfront.invalidations()) == (USAGE_WRITE_ATTEMPTS, 0, [])


def test_wildcard_mode_and_ttl_mode(cloudfront, tmp_path):
    assert refresher(cloudfront, tmp_path, mode=WILDCARD).refresh(["a", "b"]).paths == (WILDCARD_PATH,)
    ttl = refresher(cloudfront, tmp_path / "other", mode=TTL)
    assert ttl.refresh(["a"], root=True).paths == ()
    assert cloudfront.invalidations() == [[WILDCARD_PATH]]
    assert ttl.paths_used() == 0


def test_a_cloudfront_error_is_reported_not_raised(cloudfront, tmp_path):
    edge = refresher(cloudfront, tmp_path)
    edge.distribution_id = "EDOESNOTEXIST"
    result = edge.refresh(["a"])
    assert result.paths == ()
    assert result.reason.startswith("failed")
    assert "edge_refresh_failed" in edge.reporter.stream.getvalue()


def test_an_unreadable_count_fails_closed(cloudfront, tmp_path):
    edge = refresher(cloudfront, tmp_path)
    edge.storage.put_bytes(
        INVALIDATION_USAGE_KEY, b"{not json", content_type="application/json", cache_control="no-store"
    )
    assert edge.refresh(["a"]).paths == ()
    assert cloudfront.invalidations() == []
    with pytest.raises(StorageError, match="unreadable invalidation count"):
        edge.paths_used()


def test_current_month_is_utc_year_and_month():
    assert current_month(datetime(2025, 1, 31, 23, 59, tzinfo=UTC)) == "2025-01"
