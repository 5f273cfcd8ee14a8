"""The sync engine end to end against the local upstream, into a folder and into a moto S3 bucket."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import tracemalloc
import zipfile
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from sync import files as files_module
from sync import render
from sync.config import MirrorConfig
from sync.files import METADATA_MAX_BYTES, wheel_metadata
from sync.jobs import Outcome, ProjectResult
from sync.layout import BINARY, FILE_CACHE_CONTROL, STATE_KEY
from sync.lease import LeaseHeld, acquire
from sync.progress import Reporter
from sync.run import SyncRun
from sync.state import load_state
from sync.storage import Storage, open_storage
from sync.upstream import UpstreamClient
from sync.verify import verify_mirror
from tests.upstream.corpus import installable_wheel
from tests.upstream.server import Fault

WRITE_VERBS = ("put_file", "put_bytes", "delete")


@dataclass
class CountingStorage:
    """Wraps a Storage and counts the calls of each verb (each is one S3 request)."""

    inner: Storage
    calls: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __getattr__(self, verb):
        method = getattr(self.inner, verb)

        def counted(*args, **kwargs):
            with self.lock:
                self.calls[verb] = self.calls.get(verb, 0) + 1
            return method(*args, **kwargs)

        return counted

    def writes(self) -> int:
        return sum(self.calls.get(verb, 0) for verb in WRITE_VERBS)

    def reset(self) -> None:
        self.calls.clear()


@pytest.fixture(params=["folder", "s3"])
def destination(request, tmp_path):
    if request.param == "folder":
        return SimpleNamespace(dest=str(tmp_path / "mirror"), endpoint_url=None, kind="folder")
    s3 = request.getfixturevalue("s3_dest")
    return SimpleNamespace(dest=s3.dest, endpoint_url=s3.endpoint_url, kind="s3", s3=s3)


@dataclass
class HarnessRun:
    """A run's failures and whether it wrote the root, with every project's result, as `on_result` received them."""

    failed: list[ProjectResult]
    root_written: bool
    projects: list[ProjectResult]


class Harness:
    """A run (the CLI's) wired to the local upstream and a destination, re-creatable with other settings."""

    def __init__(self, upstream, destination, **settings):
        self.upstream = upstream
        self.destination = destination
        self.storage = CountingStorage(open_storage(destination.dest, endpoint_url=destination.endpoint_url))
        self.settings = settings
        self.events = io.StringIO()
        self.client: UpstreamClient | None = None

    def config(self) -> MirrorConfig:
        return MirrorConfig(dest=self.destination.dest, upstream=self.upstream.url, workers=4, **self.settings)

    def run(self) -> HarnessRun:
        config = self.config()
        self.client = UpstreamClient(
            config.upstream,
            max_connections=config.workers,
            retries=2,
            backoff=0.01,
            file_hosts=config.allowed_file_hosts,
        )
        mirror = SyncRun.local(config, self.client, self.storage, Reporter(self.events, json_lines=True))
        results: list[ProjectResult] = []
        try:
            run = mirror.run(owner="test", on_result=results.append)
        finally:
            mirror.close()
        return HarnessRun(run.failed, run.root_written, results)

    def page(self, name: str):
        found = self.storage.inner.get_bytes(f"simple/{name}/index.v1_json")
        return None if found is None else render.parse_published_json(found[0])

    def sound(self) -> None:
        report = verify_mirror(self.storage.inner)
        assert report.problems == []
        assert report.orphans == []

    def events_named(self, event: str) -> list[dict]:
        return [r for line in self.events.getvalue().splitlines() if (r := json.loads(line))["event"] == event]


def upstream_files(fake_index, project: str):
    return {f.filename: f for f in fake_index.project(project).files}


def test_cold_mirror_stores_every_file_at_upstreams_path_and_publishes_pages(upstream, fake_index, destination):
    mirror = Harness(upstream, destination)
    result = mirror.run()
    assert result.failed == []
    for project in fake_index.projects():
        page = mirror.page(project.normalized)
        assert page is not None
        assert {f.filename for f in page.files} == {f.filename for f in project.files}
        for dist in page.files:
            expected = upstream_files(fake_index, project.name)[dist.filename]
            assert dist.key == expected.url_path.lstrip("/")
            assert dist.sha256 == expected.sha256
            body, _ = mirror.storage.inner.get_bytes(dist.key)
            assert hashlib.sha256(body).hexdigest() == expected.sha256
            if expected.metadata is not None:
                assert mirror.storage.inner.get_bytes(dist.metadata_key)[0] == expected.metadata
    root = json.loads(mirror.storage.inner.get_bytes("simple/index.v1_json")[0])
    assert sorted(p["name"] for p in root["projects"]) == sorted(p.normalized for p in fake_index.projects())
    mirror.sound()


def test_pages_link_relatively_and_objects_carry_content_type_and_cache_control(upstream, fake_index, s3_dest):
    destination = SimpleNamespace(dest=s3_dest.dest, endpoint_url=s3_dest.endpoint_url)
    mirror = Harness(upstream, destination)
    assert mirror.run().failed == []
    project = fake_index.projects()[0].normalized
    html = mirror.storage.inner.get_bytes(f"simple/{project}/index.html")[0].decode()
    assert 'href="../../packages/' in html
    assert "http://" not in html.split("<body>")[-1]
    prefix = s3_dest.dest.removeprefix(f"s3://{s3_dest.bucket}").strip("/")

    def head(key):
        return s3_dest.client.head_object(Bucket=s3_dest.bucket, Key=f"{prefix}/{key}" if prefix else key)

    assert head(f"simple/{project}/index.html")["ContentType"] == "text/html; charset=utf-8"
    assert head(f"simple/{project}/index.v1_json")["ContentType"] == "application/vnd.pypi.simple.v1+json"
    page_cache = head(f"simple/{project}/index.v1_json")["CacheControl"]
    assert "max-age=30" in page_cache
    assert "stale-if-error=" in page_cache
    assert "stale-while-revalidate" not in page_cache  # it would serve a rarely-read page's old copy for minutes
    file_key = mirror.page(project).files[0].key
    assert head(file_key)["CacheControl"] == "public, max-age=31536000, immutable"


def test_html_only_upstream_gives_the_same_mirror(upstream, fake_index, tmp_path):
    upstream.json_enabled = False
    html_mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "html"), endpoint_url=None))
    assert html_mirror.run().failed == []
    upstream.json_enabled = True
    json_mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "json"), endpoint_url=None))
    assert json_mirror.run().failed == []
    for project in fake_index.projects():
        html_page, json_page = html_mirror.page(project.normalized), json_mirror.page(project.normalized)
        assert [(f.key, f.sha256, f.yanked, f.requires_python) for f in html_page.files] == [
            (f.key, f.sha256, f.yanked, f.requires_python) for f in json_page.files
        ]
    html_mirror.sound()


