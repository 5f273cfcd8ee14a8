"""The fake PyPI's index and corpus: serials, names, bulk names, deterministic realistic corpora."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests.test_upstream_server import fetch, json_page
from tests.upstream.corpus import build_corpus
from tests.upstream.index import BASE_SERIAL, FakeIndex
from tests.upstream.server import JSON_TYPE


# ------------------------------------------------------------------------------------------------ index, corpus
def test_index_mutations_bump_the_serial_and_keep_the_display_name():
    index = FakeIndex()
    assert index.serial == BASE_SERIAL
    index.add_file("My.Project", "my_project-1.0.tar.gz", b"a", version="1.0")
    index.add_file("my_project", "my_project-1.1.tar.gz", b"b", version="1.1")
    project = index.project("MY-PROJECT")
    assert (project.name, project.normalized, project.last_serial) == ("My.Project", "my-project", BASE_SERIAL + 2)
    assert [row.serial for row in index.changelog_since(BASE_SERIAL)] == [BASE_SERIAL + 1, BASE_SERIAL + 2]
    assert index.changelog_since(BASE_SERIAL + 1)[0].name == "My.Project"
    assert len(index.changelog_since(BASE_SERIAL, limit=1)) == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda index: index.add_file("bad name!", "x-1.0.tar.gz", b"", version="1.0"), "invalid project name"),
        (lambda index: index.add_file("tiny", "../x.whl", b"", version="1.0"), "invalid file name"),
        (lambda index: index.add_file("tiny", "tiny-0.5.tar.gz", b"", version="0.5"), "already exists"),
        (lambda index: index.project("nowhere"), "no project 'nowhere'"),
        (lambda index: index.remove_file("tiny", "absent.whl"), "no file 'absent.whl'"),
        (lambda index: index.add_bulk_names(-1), "bulk name count"),
    ],
)
def test_index_names_bad_input(fake_index, call, message):
    with pytest.raises((ValueError, KeyError), match=message):
        call(fake_index)


def test_bulk_names_are_listed_paged_and_journaled_cheaply(upstream, fake_index):
    fake_index.add_bulk_names(20_000)
    root = fetch(upstream, "/simple/", Accept=JSON_TYPE).json()
    names = [p["name"] for p in root["projects"]]
    assert len(names) == 20_003
    assert names[0] == "Bulk_Project.0000000"
    assert root["meta"]["_last-serial"] == fake_index.serial
    assert root["projects"][19_999] == {"name": "Bulk_Project.0019999", "_last-serial": fake_index.serial}
    page = json_page(upstream, "bulk-project-0000042")
    assert (page["name"], page["files"]) == ("bulk-project-0000042", [])
    assert fetch(upstream, "/simple/bulk-project-0020000/").status == 404
    assert len(fake_index.projects()) == 3  # bulk names are generated, not stored projects


def test_corpus_is_deterministic_and_realistic():
    first, second, other = FakeIndex(), FakeIndex(), FakeIndex()
    stats = build_corpus(first, projects=30, files_per_project=(1, 6), seed=7, large_files=2, large_size=3 * 2**20)
    build_corpus(second, projects=30, files_per_project=(1, 6), seed=7, large_files=2, large_size=3 * 2**20)
    build_corpus(other, projects=30, files_per_project=(1, 6), seed=8)

    def digest(index: FakeIndex) -> list[tuple[str, str, str]]:
        return [(p.name, f.filename, f.sha256) for p in index.projects() for f in p.files]

    assert digest(first) == digest(second)
    assert digest(first) != digest(other)
    files = [f for p in first.projects() for f in p.files]
    assert (stats.projects, stats.files, stats.total_bytes) == (30, len(files), sum(f.size for f in files))
    assert all(1 <= len(p.files) <= 6 for p in first.projects())
    assert len({f.sha256 for f in files}) == len(files)
    assert sorted(f.size for f in files)[-2:] == [3 * 2**20] * 2
    assert all(f.size < 3 * 2**20 for f in files if f.size != 3 * 2**20)
    assert any(p.name != p.normalized for p in first.projects())
    assert any(f.filename.endswith(".tar.gz") for f in files)
    assert any(f.filename.endswith("-py3-none-any.whl") for f in files)
    assert any(f.metadata for f in files)
    assert any(f.requires_python for f in files)
    wheels = [f for f in files if f.filename.endswith(".whl")]
    assert any(f.metadata for f in wheels)
    for wheel in wheels:  # real zips whose METADATA is what the index serves as `.metadata`, if it serves it
        dist, version = wheel.filename.split("-")[:2]
        with zipfile.ZipFile(io.BytesIO(wheel.content)) as archive:
            assert archive.testzip() is None
            metadata = archive.read(f"{dist}-{version}.dist-info/METADATA")
        assert metadata == (wheel.metadata or metadata)
        assert metadata.startswith(b"Metadata-Version: 2.1\nName: ")


def test_corpus_with_fixed_counts_and_no_extras():
    index = FakeIndex()
    stats = build_corpus(index, projects=5, files_per_project=4, metadata_ratio=0, yank_ratio=0)
    assert (stats.projects, stats.files) == (5, 20)
    files = [f for p in index.projects() for f in p.files]
    assert not any(f.metadata or f.yanked for f in files)
    with pytest.raises(ValueError, match="ratios"):
        build_corpus(index, projects=1, files_per_project=1, yank_ratio=2)
