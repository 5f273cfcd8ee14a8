"""What the mirror stores, against a hostile upstream (issue 13, classes 1, 7, 8 and 9), on a folder and on S3.

- A stored key has one content forever: the same path with new bytes, or another project claiming the key with
  other bytes, is refused and reported, and the old pages stay; an identical shared file outlives the page dropping it.
- A 404 or an empty file list removes nothing until confirmed: by the root listing or by the next run agreeing.
- A file name the folder cannot hold is dropped with a warning; the rest of the project is mirrored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sync import cli
from sync.layout import SHARED_PREFIX
from sync.state import load_state
from tests.fixtures.s3 import S3Destination
from tests.test_faults_upstream import PERSISTENT, FaultRig, synced_rig, use_fast_client
from tests.upstream.index import FakeFile, FakeIndex
from tests.upstream.server import JSON_TYPE, Fault, UpstreamServer


@pytest.fixture(params=["folder", "s3"])
def rig(
    request: pytest.FixtureRequest,
    upstream: UpstreamServer,
    fake_index: FakeIndex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> FaultRig:
    use_fast_client(monkeypatch)
    if request.param == "folder":
        return synced_rig(upstream, fake_index, str(tmp_path / "mirror"))
    s3: S3Destination = request.getfixturevalue("s3_dest")
    return synced_rig(upstream, fake_index, s3.dest, s3.endpoint_url)


def entry(rig: FaultRig, dist: FakeFile, **changes: Any) -> dict[str, Any]:
    """`dist` as a JSON page entry, with `changes` over it."""
    fields = {"filename": dist.filename, "url": rig.upstream.url + dist.url_path, "hashes": {"sha256": dist.sha256}}
    return {**fields, "size": dist.size, **changes}


def serve_page(rig: FaultRig, name: str, files: list[dict[str, Any]]) -> None:
    """Serve `files` as project `name`'s page, at a new serial so the next run syncs it."""
    rig.index.add_file(name, f"{name}-77.0.tar.gz", b"a change " + name.encode(), version="77.0")
    rig.remember_objects()
    meta = {"api-version": "1.1", "_last-serial": rig.index.serial}
    rig.upstream.override_page(name, json.dumps({"meta": meta, "name": name, "files": files}).encode(), JSON_TYPE)


def page(rig: FaultRig, name: str) -> bytes | None:
    found = rig.storage.get_bytes(f"simple/{name}/index.v1_json")
    return None if found is None else found[0]


def stored_sha256(rig: FaultRig, key: str) -> str:
    found = rig.storage.get_bytes(key)
    assert found is not None, key
    return hashlib.sha256(found[0]).hexdigest()


# ------------------------------------------------------------------------------------- classes 8 and 1: one content
@pytest.mark.hostile_class(8)
def test_the_same_path_with_new_bytes_is_refused_and_the_old_page_stays(rig: FaultRig) -> None:
    tiny = rig.index.project("tiny")
    old = tiny.files[0]
    key = old.url_path.lstrip("/")
    published = page(rig, "tiny")
    new_bytes = b"other bytes at the same path"
    serve_page(
        rig, "tiny", [entry(rig, old, hashes={"sha256": hashlib.sha256(new_bytes).hexdigest()}, size=len(new_bytes))]
    )
    rig.upstream.override_path(old.url_path, new_bytes, "application/octet-stream")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_PARTIAL, outcome.stderr
    assert outcome.failed_lines[0].startswith(f"failed: tiny: {key}: refused: stored with sha256 {old.sha256}")
    assert stored_sha256(rig, key) == old.sha256
    assert page(rig, "tiny") == published
    rig.upstream.clear_overrides()
    rig.assert_sound()


