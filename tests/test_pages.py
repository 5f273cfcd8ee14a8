"""Project page parsers on literal pages (no network): PEP 691/700/714 JSON and PEP 503/592/658/714 HTML."""

from __future__ import annotations

import json
import logging

import pytest

from sync.models import InvalidInput
from sync.pages import http_locator, parse_html_page, parse_json_page

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
PAGE_URL = "https://pypi.example/simple/demo/"
FILE_HOSTS = frozenset({"pypi.example", "files.example"})


# ------------------------------------------------------------------------------------ parsing (no network)
def json_entry(**fields: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "filename": "demo-1.0.tar.gz",
        "url": "https://files.example/packages/ab/cd/ef/demo-1.0.tar.gz",
        "hashes": {"sha256": SHA_A},
        "size": 4,
        "yanked": False,
    }
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not OMIT}


OMIT = object()


def json_page(*entries: dict[str, object], **fields: object) -> dict[str, object]:
    page: dict[str, object] = {
        "meta": {"api-version": "1.1", "_last-serial": 42},
        "name": "demo",
        "files": list(entries),
    }
    page.update(fields)
    return page


def parse(document: object, *, strict: bool = False, serial: int | None = None):
    locate = http_locator(PAGE_URL, "demo", FILE_HOSTS)
    return parse_json_page(document, project="demo", locate=locate, strict=strict, serial=serial)


# An excerpt of https://pypi.org/simple/pip/ as JSON (api-version 1.3 adds keys this mirror ignores).
PYPI_JSON_EXCERPT = """{"files":[
{"core-metadata":false,"data-dist-info-metadata":false,"filename":"pip-0.2.tar.gz",
 "hashes":{"sha256":"88bb8d029e1bf4acd0e04d300104b7440086f94cc1ce1c5c3c31e3293aee1f81"},"provenance":null,
 "requires-python":null,"size":35300,"upload-time":"2008-10-27T19:22:53.914447Z",
 "url":"https://files.pythonhosted.org/packages/3d/9d/1e313763bdfb6a48977b65829c6ce2a43eaae29ea2f907c8bbef024a7219/pip-0.2.tar.gz",
 "yanked":false},
{"core-metadata":{"sha256":"7a8a8a23a5e1e9b1c7a4ea63c19e4bd0e5b3a3fbc5b5f0c9ce18e30c7e2c29f8"},
 "data-dist-info-metadata":{"sha256":"7a8a8a23a5e1e9b1c7a4ea63c19e4bd0e5b3a3fbc5b5f0c9ce18e30c7e2c29f8"},
 "filename":"pip-23.3-py3-none-any.whl",
 "hashes":{"sha256":"bc38bb52bc286514f8f7cb3a1ba5ed100b76aaef29b521d48574329331c5ae7b"},"provenance":null,
 "requires-python":">=3.7","size":2086091,"upload-time":"2023-10-15T19:29:36.041345Z",
 "url":"https://files.pythonhosted.org/packages/e0/63/b428aaca15fcd98c39b07ca7149e24bc14205ad0f1c80ba2b01835aedde1/pip-23.3-py3-none-any.whl",
 "yanked":"See https://github.com/pypa/pip/issues/12345"}],
"meta":{"_last-serial":20531190,"api-version":"1.3"},"name":"pip","versions":["0.2","23.3"]}"""

