"""Simple API 1.4 end to end: PEP 792 project status (quarantine too) and PEP 740 provenance, from the local upstream
(which renders pages as Warehouse does) into a folder and a bucket, read back by our parser and by `pypi-simple`."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pypi_simple
import pytest

from sync.cli import main as cli_main
from sync.config import ConfigError, MirrorConfig
from sync.jobs import Outcome, ProjectResult
from sync.lambda_settings import settings_from_env
from sync.layout import INTEGRITY
from sync.models import DistFile, InvalidInput, ProjectStatus
from sync.provenance import check_document
from sync.run import record_result
from sync.state import MirrorState, ProjectState
from sync.upstream import UpstreamClient
from tests.test_mirror import Harness, destination  # noqa: F401  (the fixture)
from tests.upstream.corpus import installable_wheel, provenance_document
from tests.upstream.server import JSON_TYPE, Fault, render_project_html, render_project_json

PUBLIC_URL = "https://mirror.example"
PROJECT = "Attested_Pkg"
NORMALIZED = "attested-pkg"


def attested_release(fake_index, version: str = "1.0") -> tuple[str, bytes]:
    """Upload a wheel with its provenance document, as a Trusted Publisher would; returns (filename, wheel)."""
    filename, wheel, metadata = installable_wheel(PROJECT, version)
    document = provenance_document(filename, hashlib.sha256(wheel).hexdigest())
    fake_index.add_file(PROJECT, filename, wheel, version=version, metadata=metadata, provenance=document)
    return filename, wheel


def stored(harness: Harness, key: str) -> bytes | None:
    found = harness.storage.inner.get_bytes(key)
    return None if found is None else found[0]


def json_page(harness: Harness, name: str) -> dict:
    return json.loads(stored(harness, f"simple/{name}/index.v1_json") or b"null")


def root_names(harness: Harness) -> list[str]:
    return [p["name"] for p in json.loads(stored(harness, "simple/index.v1_json") or b"{}")["projects"]]


# -------------------------------------------------------------------------------------------------- parsing
def test_status_and_provenance_are_read_from_both_page_formats(upstream, fake_index):
    filename, _ = attested_release(fake_index)
    fake_index.set_status(PROJECT, "deprecated", 'use "other" <now>')
    client = UpstreamClient(upstream.url)
    from_json = client.get_project(NORMALIZED)
    upstream.json_enabled = False
    from_html = client.get_project(NORMALIZED)
    expected_url = f"{upstream.url}/integrity/{NORMALIZED}/1.0/{filename}/provenance"
    for page in (from_json, from_html):
        assert page is not None
        assert page.status == ProjectStatus("deprecated", 'use "other" <now>')
        assert [f.provenance for f in page.files] == [expected_url]


@pytest.mark.parametrize(
    ("status", "problem"),
    [({"status": "bogus"}, "not one of"), ({"state": "archived"}, "not one of"), ("archived", "not an object")],
)
def test_a_malformed_project_status_refuses_the_page(upstream, fake_index, status, problem):
    document = json.loads(render_project_json(fake_index.project("tiny"), upstream.url, upstream.url))
    document["project-status"] = status
    upstream.override_page("tiny", json.dumps(document).encode(), JSON_TYPE)
    with pytest.raises(InvalidInput, match=problem):
        UpstreamClient(upstream.url).get_project("tiny")


def test_a_relative_provenance_url_is_dropped_and_the_file_kept(upstream, fake_index):
    document = json.loads(render_project_json(fake_index.project("tiny"), upstream.url, upstream.url))
    document["files"][0]["provenance"] = "/integrity/tiny/0.5/tiny-0.5.tar.gz/provenance"
    upstream.override_page("tiny", json.dumps(document).encode(), JSON_TYPE)
    page = UpstreamClient(upstream.url).get_project("tiny")
    assert page is not None
    assert (page.files[0].filename, page.files[0].provenance) == ("tiny-0.5.tar.gz", None)
    assert len(page.files) == len(document["files"])


def test_a_newer_minor_version_with_namespaces_and_unknown_keys_is_accepted(upstream, fake_index):
    document = json.loads(render_project_json(fake_index.project("tiny"), upstream.url, upstream.url))
    document["meta"]["api-version"] = "1.5"
    document["namespaces"] = [{"prefix": "tiny", "open": False}]  # PEP 752
    document["files"][0]["some-future-key"] = {"nested": [1, 2]}
    document["project-status"]["future"] = "ignored"
    upstream.override_page("tiny", json.dumps(document).encode(), JSON_TYPE)
    page = UpstreamClient(upstream.url).get_project("tiny")
    assert page is not None
    assert len(page.files) == len(document["files"])


# ------------------------------------------------------------------------------------------- provenance check
def dist_for(filename: str, sha256: str) -> DistFile:
    return DistFile(filename=filename, url="https://x/" + filename, sha256=sha256, key="packages/x/" + filename)


def test_a_provenance_document_must_name_the_file_it_is_for():
    sha = "a" * 64
    wheel = "attested_pkg-1.0-py3-none-any.whl"
    check_document(provenance_document(wheel, sha), dist_for(wheel, sha))
    # The subject may spell the name differently: compared as parsed wheel names, as the spec asks.
    check_document(provenance_document("Attested.Pkg-1.0-py3-none-any.whl", sha), dist_for(wheel, sha))
    check_document(provenance_document(wheel, sha, publishers=("a.yml", "b.yml")), dist_for(wheel, sha))
    for document, problem in (
        (provenance_document(wheel, "b" * 64), "names sha256"),
        (provenance_document("attested_pkg-1.1-py3-none-any.whl", sha), "not this file"),
        (provenance_document("other-1.0-py3-none-any.whl", sha), "not this file"),
        (json.dumps({"version": 2, "attestation_bundles": []}).encode(), "version 1"),
        (json.dumps({"version": 1, "attestation_bundles": []}).encode(), "non-empty"),
        (b"not json", "not valid JSON"),
    ):
        with pytest.raises(InvalidInput, match=problem):
            check_document(document, dist_for(wheel, sha))


# ---------------------------------------------------------------------------------------------- mirroring
def test_mirrors_1_4_pages_with_status_and_provenance_stored_beside_the_file(upstream, fake_index, destination):  # noqa: F811
    filename, _ = attested_release(fake_index)
    fake_index.set_status(PROJECT, "archived")
    mirror = Harness(upstream, destination, public_url=PUBLIC_URL)
    assert mirror.run().failed == []
    page = json_page(mirror, NORMALIZED)
    assert page["meta"]["api-version"] == "1.4"
    assert page["project-status"] == {"status": "archived"}
    (entry,) = page["files"]
    key = entry["url"].removeprefix("../../") + ".provenance"
    assert entry["provenance"] == f"{PUBLIC_URL}/{key}"
    document = fake_index.provenance_of(PROJECT, filename)
    assert stored(mirror, key) == document
    assert entry["_provenance-sha256"] == hashlib.sha256(document).hexdigest()
    html = stored(mirror, f"simple/{NORMALIZED}/index.html").decode()
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert '<meta name="pypi:project-status" content="archived">' in html
    assert f'data-provenance="{PUBLIC_URL}/{key}"' in html
    if destination.kind == "s3":
        prefix = destination.s3.dest.removeprefix(f"s3://{destination.s3.bucket}").strip("/")
        head = destination.s3.client.head_object(Bucket=destination.s3.bucket, Key=f"{prefix}/{key}")
        assert head["ContentType"] == INTEGRITY == "application/vnd.pypi.integrity.v1+json"
    mirror.sound()  # verify re-hashes the provenance document too, and finds no orphan
    mirror.storage.reset()
    assert mirror.run().projects == []
    assert mirror.storage.writes() == 0


def test_without_a_public_url_pages_keep_upstreams_provenance_url(upstream, fake_index, tmp_path):
    filename, _ = attested_release(fake_index)
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    (entry,) = json_page(mirror, NORMALIZED)["files"]
    assert entry["provenance"] == f"{upstream.url}/integrity/{NORMALIZED}/1.0/{filename}/provenance"
    assert stored(mirror, entry["url"].removeprefix("../../") + ".provenance") is not None  # kept all the same
    mirror.sound()


def test_provenance_is_refreshed_when_the_project_changes(upstream, fake_index, tmp_path):
    filename, wheel = attested_release(fake_index)
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), public_url=PUBLIC_URL)
    assert mirror.run().failed == []
    key = mirror.page(NORMALIZED).files[0].provenance_key
    more = provenance_document(filename, hashlib.sha256(wheel).hexdigest(), publishers=("release.yml", "audit.yml"))
    fake_index.attest(PROJECT, filename, more)  # no journal entry: nothing to do yet
    assert mirror.run().projects == []
    assert stored(mirror, key) != more
    attested_release(fake_index, "1.1")  # the project changes: every document of it is fetched again
    assert mirror.run().failed == []
    assert stored(mirror, key) == more
    assert mirror.page(NORMALIZED).files[0].provenance_sha256 == hashlib.sha256(more).hexdigest()
    mirror.sound()


def test_documents_that_fail_the_checks_are_left_out_and_the_files_kept(upstream, fake_index, tmp_path):
    filename, wheel = attested_release(fake_index)
    fake_index.attest(PROJECT, filename, provenance_document("other-1.0-py3-none-any.whl", "0" * 64))
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), public_url=PUBLIC_URL)
    assert mirror.run().failed == []
    (dist,) = mirror.page(NORMALIZED).files
    assert (dist.filename, dist.provenance, dist.provenance_sha256) == (filename, None, None)
    assert stored(mirror, dist.key) == wheel
    assert stored(mirror, dist.provenance_key) is None
    assert [e["key"] for e in mirror.events_named("provenance_dropped")] == [dist.key]
    mirror.sound()


def test_an_unreachable_provenance_document_fails_the_project_and_keeps_its_page(upstream, fake_index, tmp_path):
    attested_release(fake_index)
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), public_url=PUBLIC_URL)
    assert mirror.run().failed == []
    before = stored(mirror, f"simple/{NORMALIZED}/index.v1_json")
    attested_release(fake_index, "1.1")
    upstream.inject("^/integrity/", Fault.status(503), times=100)
    failed = mirror.run().failed
    assert [r.name for r in failed] == [NORMALIZED]
    assert stored(mirror, f"simple/{NORMALIZED}/index.v1_json") == before
    upstream.clear_faults()
    assert mirror.run().failed == []
    assert len(mirror.page(NORMALIZED).files) == 2
    mirror.sound()


# ---------------------------------------------------------------------------------------------- quarantine
@pytest.mark.parametrize("planning", ["change feed", "root listing", "allowlist etags"])
def test_a_quarantined_project_disappears_and_comes_back_verified_when_lifted(upstream, fake_index, tmp_path, planning):
    attested_release(fake_index)
    settings: dict = {"public_url": PUBLIC_URL}
    if planning != "change feed":
        upstream.xmlrpc_enabled = False
    if planning == "allowlist etags":
        settings["projects"] = (PROJECT, "tiny")
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), **settings)
    assert mirror.run().failed == []
    held = mirror.page(NORMALIZED)
    keys = [k for d in held.files for k in (d.key, d.metadata_key, d.provenance_key)]
    assert all(stored(mirror, k) is not None for k in keys)

    fake_index.set_status(PROJECT, "quarantined")
    result = mirror.run()
    assert result.failed == []
    assert [r.name for r in result.projects if r.quarantined] == [NORMALIZED]
    page = json_page(mirror, NORMALIZED)
    assert (page["project-status"], page["files"], page["versions"]) == ({"status": "quarantined"}, [], [])
    assert (
        '<meta name="pypi:project-status" content="quarantined">'
        in stored(mirror, f"simple/{NORMALIZED}/index.html").decode()
    )
    assert [k for k in keys if stored(mirror, k) is not None] == []  # nothing upstream withholds stays servable
    assert NORMALIZED not in root_names(mirror)
    assert "tiny" in root_names(mirror)
    mirror.sound()

    fake_index.set_status(PROJECT, "active")
    assert mirror.run().failed == []
    assert [d.sha256 for d in mirror.page(NORMALIZED).files] == [d.sha256 for d in held.files]
    assert all(stored(mirror, k) is not None for k in keys)
    assert NORMALIZED in root_names(mirror)
    assert json_page(mirror, NORMALIZED)["project-status"] == {"status": "active"}
    mirror.sound()


def test_an_index_that_lists_files_of_a_quarantined_project_gets_none_served(upstream, fake_index, tmp_path):
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    keys = [d.key for d in mirror.page("tiny").files]
    document = json.loads(render_project_json(fake_index.project("tiny"), upstream.url, upstream.url))
    document["project-status"] = {"status": "quarantined", "reason": "malware"}
    document["meta"]["_last-serial"] += 1
    upstream.override_page("tiny", json.dumps(document).encode(), JSON_TYPE)
    fake_index.yank("tiny", "tiny-0.5.tar.gz")  # a journal entry for tiny, so the feed names it
    assert mirror.run().failed == []
    page = json_page(mirror, "tiny")
    assert (page["files"], page["project-status"]) == ([], {"status": "quarantined", "reason": "malware"})
    assert [k for k in keys if stored(mirror, k) is not None] == []
    mirror.sound()


# --------------------------------------------------------------------------------------- independent readers
def test_pypi_simple_reads_every_page_we_write(upstream, fake_index, tmp_path):
    attested_release(fake_index)
    fake_index.set_status(PROJECT, "deprecated", "use tiny")
    fake_index.add_file("Gone", "gone-1.0.tar.gz", b"gone", version="1.0")
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None), public_url=PUBLIC_URL)
    assert mirror.run().failed == []
    fake_index.set_status("Gone", "quarantined", "malware")
    assert mirror.run().failed == []
    base = "https://mirror.example/simple/"
    for project in [p.normalized for p in fake_index.projects()]:
        pages = (
            pypi_simple.ProjectPage.from_json_data(json_page(mirror, project), f"{base}{project}/"),
            pypi_simple.ProjectPage.from_html(
                project, stored(mirror, f"simple/{project}/index.html") or b"", f"{base}{project}/"
            ),
        )
        ours = mirror.page(project)
        for parsed in pages:
            assert parsed.repository_version == "1.4"
            assert parsed.status == pypi_simple.ProjectStatus(ours.status.status)
            assert parsed.status_reason == ours.status.reason
            assert [p.filename for p in parsed.packages] == [d.filename for d in ours.files]
            assert [p.provenance_url for p in parsed.packages] == [d.provenance for d in ours.files]
            assert [p.digests["sha256"] for p in parsed.packages] == [d.sha256 for d in ours.files]
            assert [p.url for p in parsed.packages] == [f"https://mirror.example/{d.key}" for d in ours.files]
        json_parsed = pages[0]
        assert [p.size for p in json_parsed.packages] == [d.size for d in ours.files]
        assert all(p.upload_time is not None for p in json_parsed.packages)
    assert pypi_simple.ProjectPage.from_json_data(json_page(mirror, NORMALIZED)).status_reason == "use tiny"
    gone = pypi_simple.ProjectPage.from_json_data(json_page(mirror, "gone"))
    assert (gone.status, gone.status_reason, gone.packages) == (pypi_simple.ProjectStatus.QUARANTINED, "malware", [])
    json_root = pypi_simple.IndexPage.from_json_data(json.loads(stored(mirror, "simple/index.v1_json") or b""))
    html_root = pypi_simple.IndexPage.from_html(stored(mirror, "simple/index.html") or b"")
    for root in (json_root, html_root):
        assert root.repository_version == "1.4"
        assert sorted(root.projects) == sorted(p.normalized for p in fake_index.projects() if p.normalized != "gone")


def test_our_json_page_matches_warehouses_field_by_field(upstream, fake_index, tmp_path):
    attested_release(fake_index)
    fake_index.set_status(PROJECT, "archived")
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    for project in fake_index.projects():
        warehouse = json.loads(render_project_json(project, upstream.url, upstream.url))
        ours = json_page(mirror, project.normalized)
        assert {k: ours[k] for k in ("name", "versions", "project-status")} == {
            k: warehouse[k] for k in ("name", "versions", "project-status")
        }
        assert ours["meta"] == warehouse["meta"]
        assert len(ours["files"]) == len(warehouse["files"])
        for mine, theirs in zip(ours["files"], warehouse["files"], strict=True):
            # What differs, and why: file URLs are relative to the mirror; absent keys mean null/false (PEP 714:
            # `core-metadata` only, without the misnamed `data-dist-info-metadata` Warehouse adds to JSON).
            assert mine["url"] == "../../" + theirs["url"].removeprefix(upstream.url + "/")
            for field in ("filename", "hashes", "size", "upload-time", "yanked", "provenance"):
                assert mine[field] == theirs[field], field
            assert mine.get("requires-python") == theirs["requires-python"]
            assert mine.get("core-metadata", False) == theirs["core-metadata"]


# -------------------------------------------------------------------------------------- settings and state
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("https://cdn.example.org/", "https://cdn.example.org"),
        ("https://cdn.example.org/mirror", "https://cdn.example.org/mirror"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # loopback counts as a secure origin
        ("http://cdn.example.org", None),
        ("https://cdn.example.org/?a=1", None),
        ("cdn.example.org", None),
    ],
)
def test_the_public_url_must_be_a_secure_origin(tmp_path, value, accepted):
    if accepted is None:
        with pytest.raises(ConfigError, match="public_url"):
            MirrorConfig(dest=str(tmp_path), public_url=value)
        with pytest.raises(ConfigError, match="PYPI_CDN_PUBLIC_URL"):
            settings_from_env({"PYPI_CDN_DEST": str(tmp_path), "PYPI_CDN_PUBLIC_URL": value})
        assert cli_main(["mirror", "--upstream", "http://127.0.0.1:9", "--dest", str(tmp_path), "--public-url", value])
    else:
        assert MirrorConfig(dest=str(tmp_path), public_url=value).public_url == accepted
        assert settings_from_env({"PYPI_CDN_DEST": str(tmp_path), "PYPI_CDN_PUBLIC_URL": value}).mirror.public_url


def test_the_state_keeps_quarantined_projects_and_reads_states_written_before():
    state = MirrorState(serial=7, projects={"a": ProjectState(1, None), "b": ProjectState(2, '"e"')})
    before = state.to_json()
    assert b"quarantined" not in before  # a state without quarantines is byte for byte what it was
    state.quarantined.add("b")
    again = MirrorState.from_json(state.to_json())
    assert again.quarantined == {"b"}
    assert MirrorState.from_json(before).quarantined == set()


@pytest.mark.parametrize(
    ("held", "was_quarantined", "outcome", "quarantined", "listing_changes"),
    [
        (True, False, Outcome.UPDATED, True, True),  # quarantined: leaves the root listing
        (True, True, Outcome.UPDATED, False, True),  # lifted: back in it
        (True, True, Outcome.UNCHANGED, False, False),  # still quarantined (an unchanged page keeps it so)
        (True, True, Outcome.REMOVED, False, False),  # deleted while quarantined: it was not listed anyway
        (False, False, Outcome.UPDATED, True, False),  # first seen quarantined: never listed
        (False, False, Outcome.UPDATED, False, True),
    ],
)
def test_recording_a_result_tracks_quarantines_for_the_root_listing(
    held, was_quarantined, outcome, quarantined, listing_changes
):
    state = MirrorState(projects={"p": ProjectState(1, None)} if held else {})
    if was_quarantined:
        state.quarantined.add("p")
    result = ProjectResult("p", outcome, 2, None, quarantined=quarantined)
    assert record_result(state, result) is listing_changes
    still = was_quarantined and outcome is Outcome.UNCHANGED
    assert ("p" in state.quarantined) is ((quarantined and outcome is Outcome.UPDATED) or still)


def test_our_html_page_matches_warehouses_field_by_field(upstream, fake_index, tmp_path):
    attested_release(fake_index)
    fake_index.set_status(PROJECT, "deprecated")
    mirror = Harness(upstream, SimpleNamespace(dest=str(tmp_path / "m"), endpoint_url=None))
    assert mirror.run().failed == []
    fields = ("filename", "digests", "requires_python", "is_yanked", "yanked_reason", "has_metadata")
    for project in fake_index.projects():
        name = project.normalized
        theirs = pypi_simple.ProjectPage.from_html(name, render_project_html(project, upstream.url, upstream.url))
        ours = pypi_simple.ProjectPage.from_html(name, stored(mirror, f"simple/{name}/index.html") or b"")
        assert (ours.repository_version, ours.status, ours.status_reason) == (
            theirs.repository_version,
            theirs.status,
            theirs.status_reason,
        )
        for mine, warehouse in zip(ours.packages, theirs.packages, strict=True):
            assert [getattr(mine, f) for f in fields] == [getattr(warehouse, f) for f in fields]
            assert mine.metadata_digests == warehouse.metadata_digests
            assert mine.provenance_url == warehouse.provenance_url  # without a public URL: upstream's