@pytest.mark.hostile_class(1)
def test_a_second_project_claiming_a_stored_key_with_other_bytes_is_refused(rig: FaultRig) -> None:
    victim = rig.index.project("tiny").files[0]
    key = victim.url_path.lstrip("/")
    published = page(rig, "foo-bar")
    hostile = b"not tiny's file"
    claim = entry(rig, victim, hashes={"sha256": hashlib.sha256(hostile).hexdigest()}, size=len(hostile))
    serve_page(rig, "foo-bar", [*[entry(rig, f) for f in rig.index.project("foo-bar").files][:1], claim])
    rig.upstream.override_path(victim.url_path, hostile, "application/octet-stream")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_PARTIAL, outcome.stderr
    assert [line.split(": refused: ")[0] for line in outcome.failed_lines] == [f"failed: foo-bar: {key}"]
    assert stored_sha256(rig, key) == victim.sha256  # tiny's link still resolves to tiny's bytes
    assert page(rig, "foo-bar") == published
    rig.upstream.clear_overrides()
    rig.assert_sound()


@pytest.mark.hostile_class(1)
@pytest.mark.parametrize("dropped_by", ["the claimant", "the first owner"])
def test_an_identical_shared_file_outlives_the_page_that_drops_it(rig: FaultRig, dropped_by: str) -> None:
    shared = rig.index.project("tiny").files[0]
    key = shared.url_path.lstrip("/")
    foo_files = [entry(rig, f) for f in rig.index.project("foo-bar").files]
    serve_page(rig, "foo-bar", [*foo_files, entry(rig, shared)])
    claimed = rig.mirror()
    assert claimed.code == cli.EXIT_OK, claimed.stderr
    assert shared.filename.encode() in (page(rig, "foo-bar") or b"")
    assert rig.storage.head(SHARED_PREFIX + key) is not None
    rig.upstream.clear_overrides()
    if dropped_by == "the claimant":
        rig.index.add_file("foo-bar", "foo_bar-78.0.tar.gz", b"drop the claim", version="78.0")
    else:
        rig.index.remove_file("tiny", shared.filename)
    dropped = rig.mirror()
    assert dropped.code == cli.EXIT_OK, dropped.stderr
    assert [e["key"] for e in dropped.named("shared_file_kept")] == [key]
    still_named = page(rig, "tiny" if dropped_by == "the claimant" else "foo-bar") or b""
    assert shared.filename.encode() in still_named
    assert stored_sha256(rig, key) == shared.sha256
    rig.remember_objects()
    rig.known_objects[key] = shared.sha256
    rig.assert_sound()


# ---------------------------------------------------------------------------------- class 7: removals confirmed
@pytest.mark.hostile_class(7)
def test_a_transient_404_removes_nothing(rig: FaultRig) -> None:
    rig.index.add_file("tiny", "tiny-2.0.tar.gz", b"tiny two", version="2.0")
    rig.remember_objects()
    published = page(rig, "tiny")
    files = [key for key in rig.stored() if "/tiny-" in key]
    rig.upstream.inject(r"^/simple/tiny/$", Fault.status(404), times=PERSISTENT)
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert [e["project"] for e in outcome.named("removal_unconfirmed")] == ["tiny"]
    assert page(rig, "tiny") == published
    assert all(rig.storage.head(key) is not None for key in files)
    assert {"name": "tiny"} in json.loads(rig.storage.get_bytes("simple/index.v1_json")[0])["projects"]
    state = load_state(rig.storage)
    assert state is not None
    assert state.missing == {"tiny"}
    rig.upstream.clear_faults()
    healed = rig.mirror()
    assert healed.code == cli.EXIT_OK, healed.stderr
    assert b"tiny-2.0.tar.gz" in (page(rig, "tiny") or b"")
    state = load_state(rig.storage)
    assert state is not None
    assert state.missing == set()
    rig.assert_sound(orphans_allowed=False)


