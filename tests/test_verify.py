"""verify: every page's every link checked, in every mode, on a folder and on S3 (moto) — a wrong object, a missing
one, a conflicting claim, an object whose recorded checksum disagrees with the page; shards, checkpoints, requests."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sync import cli
from sync.claims import Claim, ClaimSpill, Shard, grouped
from sync.storage import open_storage
from sync.verify import Mode, VerifyReport, verify_mirror
from sync.verify_progress import CheckpointError, VerifyProgress
from sync.verify_share import ShareError
from tests.fixtures.verify_rig import OBJECTS, PROJECTS, Rig, sha256_of
from tests.synthetic_mirror import write_mirror

# (mode, share re-hashed besides): every way a verify checks the bytes
CHECKING_MODES = [(Mode.CHECKSUM, 0.0), (Mode.CHECKSUM, 1.0), (Mode.REHASH, 0.0)]
MODE_IDS = ["checksum", "checksum+rehash-sample", "rehash"]
PROJECT_PAGE = re.compile(r"simple/[^/]+/index\.(html|v1_json)\Z")


def verify(rig: Rig, mode: Mode = Mode.CHECKSUM, sample: float = 0.0, **options: Any) -> VerifyReport:
    return verify_mirror(rig.storage, mode=mode, rehash_sample=sample, workers=4, **options)


def kinds(report: VerifyReport) -> list[str]:
    return sorted(line.split(":")[0] for line in report.problems)


@pytest.mark.parametrize(("mode", "sample"), CHECKING_MODES, ids=MODE_IDS)
def test_a_sound_mirror_is_sound_and_each_object_is_checked_once(rig, mode, sample):
    if rig.s3:
        rig.s3.proxy.counts.clear()
    report = verify(rig, mode, sample)
    assert (report.problems, report.orphans, report.pending) == ([], [], [])
    assert report.counts["projects"] == PROJECTS
    assert report.counts["objects"] == OBJECTS
    by_checksum = OBJECTS if rig.kind == "s3" and mode is Mode.CHECKSUM else 0  # a folder records no checksum
    assert report.counts["checksums"] == by_checksum
    assert report.counts["rehashed"] == (OBJECTS if sample or not by_checksum else 0)
    if rig.s3 and mode is Mode.CHECKSUM and not sample:
        # one HEAD per object (and one for the lease, one for the root HTML); no byte of a file is read
        assert rig.s3.counts["HEAD"] == OBJECTS + 2
        assert rig.s3.counts["GET"] == 2 * PROJECTS + 2  # the pages, the root JSON and the state


@pytest.mark.parametrize(("mode", "sample"), CHECKING_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("recorded", [None, "own"], ids=["no-recorded-checksum", "its-own-checksum"])
def test_a_wrong_object_of_the_right_size_is_caught(rig, mode, sample, recorded):
    """Other bytes at a named key: written by another tool without a checksum (re-hashed), or with S3's record of
    their own sha256, which disagrees with the page's."""
    key = rig.file_key()
    rig.overwrite(key, bytes(len(rig.objects[key].body)), recorded=recorded)
    report = verify(rig, mode, sample)
    assert kinds(report) == ["wrong sha256"] * (2 if rig.kind == "s3" and recorded and sample else 1)
    assert all(key in line and sha256_of(rig.objects[key].body) in line for line in report.problems)
    if rig.kind == "s3" and recorded and mode is Mode.CHECKSUM:
        assert "S3 recorded sha256" in report.problems[0]


@pytest.mark.parametrize("mode", list(Mode), ids=str)
def test_a_missing_object_and_a_wrong_size_are_caught_in_every_mode(rig, mode):
    gone, longer = rig.file_key(0), rig.file_key(1)
    rig.delete(gone)
    rig.overwrite(longer, rig.objects[longer].body + b"!", recorded="own")
    report = verify(rig, mode)
    assert kinds(report) == ["missing", "wrong size"]
    assert gone in report.problems[0]
    assert longer in report.problems[1]


