"""The local edge caches as the distribution does and takes the sync's invalidations through boto3."""

from __future__ import annotations

import http.client
import io
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.cache import EdgeCache, Freshness, freshness, policy_for
from devstack.edge import EdgeServer
from devstack.invalidations import COMPLETE_SECONDS, EFFECT_SECONDS, InvalidationApi, InvalidationLedger
from devstack.origins import FolderOrigin
from infra.cache_ttls import ERROR_CACHING_SECONDS, PAGES_TTLS, STATUS_TTLS, CacheTtls
from sync.invalidation import EdgeRefresher, EdgeSettings, InvalidationMode
from sync.layout import PAGE_CACHE_CONTROL
from sync.progress import Reporter
from sync.storage import open_storage

PAGE = "/simple/demo/index.v1_json"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Stored:
    body: io.BytesIO
    size: int
    content_type: str
    cache_control: str | None
    etag: str | None


class FakeOrigin:
    """A key → bytes origin that can fail; counts fetches."""

    def __init__(self, cache_control: str | None = PAGE_CACHE_CONTROL) -> None:
        self.objects: dict[str, bytes] = {}
        self.cache_control = cache_control
        self.failing = False
        self.fetched = threading.Event()

    def __call__(self, key: str) -> Stored | None:
        self.fetched.set()
        if self.failing:
            raise OSError("origin down")
        data = self.objects.get(key)
        if data is None:
            return None
        return Stored(io.BytesIO(data), len(data), "application/json", self.cache_control, f'"{hash(data)}"')


def cache_over(origin: FakeOrigin, clock: Clock) -> EdgeCache:
    return EdgeCache(origin, clock=clock)


@pytest.mark.parametrize(
    ("cache_control", "expected"),
    [
        ("public, max-age=60, stale-while-revalidate=300, stale-if-error=86400", Freshness(60, 300, 86400)),
        ("max-age=60, s-maxage=20", Freshness(20)),  # s-maxage is the shared caches' max-age
        ("max-age=3600", Freshness(PAGES_TTLS.max)),  # clamped to the policy's max TTL
        (None, Freshness(PAGES_TTLS.default)),  # nothing from the origin: the default TTL
        ("max-age=abc", Freshness(PAGES_TTLS.default)),
        ("no-store", Freshness(0, cacheable=False)),
        ("private, max-age=60", Freshness(0, cacheable=False)),
    ],
)
def test_ttl_from_cache_control_and_the_policy(cache_control: str | None, expected: Freshness) -> None:
    assert freshness(cache_control, PAGES_TTLS) == expected


def test_the_status_has_its_own_policy() -> None:
    assert policy_for("/status.json") == STATUS_TTLS
    assert policy_for("/simple/demo/index.v1_json") == PAGES_TTLS


def test_a_min_ttl_wins_over_a_shorter_max_age() -> None:
    assert freshness("max-age=5", CacheTtls(min=30, default=60, max=300)).ttl == 30


def test_fresh_then_stale_while_revalidate_then_synchronous() -> None:
    clock, origin = Clock(), FakeOrigin("max-age=60, stale-while-revalidate=30")
    origin.objects[PAGE.lstrip("/")] = b"v1"
    cache = cache_over(origin, clock)
    first = cache.get(PAGE)
    assert first is not None
    assert (first.result, first.cached.body) == ("Miss", b"v1")
    origin.objects[PAGE.lstrip("/")] = b"v2"
    clock.now += 59
    hit = cache.get(PAGE)
    assert hit is not None
    assert (hit.result, hit.cached.body, int(hit.age)) == ("Hit", b"v1", 59)
    # Past the TTL, within stale-while-revalidate: the stale copy at once, refreshed in the background.
    clock.now += 2
    origin.fetched.clear()
    stale = cache.get(PAGE)
    assert stale is not None
    assert (stale.result, stale.cached.body) == ("RefreshHit", b"v1")
    assert origin.fetched.wait(5)
    deadline = time.monotonic() + 5
    while (found := cache.get(PAGE)) is not None and found.cached.body != b"v2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert found is not None
    assert (found.result, found.cached.body) == ("Hit", b"v2")
    # Past the TTL and the window: the request waits for the origin.
    origin.objects[PAGE.lstrip("/")] = b"v3"
    clock.now += 60 + 30
    waited = cache.get(PAGE)
    assert waited is not None
    assert (waited.result, waited.cached.body) == ("Miss", b"v3")