@pytest.mark.hostile_class(7)
def test_a_removed_project_goes_once_a_second_run_agrees(rig: FaultRig) -> None:
    gone = [f.url_path.lstrip("/") for f in rig.index.project("tiny").files]
    rig.index.add_file("tiny", "tiny-2.0.tar.gz", b"tiny two", version="2.0")  # a change, but no removal, in the feed
    rig.upstream.inject(r"^/simple/tiny/$", Fault.status(404), times=PERSISTENT)
    first = rig.mirror()
    assert first.code == cli.EXIT_OK, first.stderr
    assert page(rig, "tiny") is not None
    second = rig.mirror()
    assert second.code == cli.EXIT_OK, second.stderr
    assert [e["project"] for e in second.named("project_removed")] == ["tiny"]
    assert page(rig, "tiny") is None
    assert all(rig.storage.head(key) is None for key in gone)
    names = [p["name"] for p in json.loads(rig.storage.get_bytes("simple/index.v1_json")[0])["projects"]]
    assert names == ["foo-bar", "zope-hookable"]
    rig.assert_sound(orphans_allowed=False)


@pytest.mark.hostile_class(7)
def test_the_change_feed_removing_a_project_confirms_its_404(rig: FaultRig) -> None:
    gone = [f.url_path.lstrip("/") for f in rig.index.project("tiny").files]
    rig.index.remove_project("tiny")  # the feed's newest row of it: "remove project"
    first = rig.mirror()
    assert first.code == cli.EXIT_OK, first.stderr
    assert [e["project"] for e in first.named("project_removed")] == ["tiny"]
    assert first.named("removal_unconfirmed") == []
    assert page(rig, "tiny") is None
    assert all(rig.storage.head(key) is None for key in gone)
    rig.assert_sound(orphans_allowed=False)


@pytest.mark.hostile_class(7)
def test_one_empty_file_list_removes_no_file(rig: FaultRig) -> None:
    published = page(rig, "tiny")
    serve_page(rig, "tiny", [])
    first = rig.mirror()
    assert first.code == cli.EXIT_OK, first.stderr
    assert [e["reason"] for e in first.named("removal_unconfirmed")] == ["upstream lists no file"]
    assert page(rig, "tiny") == published
    second = rig.mirror()  # the same empty list again: confirmed
    assert second.code == cli.EXIT_OK, second.stderr
    assert json.loads(page(rig, "tiny") or b"{}")["files"] == []
    rig.upstream.clear_overrides()
    rig.assert_sound()


@pytest.mark.hostile_class(7)
def test_the_root_listing_no_longer_naming_a_project_confirms_its_404(
    upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fast_client(monkeypatch)
    upstream.xmlrpc_enabled = False  # a whole-index mirror planned from the root listing
    rig = synced_rig(upstream, fake_index, str(tmp_path / "mirror"))
    fake_index.remove_project("tiny")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert [e["project"] for e in outcome.named("project_removed")] == ["tiny"]
    assert page(rig, "tiny") is None
    rig.assert_sound(orphans_allowed=False)


# -------------------------------------------------------------------------------------- class 9: names too long
@pytest.mark.hostile_class(9)
def test_a_file_name_too_long_for_the_folder_is_dropped_and_the_rest_mirrored(
    upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fast_client(monkeypatch)
    rig = synced_rig(upstream, fake_index, str(tmp_path / "mirror"))
    too_long = "tiny-" + "é" * 130 + ".tar.gz"  # 142 characters, 272 bytes: over the folder's 255
    near_limit = "tiny-" + "x" * 230 + "-py3-none-any.whl"  # 252: fits, but neither did its temp file's name
    fine = "tiny-3.0.tar.gz"
    rig.index.add_file("tiny", too_long, b"long", version="3.0")
    rig.index.add_file("tiny", near_limit, b"PK near", version="3.0", metadata=b"Metadata-Version: 2.1\n")
    rig.index.add_file("tiny", fine, b"fine", version="3.0")
    rig.remember_objects()
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    dropped = {e["key"].rsplit("/", 1)[-1] for e in outcome.named("file_unstorable")}
    assert dropped == {too_long, near_limit + ".metadata"}
    files = {f["filename"]: f for f in json.loads(page(rig, "tiny") or b"{}")["files"]}
    assert too_long not in files
    assert fine in files
    assert files[near_limit].get("core-metadata", False) is False  # the wheel, without the metadata it cannot hold
    again = rig.mirror()
    assert again.code == cli.EXIT_OK, again.stderr
    rig.assert_sound()