@pytest.mark.parametrize("mode", list(Mode), ids=str)
def test_two_pages_claiming_one_key_with_different_sha256_is_a_conflict(rig, mode):
    """Issue 13 class 1: a second project naming another's stored file with other bytes. The old verify kept one
    claim per key and could say sound."""
    key = rig.file_key()
    body = rig.objects[key].body
    other = sha256_of(b"other bytes")
    rig.publish("intruder", [(key, other, len(body))])
    report = verify(rig, mode)
    conflict = [line for line in report.problems if line.startswith("conflicting claims")]
    assert len(conflict) == 1
    assert key in conflict[0]
    assert other in conflict[0]
    assert sha256_of(body) in conflict[0]
    if mode is not Mode.SIZES:  # the intruder's link is checked too, and found wrong
        assert any(line.startswith(f"wrong sha256: {key}") and "simple/intruder/" in line for line in report.problems)
    assert not report.sound


def test_the_default_verify_checks_every_page_not_one_claim_per_key(rig):
    """The same conflict through verify_mirror's defaults (the call the old verify had): it said sound."""
    key = rig.file_key()
    rig.publish("intruder", [(key, sha256_of(b"other"), len(rig.objects[key].body))])
    report = verify_mirror(rig.storage)
    assert any(line.startswith("conflicting claims") for line in report.problems)


def test_pages_sharing_one_identical_file_are_not_a_conflict(rig):
    key = rig.file_key()
    body = rig.objects[key].body
    rig.publish("sharer", [(key, sha256_of(body), len(body))])
    report = verify(rig)
    assert report.sound
    assert report.counts["objects"] == OBJECTS


def test_bytes_moto_stored_under_the_pages_checksum_need_the_rehash_sample(s3_dest):
    """S3 checks a PUT's SHA256 (BadDigest); moto records it unchecked. Only re-reading the bytes finds such an
    object: checksum mode alone cannot, a sample of 100% does, as does rehash mode."""
    storage = open_storage(s3_dest.dest, endpoint_url=s3_dest.endpoint_url)
    objects = write_mirror(storage, 2, 2)
    key = sorted(objects)[0]
    s3_dest.client.put_object(
        Bucket=s3_dest.bucket,
        Key=s3_dest.object_key(key),
        Body=bytes(len(objects[key].body)),
        ChecksumAlgorithm="SHA256",
        ChecksumSHA256=base64.b64encode(hashlib.sha256(objects[key].body).digest()).decode(),
    )
    assert verify_mirror(storage, mode=Mode.CHECKSUM).sound
    for report in (verify_mirror(storage, mode=Mode.CHECKSUM, rehash_sample=1.0), verify_mirror(storage)):
        assert [line.split(":")[0] for line in report.problems] == ["wrong sha256"]


def test_an_orphan_is_listed_not_a_problem(rig):
    rig.storage.put_bytes("packages/zz/orphan.whl", b"x", content_type="x", cache_control="x")
    report = verify(rig)
    assert report.sound
    assert report.orphans == ["packages/zz/orphan.whl"]


@pytest.mark.parametrize("count", [1, 3, 7])
def test_shards_split_the_objects_and_together_find_what_one_verify_finds(rig, count):
    rig.delete(rig.file_key(0))
    rig.overwrite(rig.file_key(5), b"wrong", recorded="own")
    rig.publish("intruder", [(rig.file_key(9), sha256_of(b"x"), 40)])
    whole = verify(rig)
    parts = [verify(rig, shard=Shard(index, count)) for index in range(count)]
    assert sum(part.counts["objects"] for part in parts) == whole.counts["objects"]
    assert sorted(line for part in parts for line in part.problems) == sorted(whole.problems)
    assert all(part.counts["projects"] == PROJECTS + 1 for part in parts)  # each shard reads every page


def _sharing(rig: Rig, share, count: int, **options: Any) -> list[VerifyReport]:
    """The `count` shards of one verify run at once, sharing their page pass through folder `share`."""
    with ThreadPoolExecutor(count) as pool:
        shards = [Shard(index, count) for index in range(count)]
        return list(pool.map(lambda shard: verify(rig, shard=shard, share=share, share_wait=60, **options), shards))


