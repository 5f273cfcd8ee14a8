"""verify --reclaim-orphans on a folder and on S3 (moto): an orphan (a shared file every page dropped) is deleted with
its shared marker once older than the grace age and not before; a named object, a conflicting claim and a dry run
delete nothing; the objects' ages come from the listing."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from sync import cli
from sync.layout import shared_marker_key
from sync.reclaim import Reclaim
from sync.storage import open_storage
from sync.verify import Mode, VerifyReport, verify_mirror
from tests.fixtures.verify_rig import OBJECTS, Rig, sha256_of
from tests.synthetic_mirror import write_mirror

HOUR = 3600.0
SHARED = "packages/zz/zz/shared-1.0-py3-none-any.whl"
pytestmark = pytest.mark.hostile_class(1)


def put(rig: Rig, key: str, body: bytes = b"shared bytes") -> None:
    rig.storage.put_bytes(key, body, content_type="x", cache_control="x")


def dropped_shared_file(rig: Rig) -> None:
    """What two projects leave when both drop a file they shared: the object and its marker, named by no page."""
    put(rig, SHARED)
    put(rig, SHARED + ".metadata", b"Metadata-Version: 2.1\n")
    put(rig, shared_marker_key(SHARED), b"")


def reclaim(rig: Rig, *, later: float = 0.0, **options: Any) -> VerifyReport:
    """A verify reclaiming orphans as if run `later` seconds from now."""
    clock = lambda: time.time() + later  # noqa: E731
    return verify_mirror(
        rig.storage, mode=Mode.CHECKSUM, workers=4, reclaim=Reclaim(HOUR, clock=clock, **{"delete": True, **options})
    )


def stored(rig: Rig, *keys: str) -> list[bool]:
    return [rig.storage.head(key) is not None for key in keys]


def test_a_shared_file_both_projects_dropped_is_reclaimed_after_the_grace_age_and_not_before(rig):
    dropped_shared_file(rig)
    young = reclaim(rig)
    assert young.sound
    assert young.counts["kept_young"] == 2
    assert young.counts["reclaimed"] == 0
    assert stored(rig, SHARED, SHARED + ".metadata", shared_marker_key(SHARED)) == [True, True, True]

    old = reclaim(rig, later=2 * HOUR)
    assert old.sound
    assert sorted(line.split(" ")[0] for line in old.reclaimed) == [SHARED, SHARED + ".metadata"]
    assert old.counts["reclaimed"] == 2
    assert old.counts["reclaimed_bytes"] == len(b"shared bytes") + len(b"Metadata-Version: 2.1\n")
    assert stored(rig, SHARED, SHARED + ".metadata", shared_marker_key(SHARED)) == [False, False, False]
    again = reclaim(rig, later=2 * HOUR)
    assert again.orphans == []
    assert again.counts["reclaimed"] == 0


def test_an_old_orphan_whose_marker_a_sync_rewrote_since_is_kept(tmp_path):
    """A sync claiming the object again rewrites its marker: the object's own age is not enough."""
    root = tmp_path / "mirror"
    storage = open_storage(str(root))
    write_mirror(storage, 2, 2)
    storage.put_bytes(SHARED, b"x", content_type="x", cache_control="x")
    storage.put_bytes(shared_marker_key(SHARED), b"", content_type="x", cache_control="x")
    old = time.time() - 10 * HOUR
    os.utime(root / SHARED, (old, old))
    report = verify_mirror(storage, reclaim=Reclaim(HOUR, delete=True, clock=lambda: time.time() - 5 * HOUR))
    assert report.counts["kept_young"] == 1
    assert storage.head(SHARED) is not None


def test_an_object_any_page_names_is_never_deleted(rig):
    key = rig.file_key()
    body = rig.objects[key].body
    rig.publish("sharer", [(key, sha256_of(body), len(body))])
    put(rig, shared_marker_key(key), b"")
    report = reclaim(rig, later=1000 * HOUR)
    assert report.sound
    assert report.counts["reclaimed"] == 0
    assert report.counts["objects"] == OBJECTS
    assert all(stored(rig, *rig.objects, shared_marker_key(key)))


def test_a_conflicting_claim_is_reported_and_nothing_is_deleted_for_it(rig):
    key = rig.file_key()
    rig.publish("claimer", [(key, sha256_of(b"other bytes"), len(rig.objects[key].body))])
    report = reclaim(rig, later=1000 * HOUR)
    assert any(line.startswith(f"conflicting claims: {key}") for line in report.problems)
    assert report.counts["reclaimed"] == 0
    assert all(stored(rig, *rig.objects))


def test_a_dry_run_deletes_nothing_and_says_what_it_would(rig):
    dropped_shared_file(rig)
    report = reclaim(rig, later=2 * HOUR, delete=False)
    assert report.counts["reclaimable"] == 2
    assert report.counts["reclaimed"] == 0
    assert report.counts["reclaimable_bytes"] == len(b"shared bytes") + len(b"Metadata-Version: 2.1\n")
    assert stored(rig, SHARED, SHARED + ".metadata", shared_marker_key(SHARED)) == [True, True, True]


def test_deletions_stop_at_the_limit(rig):
    dropped_shared_file(rig)
    report = reclaim(rig, later=2 * HOUR, limit=1)
    assert (report.counts["reclaimed"], report.counts["kept_limit"]) == (1, 1)
    assert stored(rig, SHARED, SHARED + ".metadata") == [False, True]


def test_objects_are_listed_and_headed_with_when_they_were_written(rig):
    before = time.time()
    put(rig, SHARED)
    listed = {info.key: info for info in rig.storage.list("packages/zz/")}[SHARED]
    headed = rig.storage.head(SHARED)
    assert headed is not None
    for info in (listed, headed):
        assert before - 5 <= info.last_modified <= time.time() + 5  # S3 keeps whole seconds


def test_the_cli_reclaim_flags(rig, capsys):
    dropped_shared_file(rig)
    endpoint = ["--endpoint-url", rig.s3.endpoint_url] if rig.s3 else []
    args = ["verify", "--dest", rig.dest, *endpoint, "--log-format", "json", "--workers", "4"]
    assert cli.main([*args, "--reclaim-orphans", "--delete", "--min-age", "2h"]) == cli.EXIT_OK
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith(", 0 reclaimed (0 bytes; 2 too young, 0 past the limit)")
    assert all(stored(rig, SHARED, shared_marker_key(SHARED)))
    assert cli.main([*args, "--delete"]) == cli.EXIT_USAGE
    assert cli.main([*args, "--reclaim-orphans", "--reclaim-limit", "-1"]) == cli.EXIT_USAGE
    for age in ("30m", "soon"):
        with pytest.raises(SystemExit):
            cli.main([*args, "--reclaim-orphans", "--min-age", age])