def test_rerun_with_no_change_makes_one_feed_request_and_writes_nothing(upstream, destination):
    mirror = Harness(upstream, destination)
    mirror.run()
    mirror.storage.reset()
    upstream.reset_log()
    result = mirror.run()
    assert result.projects == []
    assert upstream.count() == 1
    assert upstream.count("/pypi", method="POST") == 1
    assert mirror.storage.writes() == 0


def test_rerun_without_change_feed_uses_etags_for_allowlisted_projects(upstream, fake_index, tmp_path):
    upstream.xmlrpc_enabled = False
    names = [p.name for p in fake_index.projects()]
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), projects=tuple(names))
    mirror.run()
    mirror.storage.reset()
    upstream.reset_log()
    result = mirror.run()
    assert {p.outcome for p in result.projects} == {Outcome.UNCHANGED}
    assert upstream.count("/simple/") == len(names)
    assert {r.status for r in upstream.requests if r.path.startswith("/simple/")} == {304}
    assert upstream.count("/packages/") == 0
    assert mirror.storage.calls.get("put_file", 0) == 0
    assert mirror.storage.calls.get("delete", 0) == 1  # only the lease's release
    assert mirror.storage.calls.get("put_bytes", 0) == 1  # only the lease


def test_rerun_without_change_feed_reads_the_root_serials_once(upstream, tmp_path):
    upstream.xmlrpc_enabled = False
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    mirror.run()
    mirror.storage.reset()
    upstream.reset_log()
    assert mirror.run().projects == []
    assert [r.path for r in upstream.requests] == ["/simple/"]
    assert mirror.storage.writes() == 0


