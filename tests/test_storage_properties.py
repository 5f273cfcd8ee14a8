"""Property tests over storage keys and file URLs (hypothesis): whatever hostile names and paths upstream sends, the
mirror writes only under `simple/`, `packages/` and its private prefix, on a folder and on S3 (moto).

The budget is small (MAX_EXAMPLES a property): each example of the end-to-end property is a project sync.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from sync.config import MirrorConfig
from sync.folder_storage import FolderStorage
from sync.jobs import ProjectJob
from sync.layout import BINARY, STATE_PREFIX
from sync.progress import Reporter
from sync.project_sync import ProjectSync
from sync.s3_storage import S3Storage
from sync.storage import Storage, StorageError, open_storage
from sync.upstream import UpstreamClient
from tests.fixtures.s3 import S3Destination
from tests.upstream.index import FakeIndex
from tests.upstream.server import JSON_TYPE, UpstreamServer

MAX_EXAMPLES = 25
ALLOWED_PREFIXES = ("simple/", "packages/", STATE_PREFIX)
# Pieces hostile names and paths are made of: traversal in its spellings, separators, control bytes, odd Unicode.
PIECES = st.sampled_from(
    [
        "..",
        ".",
        "%2e%2e",
        "%2E.",
        "%2f",
        "%5c",
        "/",
        "//",
        "\\",
        "\x00",
        "\n",
        "\x7f",
        "%00",
        "~",
        ".pypi-cdn",
        "simple",
        "packages",
        "state.json",
        "é",
        "\u202e",
        "\ud800",
        "x" * 120,
        "tiny",
        "-1.0.tar.gz",
        ".whl",
        ".metadata",
        ".tmp-abc",
    ]
)
HOSTILE_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=8)), min_size=1, max_size=6).map("".join)
settings.register_profile(
    "storage-properties",
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking: the budget stays bounded when one fails
)
PROPERTY = settings.get_profile("storage-properties")


def written_keys(storage: Storage) -> list[str]:
    return [info.key for info in storage.list("")]


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() or path.is_symlink()]


@pytest.fixture(params=["folder", "s3"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> Path | S3Storage:
    """A folder, or a moto bucket's prefix; each example gets a fresh destination in it."""
    if request.param == "folder":
        return tmp_path
    s3: S3Destination = request.getfixturevalue("s3_dest")
    storage = open_storage(s3.dest, endpoint_url=s3.endpoint_url)
    assert isinstance(storage, S3Storage)
    return storage


def fresh(destination: Path | S3Storage) -> Storage:
    """A new empty destination: `<new folder>/mirror`, or `<base prefix>/<new prefix>` (one S3 client for all)."""
    if isinstance(destination, Path):
        return FolderStorage(Path(tempfile.mkdtemp(dir=destination)) / "mirror")
    return S3Storage(destination.bucket, destination.prefix + uuid.uuid4().hex[:12], client=destination.client)


def assert_inside(storage: Storage) -> None:
    """Nothing beside a folder destination; no bucket key outside the S3 destination's base prefix."""
    if isinstance(storage, FolderStorage):
        assert os.listdir(storage.root.parent) == [storage.root.name]
    else:
        assert isinstance(storage, S3Storage)
        base = storage.prefix.split("/")[0] + "/"
        listed = storage.client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
        assert [item["Key"] for item in listed if not item["Key"].startswith(base)] == []


@PROPERTY
@given(key=HOSTILE_TEXT, data=st.binary(max_size=64))
@example(key="packages/aa/tiny-1.0.tar.gz", data=b"stored")  # a key both destinations hold
@example(key=".pypi-cdn/../../outside", data=b"refused")
def test_a_key_is_stored_at_itself_inside_the_destination_or_refused(
    destination: Path | S3Storage, key: str, data: bytes
) -> None:
    storage = fresh(destination)
    for write in (
        lambda: storage.put_bytes(key, data, content_type=BINARY, cache_control="no-store"),
        lambda: storage.put_file(
            key,
            io.BytesIO(data),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            content_type=BINARY,
            cache_control="no-store",
            if_none_match=True,
        ),
    ):
        try:
            write()
        except StorageError:
            assert written_keys(storage) == []
            continue
        assert written_keys(storage) == [key]
        if isinstance(storage, FolderStorage):
            assert storage.root.resolve() in (storage.root / key).resolve().parents
            assert files_under(storage.root) == [storage.root / key]
        assert_inside(storage)
        storage.delete(key)


@pytest.fixture
def hostile_upstream(upstream_factory: Callable[..., UpstreamServer]) -> UpstreamServer:
    index = FakeIndex()
    index.add_file("tiny", "tiny-1.0.tar.gz", b"tiny", version="1.0")
    return upstream_factory(index)


CONTENT = b"hostile file"


@PROPERTY
@given(
    entries=st.lists(
        st.tuples(HOSTILE_TEXT, st.lists(HOSTILE_TEXT, min_size=0, max_size=3), st.booleans()), min_size=1, max_size=4
    )
)
def test_a_hostile_page_writes_only_pages_files_and_the_private_state(
    destination: Path | S3Storage,
    hostile_upstream: UpstreamServer,
    entries: list[tuple[str, list[str], bool]],
) -> None:
    """Entries of (filename, URL path segments, quoted?): the file is served wherever its URL points upstream."""
    storage = fresh(destination)
    files = []
    for filename, segments, quoted in entries:
        path = "/".join(["", *segments, filename])
        url_path = quote(path, safe="/%", errors="surrogatepass") if quoted else path
        for served in {path, url_path}:
            hostile_upstream.override_path(served, CONTENT, "application/octet-stream")
            hostile_upstream.override_path(served + ".metadata", CONTENT, "application/octet-stream")
        digest = {"sha256": hashlib.sha256(CONTENT).hexdigest()}
        files.append({"filename": filename, "url": url_path, "hashes": digest, "core-metadata": quoted and digest})
    meta = {"api-version": "1.1", "_last-serial": 5}
    body = json.dumps({"meta": meta, "name": "tiny", "files": files}).encode("utf-8", "surrogatepass")
    hostile_upstream.override_page("tiny", body, JSON_TYPE)
    config = MirrorConfig(dest=storage.describe(), upstream=hostile_upstream.url, workers=1, file_attempts=1)
    client = UpstreamClient(hostile_upstream.url, retries=0, backoff=0, max_connections=1)
    mirror = ProjectSync(config, client, storage, Reporter(io.StringIO(), json_lines=True))
    try:
        mirror.sync(ProjectJob("tiny", fresh=True))
    finally:
        mirror.close()
        hostile_upstream.clear_overrides()
    keys = written_keys(storage)
    assert [key for key in keys if not key.startswith(ALLOWED_PREFIXES)] == []
    assert [key for key in keys if key.startswith("packages/") and ".." in key.split("/")] == []
    if isinstance(storage, FolderStorage):
        inside = [path.relative_to(storage.root).as_posix() for path in files_under(storage.root)]
        assert sorted(inside) == sorted(keys)
    assert_inside(storage)