def test_stale_if_error_serves_the_old_copy_only_within_its_window() -> None:
    clock, origin = Clock(), FakeOrigin("max-age=60, stale-if-error=100")
    origin.objects[PAGE.lstrip("/")] = b"v1"
    cache = cache_over(origin, clock)
    cache.get(PAGE)
    origin.failing = True
    clock.now += 150
    served = cache.get(PAGE)
    assert served is not None
    assert (served.result, served.cached.body) == ("Error", b"v1")
    clock.now += 20  # 170 s old: past 60 + 100
    with pytest.raises(OSError, match="origin down"):
        cache.get(PAGE)


def test_a_missing_page_is_cached_for_the_error_ttl() -> None:
    clock, origin = Clock(), FakeOrigin()
    cache = cache_over(origin, clock)
    missing = cache.get(PAGE)
    assert missing is not None
    assert missing.cached.status == 404
    origin.objects[PAGE.lstrip("/")] = b"new"
    clock.now += ERROR_CACHING_SECONDS - 1
    still = cache.get(PAGE)
    assert still is not None
    assert still.cached.status == 404
    clock.now += 1
    found = cache.get(PAGE)
    assert found is not None
    assert (found.cached.status, found.cached.body) == (200, b"new")


def test_an_invalidation_drops_what_was_cached_before_it_took_effect() -> None:
    clock, origin = Clock(), FakeOrigin()
    other = "/simple/other/index.html"
    origin.objects.update({PAGE.lstrip("/"): b"v1", other.lstrip("/"): b"o1", "simple/index.html": b"r1"})
    cache = cache_over(origin, clock)
    for uri in (PAGE, other, "/simple/index.html"):
        cache.get(uri)
    origin.objects.update({PAGE.lstrip("/"): b"v2", other.lstrip("/"): b"o2"})
    cache.invalidate([PAGE], effective_at=clock.now + 5)
    clock.now += 4
    assert cache.get(PAGE).cached.body == b"v1"  # type: ignore[union-attr]
    clock.now += 1
    assert cache.get(PAGE).cached.body == b"v2"  # type: ignore[union-attr]
    assert cache.get(other).cached.body == b"o1"  # type: ignore[union-attr]  # not named: still cached
    cache.invalidate(["/simple/other/*"], effective_at=clock.now)
    assert cache.get(other).cached.body == b"o2"  # type: ignore[union-attr]
    assert cache.get("/simple/index.html").result == "Hit"  # type: ignore[union-attr]


@pytest.fixture
def api() -> Iterator[tuple[InvalidationApi, Clock, EdgeCache]]:
    clock = Clock()
    cache = cache_over(FakeOrigin(), clock)
    service = InvalidationApi(InvalidationLedger(cache))
    yield service, clock, cache
    service.close()