def test_new_release_is_mirrored_incrementally(upstream, fake_index, destination):
    mirror = Harness(upstream, destination)
    mirror.run()
    project = fake_index.projects()[0]
    fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"new release", version="9.0")
    upstream.reset_log()
    result = mirror.run()
    assert [(p.name, p.outcome) for p in result.projects] == [(project.normalized, Outcome.UPDATED)]
    assert upstream.count("/packages/") == 1
    assert f"{project.normalized}-9.0.tar.gz" in {f.filename for f in mirror.page(project.normalized).files}
    mirror.sound()


def test_deleted_file_release_and_project_are_removed_after_their_pages(upstream, fake_index, destination):
    mirror = Harness(upstream, destination)
    mirror.run()
    first, second = fake_index.projects()[:2]
    gone_file = first.files[0]
    fake_index.remove_file(first.name, gone_file.filename)
    gone_project_keys = [f.url_path.lstrip("/") for f in second.files]
    fake_index.remove_project(second.name)
    result = mirror.run()
    outcomes = {p.name: p.outcome for p in result.projects}
    assert outcomes == {first.normalized: Outcome.UPDATED, second.normalized: Outcome.REMOVED}  # the feed says so
    assert mirror.storage.inner.head(gone_file.url_path.lstrip("/")) is None
    assert gone_file.filename not in {f.filename for f in mirror.page(first.normalized).files}
    assert mirror.page(second.normalized) is None
    assert all(mirror.storage.inner.head(key) is None for key in gone_project_keys)
    root = json.loads(mirror.storage.inner.get_bytes("simple/index.v1_json")[0])
    assert second.normalized not in {p["name"] for p in root["projects"]}
    mirror.sound()


def test_yank_is_mirrored_with_its_reason(upstream, fake_index, tmp_path):
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    mirror.run()
    project = fake_index.projects()[0]
    target = project.files[0]
    fake_index.yank(project.name, target.filename, "broken <build>")
    mirror.run()
    page = mirror.page(project.normalized)
    assert {f.filename: f.yanked for f in page.files}[target.filename] == "broken <build>"
    html = mirror.storage.inner.get_bytes(f"simple/{project.normalized}/index.html")[0].decode()
    assert 'data-yanked="broken &lt;build&gt;"' in html


def test_corrupt_download_is_retried(upstream, fake_index, tmp_path):
    upstream.inject(r"^/packages/", Fault.corrupt(), times=1)
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    assert len(mirror.events_named("file_retry")) == 1
    mirror.sound()


def test_persistently_wrong_file_keeps_the_old_page(upstream, fake_index, destination):
    mirror = Harness(upstream, destination)
    mirror.run()
    project = fake_index.projects()[0]
    old_page_bytes = mirror.storage.inner.get_bytes(f"simple/{project.normalized}/index.v1_json")[0]
    new = fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"x" * 5000, version="9.0")
    upstream.inject(rf"^{new.url_path}$", Fault.corrupt(), times=10)
    result = mirror.run()
    assert [p.name for p in result.failed] == [project.normalized]
    assert "sha256" in result.failed[0].errors[0] or "checksum" in result.failed[0].errors[0].lower()
    assert mirror.storage.inner.get_bytes(f"simple/{project.normalized}/index.v1_json")[0] == old_page_bytes
    assert mirror.storage.inner.head(new.url_path.lstrip("/")) is None
    mirror.sound()
    # The failed project is retried by the next run, which succeeds once upstream serves the right bytes.
    upstream.clear_faults()
    assert [p.outcome for p in mirror.run().projects] == [Outcome.UPDATED]
    mirror.sound()


