"""bench/moto_s3.py's indexed listing returns moto's own pages, and its server keeps connections alive."""

from __future__ import annotations

import http.client
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import S3Backend

from bench.moto_s3 import index_bucket, indexed_listing, serve_in_thread

NAMES = st.lists(st.text(alphabet="ab/.-", min_size=1, max_size=5), max_size=40, unique=True)


BUCKETS = itertools.count()  # bucket names are global in moto: a fresh pair for each example


def _pages(backend: S3Backend, bucket: str, prefix: str, start_after: str | None, max_keys: int) -> list[Any]:
    """Every page of a listing as (names, truncated), following continuation tokens (at most 100 pages)."""
    token, pages = None, []
    for _ in range(100):
        keys, truncated, token = backend.list_objects_v2(
            bucket=backend.get_bucket(bucket), prefix=prefix, delimiter=None, continuation_token=token,
            start_after=start_after, max_keys=max_keys,
        )  # fmt: skip
        pages.append(([key if isinstance(key, str) else key.name for key in keys], truncated))
        if not truncated:
            return pages
    raise AssertionError("more than 100 pages")


@settings(max_examples=150, deadline=None)
@given(
    names=NAMES,
    removed=st.integers(0, 3),
    added=NAMES,
    prefix=st.sampled_from(["", "a", "a/", "b", "ab", "/"]),
    start_after=st.sampled_from([None, "", "a", "a/b", "b", "zz"]),
    max_keys=st.integers(0, 7),
)
def test_the_indexed_listing_pages_as_moto_does(
    *, names: list[str], removed: int, added: list[str], prefix: str, start_after: str | None, max_keys: int
) -> None:
    plain, indexed = S3Backend("us-east-1", DEFAULT_ACCOUNT_ID), S3Backend("us-east-1", DEFAULT_ACCOUNT_ID)
    indexed_listing(indexed)
    run = next(BUCKETS)
    buckets = {plain: f"listing-{run}-plain", indexed: f"listing-{run}-indexed"}
    for backend, bucket in buckets.items():
        backend.create_bucket(bucket, "us-east-1")
        for name in names:
            backend.put_object(bucket, name, b"x")
    index_bucket(indexed, buckets[indexed])
    _pages(indexed, buckets[indexed], prefix, start_after, max_keys)  # builds the index the changes must refresh
    for backend, bucket in buckets.items():
        for name in names[:removed]:
            backend.delete_object(bucket, name)
        for name in added:
            backend.put_object(bucket, name, b"y")
    expected = _pages(plain, buckets[plain], prefix, start_after, max_keys)
    assert _pages(indexed, buckets[indexed], prefix, start_after, max_keys) == expected


def test_the_bench_server_answers_many_requests_on_one_connection() -> None:
    with serve_in_thread(S3Backend("us-east-1", DEFAULT_ACCOUNT_ID), threads=2) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        for _ in range(3):
            connection.request("GET", "/")  # ListBuckets, unsigned: moto answers it
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            assert response.getheader("Connection", "").lower() != "close"
        connection.close()
