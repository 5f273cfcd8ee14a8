"""bench/compare.py runs end to end on a tiny corpus (pypi-cdn only), and the fake PyPI's JSON API it relies on."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request

import pytest

import sync.project_sync
import sync.run
from bench import faults_report, freshness, verify_scale, verify_vs_bandersnatch
from bench._bandersnatch import EXECUTABLE as BANDERSNATCH
from bench.compare import main
from bench.lag import CREDENTIALS
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer


def _table_rows(output: str) -> dict[tuple[str, str, str], list[str]]:
    """The main table's rows keyed by (phase, dest, tool)."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 12 and cells[0] in {"cold", "no-op", "changed"}:
            rows[(cells[0], cells[1], cells[2])] = cells
    return rows


def test_compare_runs_pypi_cdn_on_a_tiny_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = (
        "--rounds 1 --projects 3 --min-files 2 --max-files 3 --large-files 0 --skip-bandersnatch --big-root 2000"
    )
    code = main(arguments.split())
    output = capsys.readouterr().out
    assert code == 0, output
    rows = _table_rows(output)
    assert set(rows) == {
        (phase, dest, "pypi-cdn") for phase in ("cold", "no-op", "changed") for dest in ("folder", "s3")
    }
    # columns: phase dest tool wall files/s MB/s upstream S3 S3/object RSS CPU complete
    for dest in ("folder", "s3"):
        assert rows[("cold", dest, "pypi-cdn")][11] == "yes"
        assert rows[("no-op", dest, "pypi-cdn")][6] == "1 (0/0/1)"  # one change-feed call, nothing else
        # 1 changed project: its page and the new wheel (whose .metadata the mirror takes out of the wheel)
        assert rows[("changed", dest, "pypi-cdn")][6] == "3 (1/1/1)"
    assert rows[("no-op", "s3", "pypi-cdn")][7] == "GET 1"  # the state object; nothing written
    assert float(rows[("cold", "s3", "pypi-cdn")][8]) > 0
    assert "2x of the wire" in output
    assert "planning a whole-index mirror from a root of 2,000 projects: 2,000 planned" in output


def test_legacy_json_api_serves_what_bandersnatch_reads() -> None:
    index = FakeIndex()
    index.add_file("Foo_Bar", "foo_bar-1.0.tar.gz", b"sdist", version="1.0")
    wheel = index.add_file(
        "Foo_Bar",
        "foo_bar-1.1-py3-none-any.whl",
        b"wheel",
        version="1.1",
        metadata=b"Name: Foo_Bar\n",
        yanked="broken",
    )
    with UpstreamServer(index) as server:
        with urllib.request.urlopen(server.url + "/pypi/foo-bar/json", timeout=10) as response:
            serial_header = response.headers["X-PyPI-Last-Serial"]
            document = json.load(response)
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "/pypi/nothing/json", timeout=10)
    assert serial_header == str(index.serial) == str(document["last_serial"])
    assert document["info"] == {"name": "Foo_Bar", "version": "1.1"}
    assert [f["filename"] for f in document["releases"]["1.0"]] == ["foo_bar-1.0.tar.gz"]
    (entry,) = document["releases"]["1.1"]
    assert entry["url"] == server.url + wheel.url_path
    assert entry["digests"]["sha256"] == wheel.sha256
    assert entry["size"] == 5
    assert entry["yanked"] is True
    assert entry["yanked_reason"] == "broken"
    assert entry["core-metadata"] == {"sha256": wheel.metadata_sha256}
    assert document["releases"]["1.0"][0]["core-metadata"] is False
    assert document["urls"] == document["releases"]["1.1"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_freshness_bench_runs_a_tiny_configuration(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CREDENTIALS.items():  # main() sets them; restored after the test
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sync.project_sync, "PAGE_CACHE_CONTROL", sync.project_sync.PAGE_CACHE_CONTROL)
    monkeypatch.setattr(sync.run, "PAGE_CACHE_CONTROL", sync.run.PAGE_CACHE_CONTROL)
    arguments = "--rates 60 --modes targeted --window 4 --popular 2 --rare 1 --rare-interval 4 --corpus 12"
    assert freshness.main(arguments.split()) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| targeted"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1] == "60"
    assert cells[4].endswith("(2/2)")  # both popular pages received their change
    assert int(cells[7]) >= 2  # a changed project's two pages were invalidated on the edge


def test_verify_scale_runs_on_tiny_mirrors(capsys: pytest.CaptureFixture[str]) -> None:
    verify_scale.main(["--folder-sizes", "150,300", "--s3-sizes", "150", "--s3-modes", "checksum", "--files", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines if line.startswith(("folder ", "s3 ")) and len(line.split()) == 14]
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("s3", "checksum", "0"),
        ("folder", "sizes", "0"),
        ("folder", "rehash", "0"),
        ("folder", "sizes", "0"),
        ("folder", "rehash", "0"),
    ]
    assert rows[0][1] == "150"
    assert rows[0][8] == "152"  # one HEAD per object, and one each for the lease and the root HTML
    assert any(line.startswith("folder rehash: ") and "bytes/object" in line for line in lines)
    assert any("10,000,000 HEAD" in line for line in lines)
    assert float(rows[0][12]) > 0  # CPU ms a project (the page pass)
    assert float(rows[0][13]) > 0  # and an object
    assert any("shards sharing their pages for 1 h" in line for line in lines)


def test_verify_scale_extrapolates_shards_and_requests_from_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    run = verify_scale.Run("s3", 10_000, "checksum", 60.0, 11.0, 80.0, 0, 200.0, projects=1_000)
    run.pages_cpu, run.cpu_seconds = 1.0, 11.0  # 1 ms a project, 1 ms an object
    verify_scale.ten_million_at(run)
    out = capsys.readouterr().out
    # 930,000 x 1 ms + 10,000,000 x 1 ms = 10,930 CPU seconds: 4 one-hour shards
    assert "3.0 CPU-hours: 4 shards sharing their pages" in out
    # unshared, the first shard reads both pages of every project and the 3 others each JSON page
    assert "4 shards not sharing: 14,650,000" in out


def test_verify_scale_runs_shards_that_share_their_pages(capsys: pytest.CaptureFixture[str]) -> None:
    verify_scale.main(["--folder-sizes", "", "--s3-sizes", "150", "--s3-modes", "checksum", "--files", "2",
                       "--s3-shards", "2"])  # fmt: skip
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("s3 ")]
    assert [(row[1], row[2], row[3]) for row in rows] == [("150", "checksum/2", "0")]
    # HEAD: each object once, each shard's lease, shard 0's root HTML; GET: 50 projects' two pages once, the root
    # JSON, each shard's state
    assert (rows[0][8], rows[0][9]) == ("153", "103")


