"""Both storage backends through one behaviour suite; S3 against moto, through a counting, fault-injecting proxy."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import boto3.session
import pytest
from botocore.config import Config
from botocore.retries.standard import ExponentialBackoff

from sync import storage as storage_module
from sync.layout import BINARY, FILE_CACHE_CONTROL, HTML_PAGE, JSON_PAGE, PAGE_CACHE_CONTROL, content_type_for
from sync.storage import (
    ChecksumMismatch,
    FolderStorage,
    PreconditionFailed,
    S3Storage,
    Storage,
    StorageError,
    UnstorableKey,
    open_storage,
)
from tests import s3proxy

BAD_KEYS = ["../x", "a/../../x", "/abs", "a\\b", "a\0b", "", "a//b", "./a", "a/", "a\ud800b"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(
    storage: Storage,
    key: str,
    data: bytes,
    *,
    sha256: str | None = None,
    size: int | None = -1,
    if_none_match: bool = False,
) -> None:
    storage.put_file(
        key,
        io.BytesIO(data),
        sha256=sha256 or sha(data),
        size=len(data) if size == -1 else size,
        content_type=BINARY,
        cache_control=FILE_CACHE_CONTROL,
        if_none_match=if_none_match,
    )


def put_small(storage: Storage, key: str, data: bytes, **conditions) -> str:
    return storage.put_bytes(key, data, content_type="application/json", cache_control="no-store", **conditions)


@pytest.fixture(params=["folder", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "folder":
        return open_storage(str(tmp_path / "dest"))
    s3 = request.getfixturevalue("s3_dest")
    return open_storage(s3.dest, endpoint_url=s3.endpoint_url)


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


# ------------------------------------------------------------------------------------------- destinations
def test_content_types_follow_the_key():
    assert content_type_for("simple/index.html") == HTML_PAGE == "text/html; charset=utf-8"
    assert content_type_for("simple/foo/index.html") == HTML_PAGE
    assert content_type_for("simple/foo/index.v1_json") == JSON_PAGE == "application/vnd.pypi.simple.v1+json"
    assert content_type_for(".pypi-cdn/state.json") == "application/json"
    for key in (
        "packages/ab/cd/ef/foo-1.0-py3-none-any.whl",
        "packages/ab/cd/ef/foo-1.0.tar.gz",
        "packages/ab/cd/ef/foo-1.0-py3-none-any.whl.metadata",
        "packages/ab/cd/ef/foo-1.0.zip",
    ):
        assert content_type_for(key) == BINARY == "application/octet-stream"


def test_s3_destination_is_parsed_into_bucket_and_prefix(aws_credentials):
    plain = open_storage("s3://my-bucket")
    nested = open_storage("s3://my.bucket/some/prefix/", endpoint_url="http://127.0.0.1:9")
    assert isinstance(plain, S3Storage)
    assert isinstance(nested, S3Storage)
    assert (plain.bucket, plain.prefix, plain.describe()) == ("my-bucket", "", "s3://my-bucket")
    assert (nested.bucket, nested.prefix) == ("my.bucket", "some/prefix/")
    assert nested.describe() == "s3://my.bucket/some/prefix"
    assert nested.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert nested.client.meta.config.retries == {"mode": "standard", "total_max_attempts": 5}
    assert nested.client.meta.config.max_pool_connections == storage_module.DEFAULT_S3_CONNECTIONS


def test_endpoint_and_pool_size_come_from_the_caller_or_the_environment(aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:7")
    found = open_storage("s3://my-bucket", max_connections=50)
    assert isinstance(found, S3Storage)
    assert found.client.meta.endpoint_url == "http://127.0.0.1:7"
    assert found.client.meta.config.max_pool_connections == 50


@pytest.mark.parametrize(
    ("dest", "named"),
    [
        ("s3://", "no bucket name"),
        ("s3:///x", "no bucket name"),
        ("s3://Bad_Bucket", "'Bad_Bucket' is not valid"),
        ("s3://ab", "'ab' is not valid"),
        ("s3://a..b", "'a..b' is not valid"),
        ("s3://192.168.1.1", "is not valid"),
        ("s3://bucket/../x", "prefix '../x' is not a safe path"),
        ("gs://bucket", "unsupported destination 'gs://bucket'"),
        ("s3:/bucket", "unsupported destination 's3:/bucket'"),
        ("", "empty destination"),
    ],
)
def test_bad_destination_is_a_clear_value_error(dest, named):
    with pytest.raises(ValueError, match="destination") as raised:
        open_storage(dest)
    assert named in str(raised.value)


def test_folder_destination_is_created(tmp_path):
    found = open_storage(str(tmp_path / "a" / "b"))
    assert isinstance(found, FolderStorage)
    assert (tmp_path / "a" / "b").is_dir()
    assert found.describe() == str(tmp_path / "a" / "b")


def test_unwritable_folder_destination_names_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create folder") as raised:
        open_storage(str(blocker / "mirror"))
    assert str(blocker / "mirror") in str(raised.value)


# ----------------------------------------------------------------------------------------- common suite
def test_put_file_verifies_and_stores(storage):
    data = b"wheel bytes" * 1000
    put(storage, "packages/aa/bb/cc/foo-1.0-py3-none-any.whl", data)
    found = storage.get_bytes("packages/aa/bb/cc/foo-1.0-py3-none-any.whl")
    assert found is not None
    assert found[0] == data
    info = storage.head("packages/aa/bb/cc/foo-1.0-py3-none-any.whl")
    assert info is not None
    assert (info.size, info.etag) == (len(data), found[1])
    with storage.open("packages/aa/bb/cc/foo-1.0-py3-none-any.whl") as body:
        assert body.read() == data


def test_open_carries_the_etag_of_the_version_it_reads(storage):
    first = put_small(storage, "s/state", b"one")
    with storage.open("s/state") as stream:
        assert stream.etag == first == storage.head("s/state").etag
        second = put_small(storage, "s/state", b"two", if_match=stream.etag)  # the stream's etag feeds a CAS
        assert stream.read() == b"one"
        assert stream.etag == first  # still the version this stream reads
    assert second != first
    with storage.open("s/state") as stream:
        assert (stream.etag, stream.read()) == (second, b"two")
    put(storage, "packages/f.whl", b"content")
    with storage.open("packages/f.whl") as stream:
        assert stream.etag == storage.head("packages/f.whl").etag


def test_put_file_accepts_unknown_size(storage):
    put(storage, "f", b"abc", size=None)
    assert storage.get_bytes("f")[0] == b"abc"


@pytest.mark.parametrize(
    ("promised_sha", "promised_size", "message"),
    [
        (sha(b"something else"), 7, "does not match"),
        (None, 6, "received more than the expected 6 bytes"),
        (None, 8, "received 7 bytes, expected 8"),
    ],
)
def test_put_file_mismatch_leaves_nothing_visible(storage, promised_sha, promised_size, message):
    with pytest.raises(ChecksumMismatch) as raised:
        put(storage, "packages/x/file.whl", b"payload", sha256=promised_sha, size=promised_size)
    assert "packages/x/file.whl" in str(raised.value)
    assert message in str(raised.value)
    assert storage.head("packages/x/file.whl") is None
    assert list(storage.list("")) == []


def test_put_file_mismatch_keeps_the_previous_object(storage):
    put(storage, "f", b"good")
    with pytest.raises(ChecksumMismatch):
        put(storage, "f", b"evil", sha256=sha(b"good"))
    assert storage.get_bytes("f")[0] == b"good"


@pytest.mark.parametrize("size", [1000, storage_module.SPOOL_IN_MEMORY + 1000], ids=["small", "spilled"])
def test_put_file_lets_inspect_read_the_verified_local_copy_before_it_is_visible(storage, size):
    data = hashlib.sha256(b"seed").digest() * (size // 32)
    seen = []

    def inspect(local):
        assert storage.head("packages/f.whl") is None  # not visible yet
        seen.append(local.read())
        local.seek(len(data) - 32)  # seekable, as zipfile needs
        seen.append(local.read())

    stored = storage.put_file(
        "packages/f.whl",
        io.BytesIO(data),
        sha256=sha(data),
        size=len(data),
        content_type=BINARY,
        cache_control=FILE_CACHE_CONTROL,
        inspect=inspect,
    )
    assert stored == len(data)
    assert seen == [data, data[-32:]]
    assert storage.get_bytes("packages/f.whl")[0] == data  # whatever inspect read, the whole file is stored


def test_put_file_does_not_inspect_what_fails_verification(storage):
    seen = []
    with pytest.raises(ChecksumMismatch):
        storage.put_file(
            "packages/f.whl",
            io.BytesIO(b"evil"),
            sha256=sha(b"good"),
            size=4,
            content_type=BINARY,
            cache_control=FILE_CACHE_CONTROL,
            inspect=seen.append,
        )
    assert seen == []


def test_an_inspect_error_aborts_the_put(storage):
    def inspect(local):
        raise RuntimeError("cannot read this")

    with pytest.raises(RuntimeError, match="cannot read this"):
        storage.put_file(
            "packages/f.whl",
            io.BytesIO(b"data"),
            sha256=sha(b"data"),
            size=4,
            content_type=BINARY,
            cache_control=FILE_CACHE_CONTROL,
            inspect=inspect,
        )
    assert storage.head("packages/f.whl") is None
    assert list(storage.list("")) == []
    if isinstance(storage, FolderStorage):
        assert [path for path in storage.root.rglob("*") if path.is_file()] == []  # no temp file left behind


def test_put_bytes_if_none_match_creates_only_once(storage):
    etag = put_small(storage, "s/lease", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed, match="s/lease"):
        put_small(storage, "s/lease", b"second", if_none_match=True)
    assert storage.get_bytes("s/lease") == (b"first", etag)


@pytest.mark.hostile_class(8)
def test_put_file_if_none_match_never_replaces_a_stored_object(storage):
    put(storage, "packages/a/f.whl", b"first", if_none_match=True)
    with pytest.raises(PreconditionFailed, match=r"packages/a/f\.whl"):
        put(storage, "packages/a/f.whl", b"other bytes", if_none_match=True)
    assert storage.get_bytes("packages/a/f.whl")[0] == b"first"
    assert [info.key for info in storage.list("packages/")] == ["packages/a/f.whl"]  # no temp file left


def test_stored_sha256_is_what_the_backend_recorded(storage):
    put(storage, "packages/f.whl", b"content")
    put_small(storage, "m/f.metadata", b"metadata")
    recorded = isinstance(storage, S3Storage)  # a folder records no checksum: callers re-hash
    assert storage.stored_sha256("packages/f.whl") == (7, sha(b"content") if recorded else None)
    assert storage.stored_sha256("m/f.metadata") == (8, sha(b"metadata") if recorded else None)
    assert storage.stored_sha256("absent") is None


@pytest.mark.hostile_class(9)
def test_folder_refuses_a_name_too_long_and_finds_none_stored(tmp_path):
    storage = FolderStorage(tmp_path / "m")
    too_long = "packages/aa/" + "é" * 128 + ".whl"  # 260 bytes
    with pytest.raises(UnstorableKey, match="too long"):
        put(storage, too_long, b"x")
    with pytest.raises(UnstorableKey, match="too long"):
        put_small(storage, too_long, b"x")
    assert storage.head(too_long) is None
    assert storage.get_bytes(too_long) is None
    storage.delete(too_long)  # absent
    with pytest.raises(StorageError, match="no such object"):
        storage.open(too_long)
    assert list(tmp_path.rglob("*.tmp-*")) == []


@pytest.mark.hostile_class(9)
def test_folder_stores_a_name_at_the_file_systems_limit(tmp_path):
    storage = FolderStorage(tmp_path / "m")
    at_limit = "packages/aa/" + "x" * 251 + ".whl"  # 255 bytes: its temp file's name must be shorter
    put(storage, at_limit, b"x", if_none_match=True)
    put_small(storage, "s/" + "y" * 255, b"y")
    assert storage.get_bytes(at_limit)[0] == b"x"


def test_put_bytes_if_match_is_compare_and_swap(storage):
    first = put_small(storage, "s/state", b"one")
    second = put_small(storage, "s/state", b"two", if_match=first)
    assert second != first
    with pytest.raises(PreconditionFailed):
        put_small(storage, "s/state", b"stale", if_match=first)
    assert storage.get_bytes("s/state") == (b"two", second)
    with pytest.raises(PreconditionFailed, match="s/absent"):
        put_small(storage, "s/absent", b"x", if_match=first)
    assert storage.head("s/absent") is None


def test_put_bytes_refuses_both_conditions(storage):
    with pytest.raises(ValueError, match="exclude each other"):
        put_small(storage, "k", b"x", if_match='"e"', if_none_match=True)


def test_etag_changes_on_every_write_even_at_the_same_size(storage):
    etags = [put_small(storage, "k", b"%04d" % n) for n in range(20)]
    assert len(set(etags)) == 20
    assert storage.head("k").etag == etags[-1]


def test_absent_objects(storage):
    assert storage.get_bytes("nope") is None
    assert storage.head("nope") is None
    assert storage.head("nope/deeper") is None
    with pytest.raises(StorageError, match="nope"):
        storage.open("nope")
    storage.delete("nope")  # absent is not an error
    assert list(storage.list("nope/")) == []


def test_delete(storage):
    etag = put_small(storage, "a/b/c", b"x")
    storage.delete("a/b/c")
    assert storage.head("a/b/c") is None
    put_small(storage, "a/b/c", b"y")
    with pytest.raises(PreconditionFailed):
        storage.delete("a/b/c", if_match=etag)
    assert storage.get_bytes("a/b/c")[0] == b"y"
    storage.delete("a/b/c", if_match=storage.head("a/b/c").etag)
    assert storage.head("a/b/c") is None
    with pytest.raises(PreconditionFailed, match="a/b/c"):
        storage.delete("a/b/c", if_match=etag)


def test_list_is_in_key_order_and_honours_the_prefix(storage):
    keys = ["b", "a/y/z", "a-b/x", "a/x", "packages/aa/f.whl", "packages/aa/f.whl.metadata", ".pypi-cdn/state.json"]
    for key in keys:
        put_small(storage, key, key.encode())
    listed = list(storage.list(""))
    assert [info.key for info in listed] == sorted(keys)
    assert all(info.size == len(info.key) for info in listed)
    assert [info.key for info in storage.list("a/")] == ["a/x", "a/y/z"]
    assert [info.key for info in storage.list("a")] == ["a-b/x", "a/x", "a/y/z"]
    assert [info.key for info in storage.list("packages/")] == ["packages/aa/f.whl", "packages/aa/f.whl.metadata"]
    assert {info.key: info.etag for info in listed}["b"] == storage.head("b").etag


@pytest.mark.parametrize("key", BAD_KEYS)
def test_unsafe_keys_are_refused_by_every_verb(storage, key, tmp_path):
    verbs = [
        lambda: put(storage, key, b"x"),
        lambda: put_small(storage, key, b"x"),
        lambda: storage.get_bytes(key),
        lambda: storage.head(key),
        lambda: storage.open(key),
        lambda: storage.delete(key),
    ]
    for verb in verbs:
        with pytest.raises(StorageError, match="refusing key"):
            verb()
    assert list(storage.list("")) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in (["dest"], [])  # nothing written beside the folder


def test_racing_creators_exactly_one_wins(storage):
    barrier = threading.Barrier(8, timeout=10)
    wins: list[int] = []

    def create(n: int) -> None:
        barrier.wait()
        try:
            put_small(storage, "race", b"%d" % n, if_none_match=True)
            wins.append(n)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(wins) == 1
    assert storage.get_bytes("race")[0] == b"%d" % wins[0]


def test_compare_and_swap_counter_loses_no_update(storage):
    put_small(storage, "counter", b"0")

    def increment_five_times() -> None:
        done = 0
        for _ in range(200):  # bounded: retries after lost races
            data, etag = storage.get_bytes("counter")
            try:
                put_small(storage, "counter", b"%d" % (int(data) + 1), if_match=etag)
            except PreconditionFailed:
                continue
            done += 1
            if done == 5:
                return

    threads = [threading.Thread(target=increment_five_times) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert storage.get_bytes("counter")[0] == b"20"


# ------------------------------------------------------------------------------------------- folder only
def test_folder_leaves_no_temp_file_and_lists_none(tmp_path):
    folder = FolderStorage(tmp_path / "dest")
    with pytest.raises(ChecksumMismatch):
        put(folder, "p/f.whl", b"data", sha256=sha(b"other"))
    assert [p.name for p in (tmp_path / "dest" / "p").iterdir()] == []
    (tmp_path / "dest" / "p" / ".g.whl.tmp-abc123").write_bytes(b"half")  # as a killed run leaves it
    put(folder, "p/f.whl", b"data")
    assert [info.key for info in folder.list("")] == ["p/f.whl"]
    assert oct((tmp_path / "dest" / "p" / "f.whl").stat().st_mode & 0o777) == "0o644"


def test_folder_disk_full_names_the_key_and_cleans_up(tmp_path, monkeypatch):
    folder = FolderStorage(tmp_path / "dest")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage_module.os, "fsync", full)
    with pytest.raises(StorageError, match=r"p/f\.whl: cannot write .*No space left on device"):
        put(folder, "p/f.whl", b"data")
    with pytest.raises(StorageError, match="No space left on device"):
        put_small(folder, "p/g", b"data")
    assert list((tmp_path / "dest" / "p").iterdir()) == []


def test_folder_prunes_empty_directories_after_delete(tmp_path):
    folder = FolderStorage(tmp_path / "dest")
    put(folder, "packages/aa/bb/cc/f.whl", b"x")
    put(folder, "packages/aa/other", b"y")
    folder.delete("packages/aa/bb/cc/f.whl")
    assert not (tmp_path / "dest" / "packages" / "aa" / "bb").exists()
    assert (tmp_path / "dest" / "packages" / "aa" / "other").exists()


def test_folder_upload_errors_from_the_source_pass_through_unchanged(tmp_path):
    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise TimeoutError("upstream stalled")

    folder = FolderStorage(tmp_path / "dest")
    with pytest.raises(TimeoutError, match="upstream stalled"):
        folder.put_file("f", Broken(), sha256=sha(b""), size=None, content_type=BINARY, cache_control="")
    assert list((tmp_path / "dest").iterdir()) == []


# ----------------------------------------------------------------------------------------------- S3 only
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
    assert s3.counts["PUT"] == storage_module.S3_MAX_ATTEMPTS


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


# ------------------------------------------------------------------------------------------------ memory
MEASURE = r"""
import hashlib, sys
from sync.layout import BINARY, FILE_CACHE_CONTROL
from sync.storage import open_storage

