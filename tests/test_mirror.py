"""The sync engine end to end against the local upstream, into a folder and into a moto S3 bucket."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from sync import render
from sync.config import MirrorConfig
from sync.lease import LeaseHeld, acquire
from sync.mirror import Mirror, Outcome, RunResult
from sync.progress import Reporter
from sync.state import STATE_KEY, load_state
from sync.storage import Storage, open_storage
from sync.upstream import UpstreamClient
from sync.verify import verify_mirror
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


class Harness:
    """A Mirror wired to the local upstream and a destination, re-creatable with other settings."""

    def __init__(self, upstream, destination, **settings):
        self.upstream = upstream
        self.destination = destination
        self.storage = CountingStorage(open_storage(destination.dest, endpoint_url=destination.endpoint_url))
        self.settings = settings
        self.events = io.StringIO()
        self.client: UpstreamClient | None = None

    def config(self) -> MirrorConfig:
        return MirrorConfig(dest=self.destination.dest, upstream=self.upstream.url, workers=4, **self.settings)

    def run(self) -> RunResult:
        config = self.config()
        self.client = UpstreamClient(config.upstream, max_connections=config.workers, retries=2, backoff=0.01,
                                     file_hosts=config.allowed_file_hosts)
        mirror = Mirror(config, self.client, self.storage, Reporter(self.events, json_lines=True))
        try:
            return mirror.run(owner="test")
        finally:
            mirror.close()

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
    assert "max-age=" in page_cache
    assert "stale-while-revalidate=" in page_cache
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
    assert outcomes == {first.normalized: Outcome.UPDATED, second.normalized: Outcome.REMOVED}
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
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None),
                     projects=(project.name,), keep_latest=1)
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
    mirror.storage.inner.put_bytes(STATE_KEY, state.to_json(), content_type="application/json",
                                   cache_control="no-store")
    fake_index.add_file(project.name, f"{project.normalized}-9.0.tar.gz", b"one more", version="9.0")
    upstream.reset_log()
    assert mirror.run().failed == []
    assert upstream.count("/packages/") == 1  # only the new file
    mirror.sound()
    assert load_state(mirror.storage.inner).incomplete is False