@pytest.mark.skipif(not BANDERSNATCH.exists(), reason="build/bandersnatch-venv is missing (bench/_bandersnatch.py)")
def test_verify_vs_bandersnatch_runs_on_a_tiny_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_vs_bandersnatch.main(["--projects", "3", "--files", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    rows = [row for row in rows if row[0] in {"bandersnatch", "pypi-cdn"}]
    timed = {(row[0], row[1]): row for row in rows if len(row) == 10}
    # columns: tool mode objects exit wall CPU objects/s RSS upstream load; 3 projects x (2 files + 1 .metadata)
    assert [(key, row[2], row[3]) for key, row in timed.items()] == [
        (("bandersnatch", "verify (local JSON, hash)"), "9", "0"),
        (("bandersnatch", "verify --json-update"), "9", "0"),
        (("pypi-cdn", "rehash"), "9", "0"),
        (("pypi-cdn", "sizes"), "9", "0"),
    ]
    assert timed[("bandersnatch", "verify --json-update")][8] == "3 (3/0/0)"  # one JSON document per project
    assert timed[("pypi-cdn", "rehash")][8] == "0 (0/0/0)"
    damaged = {(row[0], row[1]): row for row in rows if len(row) == 6}
    # columns: tool mode exit upstream verdict files-afterwards
    assert damaged[("pypi-cdn", "rehash")][2] == "6"
    assert "missing: " in damaged[("pypi-cdn", "rehash")][4]
    assert "wrong sha256: " in damaged[("pypi-cdn", "rehash")][4]
    assert damaged[("pypi-cdn", "sizes")][4].startswith("missing: ")  # same size: only the deletion shows
    assert damaged[("bandersnatch", "verify --dry-run")][4].count("would be fetched") == 2
    assert damaged[("bandersnatch", "verify")][3] == "2 (0/2/0)"  # it downloads both again
    assert damaged[("bandersnatch", "verify")][5] == "intact, intact"
    assert damaged[("pypi-cdn", "rehash")][5] == "corrupt, missing"  # it reports; it does not repair


def test_faults_report_counts_every_table(capsys: pytest.CaptureFixture[str]) -> None:
    faults_report.main()
    output = capsys.readouterr().out
    assert "hostile answers measured for memory (of those)" in output
    for number in range(1, 11):
        assert f"hostile class {number}:" in output