FILES_HOST = "https://files.pythonhosted.org/packages"
META_SHA = "7a8a8a23a5e1e9b1c7a4ea63c19e4bd0e5b3a3fbc5b5f0c9ce18e30c7e2c29f8"
# The same as https://pypi.org/simple/pip/ serves it as HTML, plus a newer yanked wheel.
PYPI_HTML_EXCERPT = "\n".join(
    [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.3">',
        "    <title>Links for pip</title>",
        "  </head>",
        "  <body>",
        "    <h1>Links for pip</h1>",
        f'    <a href="{FILES_HOST}/3d/9d/1e313763bdfb6a48977b65829c6ce2a43eaae29ea2f907c8bbef024a7219/pip-0.2.tar.gz'
        '#sha256=88bb8d029e1bf4acd0e04d300104b7440086f94cc1ce1c5c3c31e3293aee1f81" >pip-0.2.tar.gz</a><br />',
        f'    <a href="{FILES_HOST}/e0/63/b428aaca15fcd98c39b07ca7149e24bc14205ad0f1c80ba2b01835aedde1/'
        'pip-23.3-py3-none-any.whl#sha256=bc38bb52bc286514f8f7cb3a1ba5ed100b76aaef29b521d48574329331c5ae7b" '
        'data-requires-python="&gt;=3.7" data-yanked="See https://github.com/pypa/pip/issues/12345 &amp; &lt;co&gt;" '
        f'data-dist-info-metadata="sha256={META_SHA}" data-core-metadata="sha256={META_SHA}">'
        "pip-23.3-py3-none-any.whl</a><br />",
        f'    <a href="{FILES_HOST}/47/6a/453160888fab7c6a432a6e25f8afe6256d0d9f2cbd25971021da6491d899/'
        'pip-23.3.1-py3-none-any.whl#sha256=55eb67bb6171d37447e82213be585b75fe2b12b359e993773aca4de9247a052b" '
        'data-requires-python="&gt;=3.7" data-yanked="">pip-23.3.1-py3-none-any.whl</a><br />',
        "  </body>",
        "</html>",
        "<!--SERIAL 20531190-->",
        "",
    ]
)


def test_pypi_json_excerpt_parses():
    locate = http_locator("https://pypi.org/simple/pip/", "pip", frozenset({"pypi.org", "files.pythonhosted.org"}))
    page = parse_json_page(json.loads(PYPI_JSON_EXCERPT), project="pip", locate=locate, strict=True, etag='"x"')
    assert (page.normalized, page.last_serial, page.versions, page.etag) == ("pip", 20531190, ("0.2", "23.3"), '"x"')
    sdist, wheel = page.files
    assert sdist.key == "packages/3d/9d/1e313763bdfb6a48977b65829c6ce2a43eaae29ea2f907c8bbef024a7219/pip-0.2.tar.gz"
    assert (sdist.size, sdist.upload_time, sdist.requires_python) == (35300, "2008-10-27T19:22:53.914447Z", None)
    assert (sdist.yanked, sdist.has_metadata, sdist.metadata_sha256) == (False, False, None)
    assert (wheel.requires_python, wheel.yanked) == (">=3.7", "See https://github.com/pypa/pip/issues/12345")
    assert wheel.metadata_sha256 == "7a8a8a23a5e1e9b1c7a4ea63c19e4bd0e5b3a3fbc5b5f0c9ce18e30c7e2c29f8"
    assert wheel.url == (
        "https://files.pythonhosted.org/packages/e0/63/b428aaca15fcd98c39b07ca7149e24bc14205ad0f1c80ba2b01835aedde1"
        "/pip-23.3-py3-none-any.whl"
    )


def test_pypi_html_excerpt_parses_with_unescaped_attributes():
    locate = http_locator("https://pypi.org/simple/pip/", "pip", frozenset({"pypi.org", "files.pythonhosted.org"}))
    page = parse_html_page(
        PYPI_HTML_EXCERPT, project="pip", page_url="https://pypi.org/simple/pip/", locate=locate, serial=20531190
    )
    assert (page.last_serial, page.versions) == (20531190, ("0.2", "23.3", "23.3.1"))
    sdist, wheel, latest = page.files
    assert (sdist.requires_python, sdist.yanked, sdist.has_metadata) == (None, False, False)
    assert wheel.requires_python == ">=3.7"
    assert wheel.yanked == "See https://github.com/pypa/pip/issues/12345 & <co>"
    assert (wheel.has_metadata, wheel.metadata_sha256) == (True, META_SHA)
    assert latest.yanked is True  # data-yanked="" is a yank without a reason
    assert latest.key.endswith("/pip-23.3.1-py3-none-any.whl")
    assert latest.sha256 == "55eb67bb6171d37447e82213be585b75fe2b12b359e993773aca4de9247a052b"


