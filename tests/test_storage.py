"""Both storage backends through one behaviour suite (S3 against moto), and `open_storage`'s destinations."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sync import storage as storage_module
from sync.folder_storage import FolderStorage
from sync.layout import BINARY, FILE_CACHE_CONTROL
from sync.s3_storage import S3Storage
from sync.storage import ChecksumMismatch, PreconditionFailed, Storage, StorageError, open_storage
from tests.storage_helpers import put, put_small, sha

BAD_KEYS = ["../x", "a/../../x", "/abs", "a\\b", "a\0b", "", "a//b", "./a", "a/", "a\ud800b"]


@pytest.fixture(params=["folder", "s3"])
def storage(request, tmp_path) -> Storage:
    if request.param == "folder":
        return open_storage(str(tmp_path / "dest"))
    s3 = request.getfixturevalue("s3_dest")
    return open_storage(s3.dest, endpoint_url=s3.endpoint_url)


# ------------------------------------------------------------------------------------------- destinations


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