def test_stale_page_is_never_published(upstream, fake_index, tmp_path):
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    mirror.run()
    project = fake_index.projects()[0]
    fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"fresh", version="9.0")
    upstream.inject(rf"^/simple/{project.normalized}/$", Fault.stale_page(1), times=50)
    result = mirror.run()
    assert [p.name for p in result.failed] == [project.normalized]
    assert f"{project.normalized}-9.0.tar.gz" not in {f.filename for f in mirror.page(project.normalized).files}
    upstream.clear_faults()
    assert [p.outcome for p in mirror.run().projects] == [Outcome.UPDATED]
    assert f"{project.normalized}-9.0.tar.gz" in {f.filename for f in mirror.page(project.normalized).files}


def test_filters_apply_to_pages_and_files_alike(upstream, fake_index, tmp_path):
    project = fake_index.projects()[0]
    fake_index.add_file(project.name, f"{project.normalized}-0.1.tar.gz", b"old", version="0.1")
    fake_index.add_file(project.name, f"{project.normalized}-99.0.tar.gz", b"newest", version="99.0")
    mirror = Harness(
        upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), projects=(project.name,), keep_latest=1
    )
    assert mirror.run().failed == []
    page = mirror.page(project.normalized)
    assert [f.filename for f in page.files] == [f"{project.normalized}-99.0.tar.gz"]
    assert page.versions == ("99.0",)
    stored = [info.key for info in mirror.storage.inner.list("packages/")]
    assert stored == [page.files[0].key]
    mirror.sound()


def test_a_second_run_is_refused_while_the_lease_is_held(upstream, destination):
    mirror = Harness(upstream, destination)
    with acquire(mirror.storage.inner, owner="other-run", ttl=600), pytest.raises(LeaseHeld, match="other-run"):
        mirror.run()
    assert mirror.storage.inner.get_bytes("simple/index.v1_json") is None


def test_an_expired_lease_left_by_a_crashed_run_is_taken_over(upstream, tmp_path):
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    acquire(mirror.storage.inner, owner="crashed-run", ttl=0.01)  # never released
    threading.Event().wait(0.05)
    assert mirror.run().failed == []
    mirror.sound()


def test_interrupted_run_resumes_without_downloading_verified_files_again(upstream, fake_index, tmp_path):
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    mirror.run()
    # Re-create what a run killed after storing the files of a project but before publishing its pages leaves.
    project = fake_index.projects()[0]
    for key in (f"simple/{project.normalized}/index.v1_json", f"simple/{project.normalized}/index.html"):
        mirror.storage.inner.delete(key)
    state = load_state(mirror.storage.inner)
    state.incomplete = True
    state.projects.pop(project.normalized)
    mirror.storage.inner.put_bytes(
        STATE_KEY, state.to_json(), content_type="application/json", cache_control="no-store"
    )
    fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"one more", version="9.0")
    upstream.reset_log()
    assert mirror.run().failed == []
    assert upstream.count("/packages/") == 1  # only the new file
    mirror.sound()
    assert load_state(mirror.storage.inner).incomplete is False


# ------------------------------------------------------------------------------ a wheel's .metadata from the wheel
def metadata_events(mirror: Harness) -> dict[str, str]:
    """key → reason of each `.metadata` the mirror fetched from upstream after trying the wheel's own METADATA."""
    return {event["key"]: event["reason"] for event in mirror.events_named("metadata_from_upstream")}


