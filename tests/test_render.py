"""The mirror's pages: exact HTML and JSON per PEP 503/592/658/691/700/714, relative links, round trips, scale."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest
from packaging.utils import canonicalize_name

from sync import render
from sync.models import DistFile, InvalidInput, ProjectPage
from sync.pages import http_locator, parse_html_page
from sync.render import parse_published_json, project_html, project_json

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_M = "c" * 64
MIRROR_PAGE = "https://mirror.example/simple/demo-pkg/"


def dist(filename: str, sha256: str = SHA_A, **fields: object) -> DistFile:
    key = f"packages/{sha256[:2]}/{sha256[2:4]}/{sha256[4:]}/{filename}"
    settings: dict = {"size": 4, **fields}
    return DistFile(filename=filename, url=f"https://files.example/{key}", sha256=sha256, key=key, **settings)


PAGE = ProjectPage(
    name="Demo_Pkg",
    last_serial=42,
    files=(
        dist("demo_pkg-1.0.tar.gz", size=1234, upload_time="2024-01-02T03:04:05.123456Z"),
        dist(
            "demo_pkg-1.1-py3-none-any.whl",
            SHA_B,
            size=99,
            requires_python=">=3.8",
            yanked='broken <build> & "quotes"',
            has_metadata=True,
            metadata_sha256=SHA_M,
        ),
        dist("demo_pkg-1.2.tar.gz", "d" * 64, yanked=True, has_metadata=True),  # metadata without a hash
    ),
    versions=("1.0", "1.1", "1.2"),
    etag='"upstream-etag"',
)

EXPECTED_HTML = f"""<!DOCTYPE html>
<html>
  <head>
    <meta name="pypi:repository-version" content="1.4">
    <meta name="pypi:project-status" content="active">
    <title>Links for demo-pkg</title>
  </head>
  <body>
    <h1>Links for demo-pkg</h1>
    <a href="../../packages/aa/aa/{"a" * 60}/demo_pkg-1.0.tar.gz#sha256={SHA_A}">demo_pkg-1.0.tar.gz</a><br />
    <a href="../../packages/bb/bb/{"b" * 60}/demo_pkg-1.1-py3-none-any.whl#sha256={SHA_B}" \
data-requires-python="&gt;=3.8" data-yanked="broken &lt;build&gt; &amp; &quot;quotes&quot;" \
data-dist-info-metadata="sha256={SHA_M}" data-core-metadata="sha256={SHA_M}">demo_pkg-1.1-py3-none-any.whl</a><br />
    <a href="../../packages/dd/dd/{"d" * 60}/demo_pkg-1.2.tar.gz#sha256={"d" * 64}" data-yanked="">\
demo_pkg-1.2.tar.gz</a><br />
  </body>
