"""The S3 backend's own behaviour, against moto through a counting, fault-injecting proxy (tests/s3proxy.py)."""

from __future__ import annotations

import base64
import hashlib
import io

import boto3.session
import pytest
from botocore.config import Config
from botocore.retries.standard import ExponentialBackoff

from sync import s3_storage as s3_module
from sync.layout import BINARY, FILE_CACHE_CONTROL, HTML_PAGE, PAGE_CACHE_CONTROL
from sync.storage import ChecksumMismatch, PreconditionFailed, StorageError, open_storage
from tests import s3proxy
from tests.storage_helpers import put, put_small, sha


@pytest.fixture
def instant_retries(monkeypatch):
    """botocore retries without its backoff sleeps (up to 20 s each), so retry tests stay fast."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


@pytest.fixture
def proxied(s3_proxy_dest):
    """(storage, destination) for S3 through the proxy, with counts reset after setup."""
    store = open_storage(s3_proxy_dest.dest, endpoint_url=s3_proxy_dest.endpoint_url)
    s3_proxy_dest.proxy.reset_counts()
    return store, s3_proxy_dest


def test_s3_put_file_is_one_request_with_metadata_and_checksum(proxied):
    store, s3 = proxied
    data = b"x" * 100_000
    store.put_file(
        "packages/f.whl",
        io.BytesIO(data),
        sha256=sha(data),
        size=len(data),
        content_type=BINARY,
        cache_control=FILE_CACHE_CONTROL,
    )
    assert s3.counts == {"PUT": 1}
    stored = s3.client.head_object(Bucket=s3.bucket, Key="mirror/packages/f.whl", ChecksumMode="ENABLED")
    assert stored["ContentType"] == BINARY
    assert stored["CacheControl"] == FILE_CACHE_CONTROL
    assert stored["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert stored["ContentLength"] == len(data)


def test_s3_verbs_are_one_request_each(proxied):
    store, s3 = proxied
    etag = store.put_bytes("simple/index.html", b"<html>", content_type=HTML_PAGE, cache_control=PAGE_CACHE_CONTROL)
    store.get_bytes("simple/index.html")
    store.head("simple/index.html")
    list(store.list("simple/"))
    store.delete("simple/index.html", if_match=etag)
    assert s3.counts == {"PUT": 1, "GET": 1, "HEAD": 1, "LIST": 1, "DELETE": 1}
    assert s3.proxy.log[0] == ("PUT", "mirror/simple/index.html")


def test_s3_mismatch_sends_nothing(proxied):
    store, s3 = proxied
    with pytest.raises(ChecksumMismatch):
        put(store, "f", b"data", sha256=sha(b"other"))
    assert s3.counts == {}


def test_s3_list_sees_only_its_prefix(proxied):
    store, s3 = proxied
    s3.client.put_object(Bucket=s3.bucket, Key="elsewhere/x", Body=b"x")
    s3.client.put_object(Bucket=s3.bucket, Key="mirror-sibling/x", Body=b"x")
    put_small(store, "inside", b"y")
    assert [info.key for info in store.list("")] == ["inside"]


def test_s3_retries_slowdown_and_server_errors(proxied, instant_retries):
    store, s3 = proxied
    s3.proxy.inject("PUT", r"f\.whl$", s3proxy.SLOW_DOWN, times=2)
    s3.proxy.inject("GET", r"f\.whl$", s3proxy.INTERNAL_ERROR, times=1)
    put(store, "p/f.whl", b"data")
    assert store.get_bytes("p/f.whl")[0] == b"data"
    assert s3.counts == {"PUT": 3, "GET": 2}


def test_s3_retries_a_reset_connection(proxied, instant_retries):
    store, s3 = proxied
    s3.proxy.inject("PUT", "f", s3proxy.RESET, times=1)
    put(store, "f", b"data" * 1000)
    assert s3.counts["PUT"] == 2
    assert s3.client.get_object(Bucket=s3.bucket, Key="mirror/f")["Body"].read() == b"data" * 1000


def test_s3_gives_up_with_the_code_and_key_named(proxied, instant_retries):
    store, s3 = proxied
    s3.proxy.inject("PUT", "f", s3proxy.SLOW_DOWN, times=100)
    with pytest.raises(StorageError, match=r"s3://.*/mirror/f: PUT failed: SlowDown \(HTTP 503\)"):
        put_small(store, "f", b"x")
    assert s3.counts["PUT"] == s3_module.S3_MAX_ATTEMPTS


def test_s3_error_codes_map_to_storage_errors(proxied):
    store, s3 = proxied
    s3.proxy.inject("PUT", "bad-digest", s3proxy.BAD_DIGEST)
    s3.proxy.inject("PUT", "precondition", s3proxy.PRECONDITION_FAILED)
    with pytest.raises(ChecksumMismatch, match="BadDigest"):
        put(store, "bad-digest", b"data")
    with pytest.raises(PreconditionFailed, match="precondition"):
        put_small(store, "precondition", b"x", if_none_match=True)
    assert s3.counts == {"PUT": 2}


def test_s3_missing_bucket_is_named(s3_dest):
    store = open_storage("s3://no-such-bucket-here/x", endpoint_url=s3_dest.endpoint_url)
    with pytest.raises(StorageError, match="s3://no-such-bucket-here/x/k: PUT failed: NoSuchBucket"):
        put_small(store, "k", b"x")


def test_moto_stores_a_corrupted_upload_but_reads_catch_it(proxied):
    """moto 5.2 accepts a PUT whose ChecksumSHA256 mismatches (real S3 answers BadDigest) and keeps the claimed
    checksum; a later GET through S3Storage then fails botocore's checksum validation. The gap, pinned down."""
    store, s3 = proxied
    s3.proxy.inject("PUT", "f", s3proxy.CORRUPT_BODY)
    put_small(store, "f", b"abc")
    with pytest.raises(StorageError, match="mirror/f: GET failed: Expected checksum"):
        store.get_bytes("f")
    raw = boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, config=Config(response_checksum_validation="when_required")
    )
    assert raw.get_object(Bucket=s3.bucket, Key="mirror/f")["Body"].read() == bytes([ord("a") ^ 0xFF]) + b"bc"