def metadata_key(added) -> str:
    return added.url_path.lstrip("/") + ".metadata"


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for path, data in members.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def test_a_wheels_metadata_comes_out_of_the_wheel_without_an_upstream_request(upstream, fake_index, destination):
    filename, wheel, metadata = installable_wheel("Wheel_Maker", "2.0")
    added = fake_index.add_file("Wheel_Maker", filename, wheel, version="2.0", metadata=metadata)
    mirror = Harness(upstream, destination)
    result = mirror.run()
    assert result.failed == []
    assert upstream.count(added.url_path + ".metadata") == 0
    assert upstream.count(added.url_path) == 1  # the wheel, once
    stored = mirror.storage.inner.get_bytes(metadata_key(added))[0]
    assert stored == metadata
    assert hashlib.sha256(stored).hexdigest() == added.metadata_sha256
    assert mirror.page("wheel-maker").files[0].metadata_sha256 == added.metadata_sha256
    (synced,) = [p for p in result.projects if p.name == "wheel-maker"]
    assert (synced.files_stored, synced.bytes_stored) == (2, len(wheel) + len(metadata))  # the metadata counts
    assert metadata_key(added) not in metadata_events(mirror)
    if destination.kind == "s3":
        s3 = destination.s3
        head = s3.client.head_object(Bucket=s3.bucket, Key=s3.object_key(metadata_key(added)))
        assert (head["ContentType"], head["CacheControl"]) == (BINARY, FILE_CACHE_CONTROL)
    mirror.sound()


def test_a_wheel_whose_metadata_is_not_the_declared_one_gets_it_from_upstream(upstream, fake_index, destination):
    filename, wheel, _ = installable_wheel("Wheel_Maker", "2.0")
    declared = b"Metadata-Version: 2.1\nName: Wheel_Maker\nVersion: 2.0\nSummary: not what the wheel holds\n"
    added = fake_index.add_file("Wheel_Maker", filename, wheel, version="2.0", metadata=declared)
    mirror = Harness(upstream, destination)
    assert mirror.run().failed == []
    assert upstream.count(added.url_path + ".metadata") == 1
    assert mirror.storage.inner.get_bytes(metadata_key(added))[0] == declared
    assert "does not hash to the declared sha256" in metadata_events(mirror)[metadata_key(added)]
    mirror.sound()


def test_a_wheel_that_is_not_a_zip_gets_its_metadata_from_upstream(upstream, fake_index, destination):
    wheel = upstream_files(fake_index, "Foo_Bar")["foo_bar-1.0-py3-none-any.whl"]  # the sample's: plain text
    assert wheel.metadata is not None
    mirror = Harness(upstream, destination)
    assert mirror.run().failed == []
    assert upstream.count(wheel.url_path + ".metadata") == 1
    assert mirror.storage.inner.get_bytes(metadata_key(wheel))[0] == wheel.metadata
    assert "BadZipFile" in metadata_events(mirror)[metadata_key(wheel)]
    assert not any(event["level"] == "warning" for event in mirror.events_named("metadata_from_upstream"))
    mirror.sound()


def test_a_zip_bomb_metadata_is_not_decompressed_but_fetched_from_upstream(upstream, fake_index, destination):
    # Upstream declares exactly what the wheel holds: only the size limit keeps the mirror from decompressing it.
    header = b"Metadata-Version: 2.1\nName: Bomb\nVersion: 1.0\nDescription: "
    metadata = header + b"A" * (METADATA_MAX_BYTES + 1 - len(header))
    wheel = zipped({"bomb-1.0.dist-info/METADATA": metadata}, zipfile.ZIP_DEFLATED)
    assert len(wheel) < 100_000
    added = fake_index.add_file("Bomb", "bomb-1.0-py3-none-any.whl", wheel, version="1.0", metadata=metadata)
    mirror = Harness(upstream, destination)
    assert mirror.run().failed == []
    assert upstream.count(added.url_path + ".metadata") == 1
    stored = mirror.storage.inner.get_bytes(metadata_key(added))[0]
    assert hashlib.sha256(stored).hexdigest() == added.metadata_sha256
    assert "over the limit" in metadata_events(mirror)[metadata_key(added)]
    mirror.sound()