def cloudfront(service: InvalidationApi):
    return boto3.client(
        "cloudfront",
        endpoint_url=service.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def batch(*paths: str, reference: str = "ref") -> dict:
    return {"Paths": {"Quantity": len(paths), "Items": list(paths)}, "CallerReference": reference}


def test_boto3_creates_gets_and_lists_invalidations(api: tuple[InvalidationApi, Clock, EdgeCache]) -> None:
    service, clock, _ = api
    client = cloudfront(service)
    created = client.create_invalidation(DistributionId=service.distribution_id, InvalidationBatch=batch(PAGE))
    invalidation = created["Invalidation"]
    assert invalidation["Status"] == "InProgress"
    assert invalidation["InvalidationBatch"]["Paths"]["Items"] == [PAGE]
    assert created["Location"].endswith(f"/invalidation/{invalidation['Id']}")
    again = client.create_invalidation(DistributionId=service.distribution_id, InvalidationBatch=batch(PAGE))
    assert again["Invalidation"]["Id"] == invalidation["Id"]  # the same caller reference: the same invalidation
    clock.now += COMPLETE_SECONDS
    got = client.get_invalidation(DistributionId=service.distribution_id, Id=invalidation["Id"])
    assert got["Invalidation"]["Status"] == "Completed"
    for number in range(4):
        client.create_invalidation(
            DistributionId=service.distribution_id, InvalidationBatch=batch(PAGE, reference=f"r{number}")
        )
    pages = client.get_paginator("list_invalidations").paginate(
        DistributionId=service.distribution_id, PaginationConfig={"PageSize": 2}
    )
    listed = [item for page in pages for item in page["InvalidationList"].get("Items", [])]
    assert len(listed) == 5
    assert [item["Status"] for item in listed] == ["InProgress"] * 4 + ["Completed"]  # newest first
    with pytest.raises(ClientError, match="NoSuchDistribution"):
        client.get_invalidation(DistributionId="E0NOPE", Id=invalidation["Id"])
    with pytest.raises(ClientError, match="NoSuchInvalidation"):
        client.get_invalidation(DistributionId=service.distribution_id, Id="INOPE")


def test_wildcards_in_flight_are_capped_as_on_cloudfront(api: tuple[InvalidationApi, Clock, EdgeCache]) -> None:
    service, clock, _ = api
    client = cloudfront(service)
    for number in range(15):
        client.create_invalidation(
            DistributionId=service.distribution_id, InvalidationBatch=batch("/simple/*", reference=f"w{number}")
        )
    with pytest.raises(ClientError, match="TooManyInvalidationsInProgress"):
        client.create_invalidation(
            DistributionId=service.distribution_id, InvalidationBatch=batch("/simple/*", reference="w15")
        )
    clock.now += COMPLETE_SECONDS
    client.create_invalidation(
        DistributionId=service.distribution_id, InvalidationBatch=batch("/simple/*", reference="w16")
    )


def test_the_syncs_refresher_invalidates_through_the_api(
    api: tuple[InvalidationApi, Clock, EdgeCache], tmp_path: Path
) -> None:
    service, clock, _cache = api
    refresher = EdgeRefresher(
        cloudfront(service),
        service.distribution_id,
        open_storage(str(tmp_path)),
        settings=EdgeSettings(InvalidationMode.TARGETED),
        reporter=Reporter(io.StringIO(), json_lines=True),
    )
    result = refresher.refresh(["demo"])
    assert result.paths == ("/simple/demo/index.html", "/simple/demo/index.v1_json")
    assert refresher.in_flight().paths == 2
    clock.now += COMPLETE_SECONDS
    assert refresher.in_flight().paths == 0
    assert service.ledger.paths_created == 2


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@needs_node
def test_the_edge_serves_from_its_cache_until_an_invalidation_takes_effect(tmp_path: Path) -> None:
    page = tmp_path / "simple" / "demo" / "index.v1_json"
    page.parent.mkdir(parents=True)
    page.write_bytes(b'{"v": 1}')
    clock = Clock()
    with EdgeServer(FolderOrigin(tmp_path), cache=True, clock=clock) as edge:

        def fetch() -> tuple[str, str, bytes]:
            connection = http.client.HTTPConnection(edge.host, edge.port, timeout=10)
            connection.request("GET", "/simple/demo/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
            response = connection.getresponse()
            body = response.read()
            connection.close()
            return response.headers["X-Cache"], response.headers["Age"], body

        assert fetch() == ("Miss from cloudfront", "0", b'{"v": 1}')
        page.write_bytes(b'{"v": 2}')
        clock.now += 20  # within the page's max-age
        assert fetch() == ("Hit from cloudfront", "20", b'{"v": 1}')
        assert edge.cloudfront_endpoint_url is not None
        assert edge.distribution_id is not None
        client = boto3.client(
            "cloudfront",
            endpoint_url=edge.cloudfront_endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        client.create_invalidation(DistributionId=edge.distribution_id, InvalidationBatch=batch(PAGE))
        assert fetch()[2] == b'{"v": 1}'
        clock.now += EFFECT_SECONDS
        assert fetch() == ("Miss from cloudfront", "0", b'{"v": 2}')


def test_an_invalidation_reaches_every_edge_location_of_the_distribution() -> None:
    clock, origin = Clock(), FakeOrigin()
    origin.objects[PAGE.lstrip("/")] = b"v1"
    near, far = cache_over(origin, clock), cache_over(origin, clock)
    ledger = InvalidationLedger(near)
    ledger.add_cache(far)
    for cache in (near, far):
        cache.get(PAGE)
    origin.objects[PAGE.lstrip("/")] = b"v2"
    ledger.create([PAGE], "both")
    clock.now += EFFECT_SECONDS
    assert [cache.get(PAGE).cached.body for cache in (near, far)] == [b"v2", b"v2"]  # type: ignore[union-attr]