@pytest.mark.parametrize("count", [2, 5])
def test_shards_sharing_their_pages_read_each_page_once_and_find_what_one_verify_finds(rig, tmp_path, count):
    rig.delete(rig.file_key(0))
    rig.overwrite(rig.file_key(5), b"wrong", recorded="own")
    rig.publish("intruder", [(rig.file_key(9), sha256_of(b"x"), 40)])
    whole = verify(rig)
    if rig.s3:
        rig.s3.proxy.reset_counts()
    parts = _sharing(rig, tmp_path / "share", count)
    assert sum(part.counts["objects"] for part in parts) == whole.counts["objects"]
    assert sorted(line for part in parts for line in part.problems) == sorted(whole.problems)
    assert sum(part.counts["projects"] for part in parts) == PROJECTS + 1  # each project's pages read by one shard
    assert sorted(part.counts["projects"] for part in parts) != [0] * (count - 1) + [PROJECTS + 1]
    if rig.s3:
        pages = Counter(key for verb, key in rig.s3.proxy.log if verb == "GET" and PROJECT_PAGE.search(key))
        assert set(pages.values()) == {1}, pages  # no page read twice, by any shard
        assert len(pages) == 2 * (PROJECTS + 1)


def test_a_shard_sharing_pages_gives_up_on_shards_that_do_not_finish_and_names_them(rig, tmp_path):
    with pytest.raises(ShareError, match=r"shards 1/3, 2/3 did not finish their page pass within 0 s"):
        verify(rig, shard=Shard(0, 3), share=tmp_path / "share", share_wait=0.2)


def test_a_shared_folder_of_another_verify_is_refused(rig, tmp_path):
    share = tmp_path / "share"
    _sharing(rig, share, 2)
    with pytest.raises(ShareError, match=r"the mark of another verify .*'shards': 2.*'shards': 3"):
        verify(rig, shard=Shard(1, 3), share=share, share_wait=5)