def test_a_resumed_run_keeps_what_is_stored_and_takes_metadata_out_of_wheels_it_downloads(
    upstream, fake_index, tmp_path
):
    wheels = {}
    for version in ("2.0", "2.1", "2.2"):
        filename, wheel, metadata = installable_wheel("Wheel_Maker", version)
        wheels[version] = fake_index.add_file("Wheel_Maker", filename, wheel, version=version, metadata=metadata)
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    # What a run killed while storing the project's files leaves: 2.0 without its metadata, 2.1 with only its
    # metadata, 2.2 with neither; no pages.
    storage = mirror.storage.inner
    for key in (
        "simple/wheel-maker/index.v1_json",
        "simple/wheel-maker/index.html",
        metadata_key(wheels["2.0"]),
        wheels["2.1"].url_path.lstrip("/"),
        wheels["2.2"].url_path.lstrip("/"),
        metadata_key(wheels["2.2"]),
    ):
        storage.delete(key)
    kept = storage.head(metadata_key(wheels["2.1"]))
    state = load_state(storage)
    state.incomplete = True
    state.projects.pop("wheel-maker")
    storage.put_bytes(STATE_KEY, state.to_json(), content_type="application/json", cache_control="no-store")
    sdist = fake_index.add_file("Wheel_Maker", "wheel_maker-2.3.tar.gz", b"sdist", version="2.3")  # a change to sync
    upstream.reset_log()
    assert mirror.run().failed == []
    assert sorted(r.path for r in upstream.requests if r.path.startswith("/packages/")) == sorted(
        [wheels["2.0"].url_path + ".metadata", wheels["2.1"].url_path, wheels["2.2"].url_path, sdist.url_path]
    )
    assert storage.head(metadata_key(wheels["2.1"])) == kept  # not written again
    assert storage.get_bytes(metadata_key(wheels["2.2"]))[0] == wheels["2.2"].metadata
    mirror.sound()


def bomb(declared_size: int | None = None) -> io.BytesIO:
    """A wheel whose METADATA inflates to 128 MiB; `declared_size` makes its central directory claim that size."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("bomb-1.0.dist-info/METADATA", "w") as member,
    ):
        for _ in range(128):
            member.write(bytes(2**20))
    data = bytearray(buffer.getvalue())
    if declared_size is not None:
        central = data.rindex(b"PK\x01\x02")  # the only entry's central directory record: size at offset 24
        data[central + 24 : central + 28] = declared_size.to_bytes(4, "little")
    return io.BytesIO(bytes(data))


@pytest.mark.parametrize(
    ("wheel", "message"),
    [
        (bomb, "over the limit"),
        (lambda: bomb(declared_size=2**16), "CRC"),  # lies about its size: read no further than the lie
    ],
    ids=["declared", "lying"],
)
def test_reading_a_zip_bomb_metadata_stays_within_memory(wheel, message):
    archive = wheel()
    tracemalloc.start()
    try:
        with pytest.raises((ValueError, zipfile.BadZipFile), match=message):
            wheel_metadata(archive, limit=2**20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a-1.dist-info/METADATA": b"one", "b-1.dist-info/METADATA": b"two"}, "2 top-level"),
        ({"a/vendored-1.dist-info/METADATA": b"nested"}, "0 top-level"),
        ({f"a/{n}.py": b"" for n in range(5)} | {"a-1.dist-info/METADATA": b"many entries"}, "6 entries"),
        ({"a/" + "x" * 400 + ".py": b"", "a-1.dist-info/METADATA": b"long names"}, "over the limit"),
    ],
    ids=["two", "nested only", "too many entries", "directory too big"],
)
def test_a_wheel_needs_exactly_one_top_level_metadata_and_a_small_directory(members, message, monkeypatch):
    monkeypatch.setattr(files_module, "WHEEL_MAX_ENTRIES", 5)
    monkeypatch.setattr(files_module, "WHEEL_MAX_DIRECTORY_BYTES", 400)
    with pytest.raises(ValueError, match=message):
        wheel_metadata(io.BytesIO(zipped(members)))
    assert wheel_metadata(io.BytesIO(zipped({"a-1.dist-info/METADATA": b"one", "a/x.py": b""}))) == b"one"