</html>
<!--SERIAL 42-->
"""

EXPECTED_JSON = {
    "meta": {"api-version": "1.4", "_last-serial": 42},
    "name": "demo-pkg",
    "versions": ["1.0", "1.1", "1.2"],
    "files": [
        {
            "filename": "demo_pkg-1.0.tar.gz",
            "url": f"../../packages/aa/aa/{'a' * 60}/demo_pkg-1.0.tar.gz",
            "hashes": {"sha256": SHA_A},
            "size": 1234,
            "upload-time": "2024-01-02T03:04:05.123456Z",
            "yanked": False,
            "provenance": None,
        },
        {
            "filename": "demo_pkg-1.1-py3-none-any.whl",
            "url": f"../../packages/bb/bb/{'b' * 60}/demo_pkg-1.1-py3-none-any.whl",
            "hashes": {"sha256": SHA_B},
            "size": 99,
            "requires-python": ">=3.8",
            "core-metadata": {"sha256": SHA_M},
            "yanked": 'broken <build> & "quotes"',
            "provenance": None,
        },
        {
            "filename": "demo_pkg-1.2.tar.gz",
            "url": f"../../packages/dd/dd/{'d' * 60}/demo_pkg-1.2.tar.gz",
            "hashes": {"sha256": "d" * 64},
            "size": 4,
            "yanked": True,
            "provenance": None,
        },
    ],
    "project-status": {"status": "active"},
}


def test_project_html_is_pep_503_592_714_with_escaped_attributes():
    assert project_html(PAGE).decode() == EXPECTED_HTML


def strings_in(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_project_json_is_pep_691_700_714():
    body = project_json(PAGE)
    assert json.loads(body) == EXPECTED_JSON
    assert "" not in set(strings_in(json.loads(body)))  # unknown values are omitted, never empty strings
    assert body.index(b'"files"') < body.index(b'"meta"') < body.index(b'"name"') < body.index(b'"versions"')


def test_rendering_is_deterministic_and_keeps_upstream_file_order():
    again = ProjectPage(PAGE.name, PAGE.last_serial, PAGE.files, PAGE.versions)
    assert (project_json(again), project_html(again)) == (project_json(PAGE), project_html(PAGE))
    reordered = ProjectPage(PAGE.name, PAGE.last_serial, PAGE.files[::-1], PAGE.versions)
    filenames = [f["filename"] for f in json.loads(project_json(reordered))["files"]]
    assert filenames == [f.filename for f in PAGE.files[::-1]]


def test_unknown_sizes_make_a_1_0_page_and_unknown_serial_is_omitted():
    page = ProjectPage("demo", None, (dist("demo-1.0.tar.gz", size=None), dist("demo-1.1.tar.gz", SHA_B)))
    document = json.loads(project_json(page))
    assert document["meta"] == {"api-version": "1.0"}
    assert ["size" in f for f in document["files"]] == [False, True]
    html = project_html(page).decode()
    assert '<meta name="pypi:repository-version" content="1.4">' in html  # PEP 700 sizes are JSON-only
    assert "SERIAL" not in html


def test_links_are_percent_encoded_and_read_back():
    page = ProjectPage("demo", 1, (dist("demo-1.0+local.tar.gz"),))
    (entry,) = json.loads(project_json(page))["files"]
    assert entry["url"] == f"../../packages/aa/aa/{'a' * 60}/demo-1.0%2Blocal.tar.gz"
    assert f'href="../../packages/aa/aa/{"a" * 60}/demo-1.0%2Blocal.tar.gz#sha256=' in project_html(page).decode()
    assert parse_published_json(project_json(page)).files[0].key == page.files[0].key


def served(dist_file: DistFile) -> tuple:
    """What a published page keeps of a file (metadata only when the mirror can verify and serve it)."""
    metadata = dist_file.metadata_sha256 if dist_file.has_metadata else None
    return (
        dist_file.filename,
        dist_file.key,
        dist_file.sha256,
        dist_file.requires_python,
        dist_file.yanked,
        metadata,
        metadata is not None,
    )


def test_json_round_trip_keeps_every_published_field():
    parsed = parse_published_json(project_json(PAGE))
    assert (parsed.normalized, parsed.last_serial, parsed.versions) == ("demo-pkg", 42, PAGE.versions)
    assert [served(f) for f in parsed.files] == [served(f) for f in PAGE.files]
    assert [(f.size, f.upload_time) for f in parsed.files] == [(f.size, f.upload_time) for f in PAGE.files]
    assert parsed.files[0].url == f"../../packages/aa/aa/{'a' * 60}/demo_pkg-1.0.tar.gz"
    assert project_json(parsed) == project_json(PAGE)
    assert project_html(parsed) == project_html(PAGE)


def test_html_parses_back_with_the_upstream_parser():
    html = project_html(PAGE).decode()
    locate = http_locator(MIRROR_PAGE, "demo-pkg", frozenset({"mirror.example"}))
    parsed = parse_html_page(html, project="demo-pkg", page_url=MIRROR_PAGE, locate=locate, serial=42)
    assert [served(f) for f in parsed.files] == [served(f) for f in PAGE.files]
    assert parsed.files[0].url == f"https://mirror.example/packages/aa/aa/{'a' * 60}/demo_pkg-1.0.tar.gz"
    assert parsed.versions == PAGE.versions


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (
            b'{"meta": {"api-version": "1.1"}, "name": "x", "files": [{"filename": "x-1.tar.gz", '
            b'"url": "https://elsewhere/x-1.tar.gz", "hashes": {"sha256": "' + SHA_A.encode() + b'"}}]}',
            "is not a ../../packages/ link",
        ),
        (
            b'{"meta": {"api-version": "1.1"}, "name": "x", "files": [{"filename": "x-1.tar.gz", '
            b'"url": "../../packages/%2e%2e/x-1.tar.gz", "hashes": {"sha256": "' + SHA_A.encode() + b'"}}]}',
            "not a safe packages/",
        ),
        (
            b'{"meta": {"api-version": "1.1"}, "name": "x", "files": [{"filename": "x-1.tar.gz", '
            b'"url": "../../packages/x-1.tar.gz", "hashes": {"sha256": "short"}}]}',
            "not 64 hex digits",
        ),
    ],
    ids=["not JSON", "absolute link", "traversal", "bad hash"],
)
def test_parse_published_json_is_strict(body, message):
    with pytest.raises(ValueError, match=message):
        parse_published_json(body)


def root_html(projects) -> bytes:
    return b"".join(render.root_html(projects))


def root_json(projects, last_serial) -> bytes:
    return b"".join(render.root_json(projects, last_serial))


def test_root_pages_list_normalized_links_in_the_given_order():
    projects = [("zope.Hookable", 7), ("Foo_Bar", None), ("tiny", 3)]
    assert root_html(projects).decode() == (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.4">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
        '    <a href="zope-hookable/">zope.Hookable</a>\n'
        '    <a href="foo-bar/">Foo_Bar</a>\n'
        '    <a href="tiny/">tiny</a>\n'
        "  </body>\n</html>\n"
    )
    assert json.loads(root_json(projects, 99)) == {
        "meta": {"api-version": "1.4", "_last-serial": 99},
        "projects": [
            {"name": "zope.Hookable", "_last-serial": 7},
            {"name": "Foo_Bar"},
            {"name": "tiny", "_last-serial": 3},
        ],
    }
    assert json.loads(root_json([], None)) == {"meta": {"api-version": "1.4"}, "projects": []}


def test_root_links_are_normalized_as_packaging_does():
    names = ["A..b__C-d", "x_-_y", "Zope.Interface", "a" * 200, "Q"]
    hrefs = re.findall(r'href="([^"]+)/"', root_html((name, None) for name in names).decode())
    assert hrefs == [canonicalize_name(name) for name in names]


@pytest.mark.parametrize("page", [root_html, lambda projects: root_json(projects, 1)], ids=["html", "json"])
@pytest.mark.parametrize("bad", ['evil"><script>', "two\nlines", "-leading", "a" * 201, ""])
def test_root_pages_refuse_invalid_names(page, bad):
    with pytest.raises(InvalidInput, match="invalid project name"):
        page([("ok", 1), (bad, 2)])


def test_root_pages_for_200k_projects_render_fast():
    projects = [(f"Bulk_Project.{i:07d}", i) for i in range(200_000)]
    start = time.monotonic()
    html = root_html(projects)
    document = json.loads(root_json(iter(projects), 200_000))
    seconds = time.monotonic() - start
    assert html.count(b"<a href=") == 200_000
    assert html.endswith(b'    <a href="bulk-project-0199999/">Bulk_Project.0199999</a>\n  </body>\n</html>\n')
    assert len(document["projects"]) == 200_000
    assert document["projects"][-1] == {"name": "Bulk_Project.0199999", "_last-serial": 199_999}
    assert seconds < 4