def html_page(*links: str, head: str = "") -> str:
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(links)}</body></html>"


def parse_html(text: str):
    return parse_html_page(text, project="demo", page_url=PAGE_URL, locate=http_locator(PAGE_URL, "demo", FILE_HOSTS))


def test_html_metadata_true_base_href_and_bad_links():
    text = html_page(
        f'<a href="demo-1.0.tar.gz#sha256={SHA_A}" data-dist-info-metadata="true">demo-1.0.tar.gz</a>',
        f'<a href="demo-1.1.tar.gz#md5={"0" * 32}">demo-1.1.tar.gz</a>',  # no sha256
        f'<a href="demo-1.2.tar.gz#sha256={SHA_B}">demo-9.9.tar.gz</a>',  # text is not the URL's file
        "<a name='anchor'>not a file</a>",
        head='<base href="https://files.example/mirror/">',
    )
    page = parse_html(text)
    (dist,) = page.files
    assert dist.url == "https://files.example/mirror/demo-1.0.tar.gz"
    assert (dist.has_metadata, dist.metadata_sha256) == (True, None)
    assert page.versions == ("1.0",)


def test_html_page_of_an_unsupported_major_version_or_cut_short_is_refused():
    link = f'<a href="demo-1.0.tar.gz#sha256={SHA_A}">demo-1.0.tar.gz</a>'
    with pytest.raises(InvalidInput, match=r"unsupported repository API version '2\.0'"):
        parse_html(html_page(link, head='<meta name="pypi:repository-version" content="2.0">'))
    with pytest.raises(InvalidInput, match="truncated"):
        parse_html(html_page(link)[:-20])


def test_json_details_relative_url_foreign_layout_uppercase_hash_and_legacy_metadata_key():
    page = parse(
        json_page(
            json_entry(
                url="../../files/demo-1.0.tar.gz",
                hashes={"sha256": SHA_B.upper()},
                yanked="",
                **{"data-dist-info-metadata": {"sha256": SHA_A}, "requires-python": ""},
            ),
        )
    )
    (dist,) = page.files
    assert dist.url == "https://pypi.example/files/demo-1.0.tar.gz"
    assert dist.key == f"packages/01/23/{SHA_B[4:]}/demo-1.0.tar.gz"
    assert dist.sha256 == SHA_B
    assert (dist.yanked, dist.requires_python, dist.metadata_sha256) == (True, None, SHA_A)


def test_json_versions_come_from_the_page_or_else_from_filenames():
    assert parse(json_page(json_entry(), versions=["0.9", "1.0"])).versions == ("0.9", "1.0")
    assert parse(json_page(json_entry())).versions == ("1.0",)


def test_serial_falls_back_to_the_header_and_may_be_a_string():
    assert parse(json_page(json_entry(), meta={"api-version": "1.0"}), serial=99).last_serial == 99
    # bandersnatch mirrors write the serial as a string (seen live on a bandersnatch-served index)
    assert parse(json_page(json_entry(), meta={"api-version": "1.0", "_last-serial": "1234"})).last_serial == 1234


