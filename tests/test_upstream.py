"""The upstream client against the fake PyPI (and scripted servers): project pages, stale pages, files."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from sync.models import InvalidInput
from sync.transport import UpstreamError
from sync.upstream import PAGE_ACCEPT, STALE_PAGE_ATTEMPTS, ProjectNotFound, StalePage, UpstreamClient
from tests.test_pages import json_entry
from tests.upstream.scripted import Handler, client_for, scripted_server, send
from tests.upstream.server import Fault, iso_time

SHA_A = "a" * 64


# ------------------------------------------------------------------------------------------- project pages
def test_json_page_carries_every_pep_691_700_714_field(upstream, fake_index):
    client = UpstreamClient(upstream.url, contact="mirror-ops@example.org")
    page = client.get_project("Foo_Bar")
    project = fake_index.project("Foo_Bar")
    assert (page.name, page.normalized, page.last_serial) == ("foo-bar", "foo-bar", project.last_serial)
    assert page.versions == ("1.0", "1.1")
    assert page.etag is not None
    assert page.etag.startswith('"')
    assert [f.filename for f in page.files] == [f.filename for f in project.files]
    for dist, fake in zip(page.files, project.files, strict=True):
        assert dist.url == upstream.url + fake.url_path
        assert dist.key == fake.url_path.removeprefix("/")
        assert (dist.sha256, dist.size, dist.upload_time) == (fake.sha256, fake.size, iso_time(fake.upload_time))
        assert (dist.requires_python, dist.yanked) == (fake.requires_python, fake.yanked)
        assert (dist.has_metadata, dist.metadata_sha256) == (fake.metadata is not None, fake.metadata_sha256)
    request = upstream.requests[-1]
    assert request.headers["Accept"] == PAGE_ACCEPT
    assert request.headers["User-Agent"].startswith("pypi-cdn/")
    assert "mirror-ops@example.org" in request.headers["User-Agent"]
    assert client.requests_made == 1


def test_html_only_upstream_gives_the_same_files_without_pep_700_fields(upstream, fake_index):
    upstream.json_enabled = False
    page = client_for(upstream).get_project("foo-bar")
    project = fake_index.project("foo-bar")
    assert page.last_serial == project.last_serial  # from X-PyPI-Last-Serial
    assert page.versions == ("1.0", "1.1")  # from the filenames
    assert [(f.key, f.sha256, f.requires_python, f.yanked, f.metadata_sha256) for f in page.files] == [
        (f.url_path[1:], f.sha256, f.requires_python, f.yanked, f.metadata_sha256) for f in project.files
    ]
    assert {(f.size, f.upload_time) for f in page.files} == {(None, None)}


def test_etag_is_sent_back_and_304_means_unchanged(upstream):
    client = client_for(upstream)
    page = client.get_project("tiny")
    assert client.get_project("tiny", etag=page.etag, min_serial=page.last_serial) is None
    last = upstream.requests[-1]
    assert (last.status, last.headers["If-None-Match"]) == (304, page.etag)


def test_a_stale_304_is_retried_with_a_cache_busting_query(upstream, fake_index):
    client = client_for(upstream)
    old = client.get_project("tiny")
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    upstream.inject(r"^/simple/tiny/$", Fault.stale_page(1))
    upstream.reset_log()
    page = client.get_project("tiny", etag=old.etag, min_serial=fake_index.project("tiny").last_serial)
    assert page is not None
    assert "tiny-2.0.tar.gz" in {f.filename for f in page.files}
    assert [(r.status, r.query[:2]) for r in upstream.requests] == [(304, ""), (200, "t=")]


def test_a_stale_page_is_fetched_again_until_fresh(upstream, fake_index):
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    current = fake_index.project("tiny").last_serial
    upstream.inject(r"^/simple/tiny/$", Fault.stale_page(1), times=2)
    page = client_for(upstream).get_project("tiny", min_serial=current)
    assert page.last_serial == current
    assert upstream.count("/simple/tiny/") == 3


def test_a_page_that_stays_stale_raises_stale_page(upstream, fake_index):
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    current = fake_index.project("tiny").last_serial
    upstream.inject(r"^/simple/tiny/$", Fault.stale_page(1), times=50)
    with pytest.raises(StalePage, match=rf"simple/tiny/: serial {current - 1} is still older than {current}"):
        client_for(upstream).get_project("tiny", min_serial=current)
    assert upstream.count("/simple/tiny/") == STALE_PAGE_ATTEMPTS


def test_a_cached_404_of_a_new_project_is_asked_again_past_the_cache(upstream, fake_index):
    fake_index.add_file("Brand-New", "brand_new-1.0.tar.gz", b"new", version="1.0")
    upstream.inject(r"^/simple/brand-new/$", Fault.stale_page(1))  # as before its creation: 404
    page = client_for(upstream).get_project("brand-new", min_serial=fake_index.serial)
    assert [f.filename for f in page.files] == ["brand_new-1.0.tar.gz"]
    assert [(r.status, r.query[:2]) for r in upstream.requests] == [(404, ""), (200, "t=")]


def test_missing_project_is_project_not_found(upstream):
    with pytest.raises(ProjectNotFound, match=r"/simple/no-such-thing/: .*404"):
        client_for(upstream).get_project("No_Such.Thing")
    with pytest.raises(ProjectNotFound):
        client_for(upstream).get_project("No_Such.Thing", min_serial=1)
    assert upstream.count("/simple/no-such-thing/") == 3  # once, then once more past the cache


def test_invalid_project_name_is_refused_before_any_request(upstream):
    client = client_for(upstream)
    with pytest.raises(InvalidInput, match=r"'\.\./etc'"):
        client.get_project("../etc")
    assert client.requests_made == 0


def test_malformed_pages_are_invalid_input(upstream):
    client = client_for(upstream)
    upstream.inject(r"^/simple/tiny/$", Fault.malformed_json())
    with pytest.raises(InvalidInput, match="not valid JSON"):
        client.get_project("tiny")
    upstream.inject(r"^/simple/foo-bar/$", Fault.malformed_html())
    with pytest.raises(InvalidInput, match="truncated"):
        client.get_project("foo-bar")


def test_unexpected_content_type_is_an_upstream_error(upstream):
    upstream.override_page("tiny", b"\x00\x01", "application/octet-stream")
    with pytest.raises(UpstreamError, match="unexpected Content-Type 'application/octet-stream'"):
        client_for(upstream).get_project("tiny")


def test_hostile_entries_are_dropped_and_logged_through_the_client(upstream, caplog):
    body = {
        "meta": {"api-version": "1.1", "_last-serial": 7},
        "name": "tiny",
        "files": [
            json_entry(filename="../../evil.tar.gz", url=f"{upstream.url}/packages/ev/il/x/../../evil.tar.gz"),
            json_entry(filename="tiny-1.0.tar.gz", url=f"{upstream.url}/packages/aa/bb/cc/tiny-1.0.tar.gz"),
        ],
    }
    upstream.override_page("tiny", json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json")
    with caplog.at_level(logging.WARNING, logger="sync.pages"):
        page = client_for(upstream).get_project("tiny")
    assert [f.key for f in page.files] == ["packages/aa/bb/cc/tiny-1.0.tar.gz"]
    assert "'../../evil.tar.gz'" in caplog.text


def test_relative_links_resolve_against_the_page_after_redirects():
    page = (
        '<!DOCTYPE html><html><body><a href="../../files/demo-1.0.tar.gz#sha256=' + SHA_A + '">demo-1.0.tar.gz</a>'
        "</body></html>"
    ).encode()
    routes: dict[str, Handler] = {
        "/simple/demo/": lambda h: send(h, 301, b"", {"Location": "/index/simple/demo/", "Content-Length": "0"}),
        "/index/simple/demo/": lambda h: send(
            h, 200, page, {"Content-Type": "text/html", "Content-Length": str(len(page))}
        ),
    }
    with scripted_server(routes) as url:
        found = UpstreamClient(url, retries=0).get_project("demo")
    (dist,) = found.files
    assert dist.url == f"{url}/index/files/demo-1.0.tar.gz"
    assert dist.key == f"packages/aa/aa/{'a' * 60}/demo-1.0.tar.gz"
    assert found.last_serial is None


# -------------------------------------------------------------------------------------------------- files
def test_open_file_streams_the_bytes_and_metadata(upstream, fake_index):
    client = client_for(upstream)
    wheel = next(f for f in fake_index.project("foo-bar").files if f.metadata is not None)
    with client.open_file(upstream.url + wheel.url_path) as body:
        assert body.read() == wheel.content
    with client.open_file(upstream.url + wheel.url_path + ".metadata") as body:
        assert body.read() == wheel.metadata


def test_open_file_retries_then_names_the_url_on_failure(upstream, fake_index):
    client = client_for(upstream)
    path = fake_index.project("tiny").files[0].url_path
    upstream.inject(r"^/packages/", Fault.status(502))
    with client.open_file(upstream.url + path) as body:
        assert body.read() == b"tiny"
    with (
        pytest.raises(UpstreamError, match=r"/packages/nope/tiny\.tar\.gz: HTTP 404"),
        client.open_file(upstream.url + "/packages/nope/tiny.tar.gz"),
    ):
        pass


def test_half_read_files_give_their_connection_back(upstream, fake_index):
    client = client_for(upstream, max_connections=2)
    url = upstream.url + fake_index.project("foo-bar").files[0].url_path
    done = threading.Event()

    def read_a_little() -> None:
        for _ in range(12):
            with client.open_file(url) as body:
                body.read(10)
        done.set()

    threading.Thread(target=read_a_little, daemon=True).start()
    assert done.wait(timeout=10), "the bounded pool ran dry: connections were not released"


def test_an_invalid_base_url_is_refused():
    with pytest.raises(ValueError, match="'file:///tmp' is not an http"):
        UpstreamClient("file:///tmp")


@pytest.mark.live
def test_live_pypi_page_parses_and_renders_back():
    from sync.render import parse_published_json, project_json

    client = UpstreamClient("https://pypi.org", retries=2, contact="pypi-cdn test suite")
    page = client.get_project("six")
    assert len(page.files) > 20
    assert all(dist.key.startswith("packages/") and dist.key.endswith("/" + dist.filename) for dist in page.files)
    assert page.last_serial is not None
    assert parse_published_json(project_json(page)).files[0].sha256 == page.files[0].sha256
