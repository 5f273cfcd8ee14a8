"""Hostile input from upstream: names with `..`, `/`, `\\`, NUL, control characters, percent-encoding and over-long
values; file URLs on foreign hosts; script in HTML attributes; JSON of the wrong types. Each is rejected (named in the
run's JSON event lines or its `failed:` line) or safely escaped; nothing is written outside the destination, nothing
reaches a page unescaped. Last, hostile request paths at the edge: the function forwards only index pages and files.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from devstack.edge import ViewerRequestFunction, viewer_request_event
from sync import cli
from tests.test_faults_upstream import FaultRig, synced_rig, use_fast_client
from tests.upstream.index import FakeFile, FakeIndex
from tests.upstream.server import JSON_TYPE, UpstreamServer

SHA = "ab" * 32
PAGE_TAGS = {"html", "head", "meta", "title", "body", "h1", "a", "br"}
LINK_ATTRIBUTES = {"href", "data-requires-python", "data-yanked", "data-core-metadata", "data-dist-info-metadata"}
HOSTILE_NAMES = [
    "..",
    "../evil",
    "a/b",
    "a\\b",
    "a\x00b",
    "a\x1bb",
    "a\nb",
    "%2e%2e",
    "%2F",
    "x" * 300,
    "-bad",
    "a b",
    "<script>",
    "naïve",
    "",
    "\u017fix",  # long s: matched [A-Z] case-insensitively before names were ASCII-only, and crashed the run
    "\u0131dna",  # dotless i, likewise
    "\u212aelvin",  # the Kelvin sign: normalised to "kelvin", an alias of another project
]
XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


@pytest.fixture
def rig(upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FaultRig:
    use_fast_client(monkeypatch)
    return synced_rig(upstream, fake_index, str(tmp_path / "mirror"))


def warnings(outcome: Any) -> str:
    """Every warning and error event of a run, as one text to search."""
    return "\n".join(json.dumps(e) for e in outcome.events if e["level"] in ("warning", "error"))


def assert_contained(rig: FaultRig, root: Path) -> None:
    """Nothing outside the destination; inside it, only pages, known files and the private state."""
    dest = Path(rig.dest)
    outside = [path for path in root.rglob("*") if path.is_file() and dest not in path.parents]
    assert outside == []
    for info in rig.storage.list(""):
        assert re.match(
            r"\A(simple/([a-z0-9-]+/)?index\.(html|v1_json)|packages/.+|\.pypi-cdn/[a-z]+\.json)\Z", info.key
        ), info.key
        if info.key.startswith("packages/"):
            assert info.key in rig.known_objects, info.key


def changed_project(rig: FaultRig) -> tuple[str, list[FakeFile]]:
    """`tiny`, with a new release upstream so the next run syncs it: (normalized name, its files)."""
    rig.index.add_file("tiny", "tiny-2.0.tar.gz", b"tiny 2.0", version="2.0")
    rig.remember_objects()
    return "tiny", list(rig.index.project("tiny").files)


def json_entry(rig: FaultRig, dist: FakeFile) -> dict[str, Any]:
    return {
        "filename": dist.filename,
        "url": rig.upstream.url + dist.url_path,
        "hashes": {"sha256": dist.sha256},
        "size": dist.size,
    }


def json_page(rig: FaultRig, name: str, files: list[Any], **fields: Any) -> bytes:
    page = {"meta": {"api-version": "1.1", "_last-serial": rig.index.serial}, "name": name, "files": files, **fields}
    return json.dumps(page).encode()


@dataclass(frozen=True)
class HostileEntry:
    """A file entry that must be dropped, and the text that names it in the log."""

    name: str
    changes: dict[str, Any]  # over a well-formed entry for `evil-1.0.tar.gz`
    needle: str


def hostile_entries(base_url: str) -> list[HostileEntry]:
    url = f"{base_url}/packages/aa/bb/cc/"
    return [
        HostileEntry("dot-dot path", {"filename": "../../../outside-1.0.tar.gz"}, repr("../../../outside-1.0.tar.gz")),
        HostileEntry("slash", {"filename": "a/b-1.0.tar.gz"}, repr("a/b-1.0.tar.gz")),
        HostileEntry("backslash", {"filename": "..\\..\\outside.tar.gz"}, repr("..\\..\\outside.tar.gz")),
        HostileEntry("NUL", {"filename": "evil\x00-1.0.tar.gz"}, repr("evil\x00-1.0.tar.gz")),
        HostileEntry("escape sequence", {"filename": "evil\x1b[2J-1.0.tar.gz"}, repr("evil\x1b[2J-1.0.tar.gz")),
        HostileEntry("newline", {"filename": "evil\n-1.0.tar.gz"}, repr("evil\n-1.0.tar.gz")),
        HostileEntry("over-long", {"filename": "e" * 300 + "-1.0.tar.gz"}, "longer than 255"),
        HostileEntry("dot-dot name", {"filename": ".."}, repr("..")),
        HostileEntry("hidden name", {"filename": ".pypi-cdn"}, repr(".pypi-cdn")),
        HostileEntry(
            "percent-encoded traversal",
            {"filename": "state.json", "url": url + "%2e%2e/%2E%2e/%2e%2e/%2e%2e/.pypi-cdn/state.json"},
            "'packages/aa/bb/cc/../../../../.pypi-cdn/state.json' is not a safe",
        ),
        HostileEntry("URL names another file", {"url": url + "other-1.0.tar.gz"}, "names another file"),
        HostileEntry("foreign host", {"url": "https://evil.example/packages/aa/bb/cc/evil-1.0.tar.gz"}, "evil.example"),
        HostileEntry(
            "foreign host behind userinfo",
            {"url": "http://127.0.0.1@evil.example/evil-1.0.tar.gz"},
            "127.0.0.1@evil.example",
        ),
        HostileEntry("javascript URL", {"url": "javascript:alert(1)//evil-1.0.tar.gz"}, "javascript:alert(1)"),
        HostileEntry("file URL", {"url": "file:///etc/evil-1.0.tar.gz"}, "file:///etc/evil-1.0.tar.gz"),
        HostileEntry("hashes not an object", {"hashes": "abc"}, "hashes must be a JSON object"),
        HostileEntry("sha256 not hex", {"hashes": {"sha256": "zz" * 32}}, "sha256 'zzzz"),
        HostileEntry("sha256 missing", {"hashes": {"md5": "0" * 32}}, "sha256 None"),
        HostileEntry("size a string", {"size": "12"}, "size '12'"),
        HostileEntry("size negative", {"size": -1}, "size -1"),
        HostileEntry("yanked a number", {"yanked": 5}, "yanked 5"),
        HostileEntry("requires-python a number", {"requires-python": 3}, "requires-python 3"),
        HostileEntry("url a number", {"url": 5}, "url must be a JSON string, got 5"),
        HostileEntry("filename a number", {"filename": 7}, "file name 7"),
        HostileEntry("core-metadata a string", {"core-metadata": "yes"}, "core-metadata 'yes'"),
        HostileEntry("upload-time not a time", {"upload-time": "yesterday"}, "upload-time 'yesterday'"),
        HostileEntry("yank reason with control characters", {"yanked": "bad\x07"}, repr("bad\x07")),
    ]


def test_hostile_file_entries_are_dropped_and_named(rig: FaultRig, tmp_path: Path) -> None:
    name, files = changed_project(rig)
    good = [json_entry(rig, dist) for dist in files]
    base = {
        "filename": "evil-1.0.tar.gz",
        "url": f"{rig.upstream.url}/packages/aa/bb/cc/evil-1.0.tar.gz",
        "hashes": {"sha256": SHA},
        "size": 10,
    }
    hostile = hostile_entries(rig.upstream.url)
    entries = [*good[:1], *({**base, **entry.changes} for entry in hostile), "not an object", *good[1:]]
    rig.upstream.override_page(name, json_page(rig, name, entries), JSON_TYPE)
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    logged = warnings(outcome)
    unnamed = [entry.name for entry in hostile if json.dumps(entry.needle)[1:-1] not in logged]
    assert unnamed == []
    assert "'not an object'" in logged
    published = rig.storage.get_bytes(f"simple/{name}/index.v1_json")
    assert published is not None
    assert [f["filename"] for f in json.loads(published[0])["files"]] == [dist.filename for dist in files]
    assert_contained(rig, tmp_path)
    rig.assert_sound(orphans_allowed=False)


@dataclass(frozen=True)
class HostilePage:
    """A project page refused whole: the project fails with a line naming why; its last good page stays."""

    name: str
    body: Any  # a JSON document, or a callable building one from (rig, name, good entries)
    needle: str


HOSTILE_PAGES = [
    HostilePage("a list, not an object", lambda rig, name, good: good, "the page must be a JSON object"),
    HostilePage(
        "files an object", lambda rig, name, good: json.loads(json_page(rig, name, {})), "files must be a JSON array"
    ),
    HostilePage(
        "meta a list", lambda rig, name, good: {"meta": [], "name": name, "files": good}, "meta must be a JSON object"
    ),
    HostilePage(
        "name a number",
        lambda rig, name, good: {**json.loads(json_page(rig, name, good)), "name": 3},
        "name must be a JSON string",
    ),
    HostilePage(
        "name with traversal",
        lambda rig, name, good: {**json.loads(json_page(rig, name, good)), "name": "../../tiny"},
        "invalid project name '../../tiny'",
    ),
    HostilePage(
        "another project's page",
        lambda rig, name, good: json.loads(json_page(rig, "foo-bar", good)),
        "it is the page of 'foo-bar'",
    ),
    HostilePage(
        "versions a string",
        lambda rig, name, good: {**json.loads(json_page(rig, name, good)), "versions": "1.0"},
        "versions must be a JSON array",
    ),
    HostilePage(
        "serial a string",
        lambda rig, name, good: {"meta": {"api-version": "1.1", "_last-serial": "x"}, "name": name, "files": good},
        "_last-serial 'x'",
    ),
    HostilePage(
        "API version 2",
        lambda rig, name, good: {"meta": {"api-version": "2.0"}, "name": name, "files": good},
        "unsupported repository API version '2.0'",
    ),
    HostilePage(
        "every entry hostile",
        lambda rig, name, good: json.loads(json_page(rig, name, [{**g, "filename": "../x"} for g in good])),
        "every file entry was rejected",
    ),
    HostilePage(
        "two entries on one key",
        lambda rig, name, good: json.loads(json_page(rig, name, [good[0], {**good[0], "size": 1}])),
        "both map to",
    ),
]


@pytest.mark.parametrize("case", HOSTILE_PAGES, ids=[case.name for case in HOSTILE_PAGES])
def test_a_hostile_page_is_refused_whole(rig: FaultRig, tmp_path: Path, case: HostilePage) -> None:
    name, files = changed_project(rig)
    old_page = rig.storage.get_bytes(f"simple/{name}/index.v1_json")
    rig.upstream.override_page(
        name, json.dumps(case.body(rig, name, [json_entry(rig, d) for d in files])).encode(), JSON_TYPE
    )
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_PARTIAL, outcome.stderr
    assert len(outcome.failed_lines) == 1
    assert outcome.failed_lines[0].startswith(f"failed: {name}: ")
    assert case.needle in outcome.failed_lines[0]
    assert rig.storage.get_bytes(f"simple/{name}/index.v1_json") == old_page
    assert_contained(rig, tmp_path)
    rig.assert_sound()


class PageStructure(HTMLParser):
    """Tags, link attributes and link texts of a published HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "a":
            self.links.append(dict(attrs))