dest, endpoint, size = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
block = hashlib.sha256(b"seed").digest() * (1024 * 1024 // 32)

class Generated:
    def __init__(self): self.left = size
    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return (block * (n // len(block) + 1))[:n]

digest, source = hashlib.sha256(), Generated()
while chunk := source.read(len(block)): digest.update(chunk)

def peak_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"): return int(line.split()[1])

store = open_storage(dest, endpoint_url=endpoint)
before = peak_kib()
store.put_file("big.bin", Generated(), sha256=digest.hexdigest(), size=size, content_type=BINARY,
               cache_control=FILE_CACHE_CONTROL)
assert store.head("big.bin").size == size
print(peak_kib() - before)
"""


def peak_growth_mib(dest: str, endpoint_url: str | None, size: int) -> float:
    """VmHWM growth of a fresh interpreter storing a generated `size`-byte stream (the test's own RSS untouched)."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, dest, endpoint_url or "", str(size)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip()) / 1024


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_put_file_memory_stays_bounded(kind, tmp_path, request):
    size = 160 * 1024 * 1024  # past the 100 MiB bound: buffering the whole file would fail
    if kind == "folder":
        growth = peak_growth_mib(str(tmp_path / "dest"), None, size)
    else:
        s3 = request.getfixturevalue("s3_dest")
        growth = peak_growth_mib(s3.dest, s3.endpoint_url, size)
    assert growth < 100, f"{kind}: peak RSS grew {growth:.0f} MiB storing {size >> 20} MiB"