def test_shards_sharing_pages_resume_from_their_checkpoints(rig, tmp_path):
    """A shard stopped in its object pass resumes with its checkpoint and the shared claims, and finds the same."""
    rig.delete(rig.file_key(OBJECTS // 2))
    whole = verify(rig)
    share, checkpoints = tmp_path / "share", [tmp_path / "checkpoint-0", tmp_path / "checkpoint-1"]

    class StopAfter:
        def update(self, totals: dict[str, Any], *, force: bool = False) -> None:
            if totals["phase"] == "objects" and totals["objects"] >= 3:
                raise KeyboardInterrupt

        def summary(self, totals: dict[str, Any]) -> None:
            pass

    def shard(index: int, progress: Any = None) -> VerifyReport:
        return verify(rig, shard=Shard(index, 2), share=share, share_wait=60, checkpoint=checkpoints[index],
                      progress=progress)  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        stopped, other = pool.submit(shard, 0, StopAfter()), pool.submit(shard, 1)
        with pytest.raises(KeyboardInterrupt):
            stopped.result()
        done = other.result()
    if rig.s3:
        rig.s3.proxy.reset_counts()
    resumed = shard(0)
    assert sorted(resumed.problems + done.problems) == sorted(whole.problems)
    assert resumed.counts["objects"] + done.counts["objects"] == whole.counts["objects"]
    if rig.s3:  # the resumed shard reads no page again
        assert not [key for verb, key in rig.s3.proxy.log if verb == "GET" and PROJECT_PAGE.search(key)]


def test_an_interrupted_verify_resumes_after_what_it_checked(rig, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    rig.delete(rig.file_key(OBJECTS // 2))

    class StopAfter:
        def update(self, totals: dict[str, Any], *, force: bool = False) -> None:
            if totals["phase"] == "objects" and totals["objects"] >= 5:
                raise KeyboardInterrupt

        def summary(self, totals: dict[str, Any]) -> None:
            raise AssertionError("an interrupted verify has no summary")

    with pytest.raises(KeyboardInterrupt):
        verify(rig, checkpoint=checkpoint, progress=StopAfter())
    saved = json.loads((checkpoint / "progress.json").read_text())
    assert saved["pages_done"]
    assert saved["counts"]["objects"] == 5
    assert not saved["done"]
    first_problems = saved["counts"].get("problem", 0)
    reads = Counter[str]()
    storage = rig.storage

    class Counting:
        def __getattr__(self, name: str) -> Any:
            method = getattr(storage, name)

            def counted(*args: Any, **kwargs: Any) -> Any:
                key = args[0] if args and isinstance(args[0], str) else ""
                reads[name if key.startswith(("packages/", "simple/")) else "other"] += 1
                return method(*args, **kwargs)

            return counted

    resumed = verify_mirror(Counting(), mode=Mode.CHECKSUM, workers=2, checkpoint=checkpoint)  # type: ignore[arg-type]
    assert resumed.counts["objects"] == OBJECTS - 1  # every stored named object, over both runs
    assert resumed.counts["problem"] == 1
    assert first_problems + len(resumed.problems) == 1
    assert reads["get_bytes"] == 0  # the pages were read before the interruption, and not again
    checks = reads["stored_sha256"] if rig.kind == "s3" else reads["open"]
    assert checks == OBJECTS - 1 - 5  # the rest of the stored objects, each once
    with pytest.raises(CheckpointError):
        verify(rig, Mode.REHASH, checkpoint=checkpoint)


def test_claims_come_back_sorted_and_grouped_across_many_runs(tmp_path):
    rng = random.Random(7)
    claims = [
        Claim(f"packages/{rng.randrange(40):02d}/f.whl", f"{rng.randrange(3):064x}", rng.choice([None, 5]), f"p{n}")
        for n in range(500)
    ]
    spill = ClaimSpill(tmp_path / "claims", run_claims=7)
    for claim in claims:
        spill.add(claim)
    groups = list(spill.grouped(after="packages/05", upto="packages/30/f.whl"))
    expected = sorted({c.key for c in claims if "packages/05" < c.key <= "packages/30/f.whl"})
    assert [group.key for group in groups] == expected
    for group in groups:
        assert group.claims == sum(c.key == group.key for c in claims)
        assert set(group.distinct) == {(c.sha256, c.size) for c in claims if c.key == group.key}
    assert spill.runs == -(-500 // 7)


def test_shards_cover_the_key_space_once():
    keys = ["packages/00/a", "packages/3f/x", "packages/40", "packages/ff/z", "packages/zz", "packages/"]
    for count in (1, 2, 3, 16, 256):
        shards = [Shard(index, count).bounds() for index in range(count)]
        for key in keys:
            assert sum(after < key and (upto is None or key <= upto) for after, upto in shards) == 1
            assert sum(Shard(index, count).holds(key) for index in range(count)) == 1
    names = [f"project-{n}" for n in range(300)]
    owners = [[Shard(index, 4).owns(name) for index in range(4)] for name in names]
    assert all(sum(owned) == 1 for owned in owners)
    assert all(40 < sum(owned[index] for owned in owners) < 110 for index in range(4))  # spread, not lumped


def test_a_spill_split_in_parts_gives_each_shard_exactly_its_keys(tmp_path):
    """The boundary keys included: `packages/80` is shard 0's of 2 (after < key <= upto), `packages/80/a` shard 1's."""
    keys = ["packages/00/a", "packages/7f/z", "packages/80", "packages/80/a", "packages/aa/b", "packages/ff/z", "zz"]
    spill = ClaimSpill(tmp_path / "claims", run_claims=3, parts=2)
    for key in keys * 2:
        spill.add(Claim(key, "0" * 64, 1, "p"))
    spill.flush()
    for index in range(2):
        held = sorted({group.key for group in grouped(spill.part_runs(index))})
        assert held == [key for key in keys if Shard(index, 2).holds(key)]
    reopened = ClaimSpill(tmp_path / "claims", keep=spill.runs - 1, parts=2)  # the last run is not counted: removed
    assert len(list((tmp_path / "claims").glob("run-*"))) == 2 * reopened.runs


@pytest.mark.parametrize("text", ["4/4", "-1/2", "1/0", "x", "0/257"])
def test_a_bad_shard_is_refused(text):
    with pytest.raises(ValueError, match="shard"):
        Shard.parse(text)


def test_the_cli_verify_flags(rig, tmp_path, capsys):
    endpoint = ["--endpoint-url", rig.s3.endpoint_url] if rig.s3 else []
    args = ["verify", "--dest", rig.dest, *endpoint, "--log-format", "json", "--workers", "4"]
    assert cli.main([*args, "--rehash-sample", "50%", "--checkpoint", str(tmp_path / "cp")]) == cli.EXIT_OK
    err = capsys.readouterr().err.splitlines()
    summary = json.loads(next(line for line in err if '"event": "summary"' in line))
    assert summary["objects"] == OBJECTS
    assert summary["objects_per_second"] > 0
    assert summary["cpu_seconds"] > 0
    pages = [json.loads(line) for line in err if '"phase": "pages"' in line]
    assert pages[-1]["projects"] == PROJECTS  # the page pass ends with its own totals
    assert 0 < pages[-1]["cpu_seconds"] <= summary["cpu_seconds"]
    assert err[-1].startswith(f"sound: {PROJECTS} projects, {OBJECTS} objects checked")
    assert cli.main([*args, "--mode", "sizes", "--checkpoint", str(tmp_path / "cp")]) == cli.EXIT_USAGE
    rig.delete(rig.file_key())
    assert cli.main([*args, "--shard", "0/2"]) + cli.main([*args, "--shard", "1/2"]) == cli.EXIT_VERIFY_FAILED
    assert capsys.readouterr().out.count("missing:") == 1
    with pytest.raises(SystemExit):
        cli.main([*args, "--rehash-sample", "200%"])
    assert cli.main([*args, "--workers", "65"]) == cli.EXIT_USAGE


def test_the_cli_shares_pages_between_shards_and_says_which_did_not_finish(rig, tmp_path, capsys):
    endpoint = ["--endpoint-url", rig.s3.endpoint_url] if rig.s3 else []
    share = ["--share-pages", str(tmp_path / "share")]
    args = ["verify", "--dest", rig.dest, *endpoint, "--log-format", "json", "--workers", "4", *share]
    rig.delete(rig.file_key())
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda shard: cli.main([*args, "--shard", shard]), ["0/2", "1/2"]))
    assert sorted(codes) == [cli.EXIT_OK, cli.EXIT_VERIFY_FAILED]
    assert capsys.readouterr().out.count("missing:") == 1
    lonely = [*args, "--shard", "0/3", "--share-pages", str(tmp_path / "other"), "--share-wait", "0.1s"]
    assert cli.main(lonely) == cli.EXIT_USAGE
    assert "shards 1/3, 2/3 did not finish their page pass within 0 s" in capsys.readouterr().err
    assert cli.main([*args, "--shard", "0/1"]) == cli.EXIT_USAGE
    assert "--share-pages: only with --shard I/N" in capsys.readouterr().err


def test_s3_stored_sha256_reads_what_the_put_recorded(s3_dest):
    storage = open_storage(s3_dest.dest, endpoint_url=s3_dest.endpoint_url)
    storage.put_bytes("a", b"abc", content_type="x", cache_control="x")
    s3_dest.client.put_object(Bucket=s3_dest.bucket, Key=s3_dest.object_key("b"), Body=b"abc")
    assert storage.stored_sha256("a") == (3, sha256_of(b"abc"))
    assert storage.stored_sha256("b") == (3, None)  # boto3 sent a CRC32 of its own: no SHA256 to compare
    assert storage.stored_sha256("c") is None


def test_listing_starts_after_a_key_on_both_backends(rig):
    keys = [info.key for info in rig.storage.list("packages/")]
    middle = keys[len(keys) // 2]
    assert [info.key for info in rig.storage.list("packages/", start_after=middle)] == keys[keys.index(middle) + 1 :]
    folder = middle.rsplit("/", 1)[0] + "/"
    assert [info.key for info in rig.storage.list("packages/", start_after=folder)] == [k for k in keys if k > folder]


def test_progress_is_a_status_line_on_a_terminal_and_json_lines_otherwise(rig):
    terminal, lines = io.StringIO(), io.StringIO()
    verify(rig, progress=VerifyProgress(terminal, json_lines=False))
    verify(rig, progress=VerifyProgress(lines, json_lines=True))
    assert terminal.getvalue().startswith("\r\x1b[2K")
    assert "objects/s" in terminal.getvalue()
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert events[-1]["event"] == "summary"
    assert events[-1]["objects"] == OBJECTS
    assert events[-1]["objects_per_second"] > 0