SCRIPT_VALUES = {
    "requires_python": '"><script>alert(1)</script>',
    "yanked": "<img src=x onerror=alert(1)> & \"quotes\" 'too'",
}


def hostile_html(rig: FaultRig, files: list[FakeFile]) -> bytes:
    escaped = {
        key: value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        for key, value in SCRIPT_VALUES.items()
    }
    first, *others = files
    links = [
        f'<a href="{rig.upstream.url}{first.url_path}#sha256={first.sha256}" onclick="alert(1)" '
        f'data-requires-python="{escaped["requires_python"]}" data-yanked="{escaped["yanked"]}" '
        f'style="background:url(javascript:alert(1))">{first.filename}</a><br/>',
        *(f'<a href="{rig.upstream.url}{d.url_path}#sha256={d.sha256}">{d.filename}</a>' for d in others),
        f'<a href="javascript:alert(1)//x.tar.gz#sha256={SHA}">x.tar.gz</a>',
        '<a href="#sha256=0">"><script>alert(2)</script></a>',
    ]
    return (
        '<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.0">'
        '<script>alert(document.cookie)</script><title>x</title></head><body onload="alert(3)">'
        + "\n".join(links)
        + '<iframe src="javascript:alert(4)"></iframe></body></html>'
    ).encode()