BAD_ENTRIES = {
    "traversal filename": {"filename": "../demo-1.0.tar.gz"},
    "slash": {"filename": "a/demo-1.0.tar.gz"},
    "backslash": {"filename": "a\\demo-1.0.tar.gz"},
    "NUL": {"filename": "demo\x00-1.0.tar.gz"},
    "control character": {"filename": "demo\n-1.0.tar.gz"},
    "hidden name": {"filename": ".demo-1.0.tar.gz"},
    "overlong name": {"filename": "d" * 250 + ".tar.gz"},
    "name not in URL": {"filename": "demo-2.0.tar.gz"},
    "foreign host": {"url": "https://evil.example/packages/ab/cd/ef/demo-1.0.tar.gz"},
    "ftp scheme": {"url": "ftp://files.example/packages/ab/cd/ef/demo-1.0.tar.gz"},
    "encoded dot-dot key": {"url": "https://files.example/packages/%2e%2e/%2e%2e/demo-1.0.tar.gz"},
    "empty key segment": {"url": "https://files.example/packages//cd/demo-1.0.tar.gz"},
    "overlong key": {"url": "https://files.example/packages/" + "d/" * 450 + "demo-1.0.tar.gz"},
    "missing sha256": {"hashes": {"md5": "0" * 32}},
    "short sha256": {"hashes": {"sha256": "abc"}},
    "non-hex sha256": {"hashes": {"sha256": "g" * 64}},
    "hashes not an object": {"hashes": [SHA_A]},
    "negative size": {"size": -1},
    "string size": {"size": "4"},
    "boolean size": {"size": True},
    "numeric yank": {"yanked": 1},
    "numeric requires-python": {"requires-python": 3},
    "bad upload-time": {"upload-time": "yesterday"},
    "bad metadata": {"core-metadata": "yes"},
    "bad metadata hash": {"core-metadata": {"sha256": "zz"}},
    "lone surrogate reason": {"yanked": "\ud800"},
    "missing url": {"url": OMIT},
}


@pytest.mark.parametrize("fields", BAD_ENTRIES.values(), ids=BAD_ENTRIES.keys())
def test_a_bad_entry_is_dropped_and_the_rest_kept(fields, caplog):
    good = json_entry(filename="demo-3.0.tar.gz", url="https://files.example/packages/x/y/z/demo-3.0.tar.gz")
    with caplog.at_level(logging.WARNING, logger="sync.pages"):
        page = parse(json_page(json_entry(**fields), good))
    assert [f.filename for f in page.files] == ["demo-3.0.tar.gz"]
    assert "demo" in caplog.text
    with pytest.raises(InvalidInput, match="demo"):
        parse(json_page(json_entry(**fields), good), strict=True)


def test_a_non_object_entry_is_dropped():
    assert [f.filename for f in parse(json_page("demo-1.0.tar.gz", json_entry())).files] == ["demo-1.0.tar.gz"]


BAD_PAGES = {
    "not an object": ([], "the page must be a JSON object"),
    "files not a list": (json_page(files={"a": 1}), "files must be a JSON array"),
    "no meta": (json_page(meta=None), "meta must be a JSON object"),
    "major version 2": (json_page(meta={"api-version": "2.0"}), r"unsupported repository API version '2\.0'"),
    "another project": (json_page(name="other"), "it is the page of 'other'"),
    "negative serial": (json_page(meta={"api-version": "1.1", "_last-serial": -5}), "_last-serial -5"),
    "non-numeric serial": (json_page(meta={"api-version": "1.1", "_last-serial": "5a"}), "_last-serial '5a'"),
    "versions not a list": (json_page(versions="1.0"), "versions must be a JSON array"),
    "versions not strings": (json_page(versions=[1]), "versions must be strings"),
    "duplicate key": (json_page(json_entry(), json_entry()), "both map to 'packages/ab/cd/ef/demo-1.0.tar.gz'"),
    "metadata key collision": (
        json_page(
            json_entry(**{"core-metadata": {"sha256": SHA_B}}),
            json_entry(
                filename="demo-1.0.tar.gz.metadata",
                url="https://files.example/packages/ab/cd/ef/demo-1.0.tar.gz.metadata",
            ),
        ),
        "both map to",
    ),
    "every entry bad": (json_page(json_entry(size=-1), json_entry(yanked=2)), "every file entry was rejected"),
}


@pytest.mark.parametrize(("document", "message"), BAD_PAGES.values(), ids=BAD_PAGES.keys())
def test_a_broken_page_is_refused_whole(document, message):
    with pytest.raises(InvalidInput, match=message):
        parse(document)


def test_an_empty_page_is_a_project_without_files():
    assert parse(json_page()).files == ()
