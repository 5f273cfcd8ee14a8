"""Filters: allow/block lists, keep-latest, wheel tags and size — applied to the page before any fetch."""

import pytest

from sync.config import MirrorConfig
from sync.filters import file_version, filter_page, wants_project
from sync.models import DistFile, ProjectPage


def dist(filename: str, size: int = 100) -> DistFile:
    return DistFile(
        filename=filename,
        url=f"https://files.example/{filename}",
        sha256="0" * 64,
        key=f"packages/00/00/x/{filename}",
        size=size,
    )


PAGE = ProjectPage(
    name="Demo",
    last_serial=7,
    versions=("1.0", "1.1", "2.0", "2.1rc1"),
    files=(
        dist("demo-1.0.tar.gz"),
        dist("demo-1.1-py3-none-any.whl"),
        dist("demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl", size=5000),
        dist("demo-2.0-cp311-cp311-win_amd64.whl"),
        dist("demo-2.0-cp313-cp313-macosx_11_0_arm64.whl"),
        dist("demo-2.0.tar.gz"),
        dist("demo-2.1rc1.tar.gz"),
    ),
)


def config(**settings) -> MirrorConfig:
    return MirrorConfig(dest="/tmp/unused", **settings)


def names(page: ProjectPage) -> list[str]:
    return [f.filename for f in page.files]


def test_allowlist_and_blocklist_use_normalized_names():
    cfg = config(projects=("Foo.Bar", "baz"), blocklist=("BAZ",))
    assert wants_project(cfg, "foo-bar")
    assert not wants_project(cfg, "baz")
    assert not wants_project(cfg, "other")
    assert wants_project(config(), "anything")


def test_no_filter_keeps_everything():
    assert filter_page(config(), PAGE) == PAGE


def test_keep_latest_keeps_newest_releases_and_their_versions():
    page = filter_page(config(keep_latest=2), PAGE)
    assert names(page) == [
        "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "demo-2.0-cp311-cp311-win_amd64.whl",
        "demo-2.0-cp313-cp313-macosx_11_0_arm64.whl",
        "demo-2.0.tar.gz",
        "demo-2.1rc1.tar.gz",
    ]
    assert page.versions == ("2.0", "2.1rc1")


def test_platform_filter_keeps_sdists_and_matching_wheels():
    page = filter_page(config(platforms=("manylinux*", "any")), PAGE)
    assert names(page) == [
        "demo-1.0.tar.gz",
        "demo-1.1-py3-none-any.whl",
        "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "demo-2.0.tar.gz",
        "demo-2.1rc1.tar.gz",
    ]


def test_python_tag_filter():
    page = filter_page(config(python_tags=("cp313", "py3")), PAGE)
    assert [n for n in names(page) if n.endswith(".whl")] == [
        "demo-1.1-py3-none-any.whl",
        "demo-2.0-cp313-cp313-macosx_11_0_arm64.whl",
    ]


def test_max_file_size_drops_big_files():
    page = filter_page(config(max_file_size=1000), PAGE)
    assert "demo-2.0-cp311-cp311-manylinux_2_17_x86_64.whl" not in names(page)
    assert len(page.files) == len(PAGE.files) - 1


@pytest.mark.parametrize(
    ("filename", "version"),
    [("demo-1.0.tar.gz", "1.0"), ("demo-2.0-py3-none-any.whl", "2.0"), ("weird.exe", None), ("demo.zip", None)],
)
def test_file_version(filename, version):
    parsed = file_version(filename)
    assert (str(parsed) if parsed else None) == version