def test_script_in_html_attributes_is_escaped_or_dropped(rig: FaultRig, tmp_path: Path) -> None:
    name, files = changed_project(rig)
    rig.upstream.override_page(name, hostile_html(rig, files), "text/html; charset=utf-8")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert "javascript:alert(1)//x.tar.gz" in warnings(outcome)
    html = rig.storage.get_bytes(f"simple/{name}/index.html")
    assert html is not None
    for raw in ("<script", "<img", "<iframe", "onclick", "onload", "javascript:", "style="):
        assert raw not in html[0].decode()
    structure = PageStructure()
    structure.feed(html[0].decode())
    assert structure.tags <= PAGE_TAGS
    assert all(set(link) <= LINK_ATTRIBUTES for link in structure.links)
    first = structure.links[0]
    assert first["data-requires-python"] == SCRIPT_VALUES["requires_python"]  # kept, and escaped on the way out
    assert first["data-yanked"] == SCRIPT_VALUES["yanked"]
    page = json.loads(rig.storage.get_bytes(f"simple/{name}/index.v1_json")[0])
    assert [f["filename"] for f in page["files"]] == [d.filename for d in files]
    assert page["files"][0]["requires-python"] == SCRIPT_VALUES["requires_python"]
    assert_contained(rig, tmp_path)
    rig.assert_sound(orphans_allowed=False)


def changelog_answer(rows: list[tuple[str, int]]) -> bytes:
    answer = [[name, None, 1_700_000_000, "create", serial] for name, serial in rows]
    return xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=True).encode()


def test_hostile_names_in_the_change_feed_are_skipped_and_named(rig: FaultRig, tmp_path: Path) -> None:
    serial = rig.index.serial
    names = [name for name in HOSTILE_NAMES if not XML_FORBIDDEN.search(name)]  # the rest cannot travel in XML
    rig.upstream.override_path(
        "/pypi", changelog_answer([(name, serial + i + 1) for i, name in enumerate(names)]), "text/xml"
    )
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    logged = warnings(outcome)
    assert [name for name in names if json.dumps(repr(name))[1:-1] not in logged] == []
    assert {e["event"] for e in outcome.events if e["level"] == "warning"} == {"invalid_project"}
    assert_contained(rig, tmp_path)
    rig.assert_sound(orphans_allowed=False)


def test_a_feed_answer_that_is_not_xml_is_refused(rig: FaultRig) -> None:
    rig.upstream.override_path("/pypi", changelog_answer([("a\x00b", rig.index.serial + 1)]), "text/xml")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_UPSTREAM
    assert outcome.error_lines[0].startswith(f"error: upstream {rig.upstream.url}: ")
    assert "malformed answer to changelog_since_serial" in outcome.error_lines[0]
    rig.assert_sound(orphans_allowed=False)


def test_hostile_names_in_the_root_listing_are_skipped_and_named(
    upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_fast_client(monkeypatch)
    upstream.xmlrpc_enabled = False  # the first run then reads the root listing
    listed = [{"name": name, "_last-serial": 1} for name in HOSTILE_NAMES]
    listed += [{"name": project.name, "_last-serial": project.last_serial} for project in fake_index.projects()]
    root = {"meta": {"api-version": "1.1", "_last-serial": fake_index.serial}, "projects": listed}
    upstream.override_path("/simple/", json.dumps(root).encode(), JSON_TYPE)
    rig = FaultRig(upstream, fake_index, str(tmp_path / "mirror"))
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    logged = warnings(outcome)
    assert [name for name in HOSTILE_NAMES if json.dumps(repr(name))[1:-1] not in logged] == []
    listing = json.loads(rig.storage.get_bytes("simple/index.v1_json")[0])
    assert sorted(p["name"] for p in listing["projects"]) == sorted(p.normalized for p in fake_index.projects())
    rig.remember_objects()
    assert_contained(rig, tmp_path)
    rig.assert_sound(orphans_allowed=False)


# ------------------------------------------------------------------------------------------------------ the edge
EDGE_TARGETS = 600
# Pieces hostile paths are built from: traversal in every spelling, separators, control bytes, bad escapes.
HOSTILE_SEGMENTS = (
    "..",
    ".",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%252e%252e",
    "%2f",
    "%2F",
    "%5c",
    "\\",
    "%00",
    "%0a",
    "%0d%0a",
    "\x01",
    "%7f",
    "%zz",
    "%",
    "%c3%28",
    "%e2%80%ae",
    "é",
    "%c3%a9",
    "a" * 300,
    "Foo_Bar",
    "foo-bar",
    "six",
    "ab",
    ".pypi-cdn",
    "state.json",
    "index.html",
    "index.v1_json",
    "",
    "simple",
    "packages",
)
EDGE_PREFIXES = ("/simple/", "/packages/", "/", "/simple", "/packages", "/.pypi-cdn/", "//", "/%2e%2e/", "/simple/..")
FORWARDED_PAGE = re.compile(r"\A/simple/(?:[a-z0-9]+(?:-[a-z0-9]+)*/)?index\.(?:html|v1_json)\Z")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def hostile_targets(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    targets = []
    for _ in range(count):
        segments = [rng.choice(HOSTILE_SEGMENTS) for _ in range(rng.randint(1, 4))]
        separator = rng.choice(("/", "/", "%2f", "\\"))
        targets.append(rng.choice(EDGE_PREFIXES) + separator.join(segments) + rng.choice(("", "/")))
    return targets


@pytest.fixture(scope="module")
def edge_function() -> Iterator[ViewerRequestFunction]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt-get install nodejs)")
    with ViewerRequestFunction() as function:
        yield function


def test_the_edge_sends_only_index_pages_and_files_to_the_origin(edge_function: ViewerRequestFunction) -> None:
    forwarded = answered = 0
    for target in hostile_targets(seed=7, count=EDGE_TARGETS):
        result = edge_function(viewer_request_event("GET", target, [("Accept", "*/*")]))
        if "uri" not in result:
            answered += 1
            assert result["statusCode"] in (301, 404, 406), target
            continue
        forwarded += 1
        key = unquote(result["uri"], errors="strict")  # the origin (S3) decodes the path once
        assert key.startswith(("/simple/", "/packages/")), target
        assert ".." not in key, target
        assert "\\" not in key, target
        assert not CONTROL.search(key), target
        if key.startswith("/simple/"):
            assert FORWARDED_PAGE.match(result["uri"]), target
    assert forwarded >= 10  # the generator reaches the forwarding paths too
    assert answered >= 300
