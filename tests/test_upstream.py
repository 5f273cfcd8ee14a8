"""The upstream client against the fake PyPI (and a few scripted servers), and its page parsers on literal pages."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.models import InvalidInput
from sync.pages import http_locator, parse_html_page, parse_json_page
from sync.transport import UpstreamError
from sync.upstream import PAGE_ACCEPT, STALE_PAGE_ATTEMPTS, ProjectNotFound, StalePage, UpstreamClient
from tests.upstream.index import BASE_SERIAL
from tests.upstream.server import Fault, iso_time

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4
PAGE_URL = "https://pypi.example/simple/demo/"
FILE_HOSTS = frozenset({"pypi.example", "files.example"})


def client_for(server, **settings) -> UpstreamClient:
    settings = {"retries": 2, "backoff": 0.01, **settings}
    return UpstreamClient(server.url, **settings)


def elapsed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


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
    with caplog.at_level(logging.WARNING, logger="sync.upstream"):
        page = client_for(upstream).get_project("tiny")
    assert [f.key for f in page.files] == ["packages/aa/bb/cc/tiny-1.0.tar.gz"]
    assert "'../../evil.tar.gz'" in caplog.text


# ----------------------------------------------------------------------------------------------- transport
def test_server_errors_are_retried_and_counted(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.status(503), times=2)
    client = client_for(upstream)
    assert client.get_project("tiny").files
    assert upstream.count("/simple/tiny/") == 3
    assert client.requests_made == 3


def test_retries_give_up_with_the_url_and_status(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.status(503), times=10)
    with pytest.raises(UpstreamError, match=r"/simple/tiny/: HTTP 503 after 2 retries"):
        client_for(upstream).get_project("tiny")
    assert upstream.count("/simple/tiny/") == 3


def test_client_errors_are_not_retried(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.status(403), times=5)
    with pytest.raises(UpstreamError, match="HTTP 403"):
        client_for(upstream).get_project("tiny")
    assert upstream.count("/simple/tiny/") == 1


def test_retry_after_is_honoured_but_capped(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.status(429, retry_after=3600))
    client = client_for(upstream, max_retry_after=0.3)
    page, seconds = elapsed(lambda: client.get_project("tiny"))
    assert page is not None
    assert 0.25 <= seconds < 5  # waited for Retry-After (backoff alone is 0.01 s), but not an hour


def test_read_timeout_is_retried(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.delay(1.5))
    client = client_for(upstream, read_timeout=0.2)
    page, seconds = elapsed(lambda: client.get_project("tiny"))
    assert page is not None
    assert seconds < 1.4
    assert client.requests_made == 2


def test_persistent_timeouts_give_up_naming_the_url(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.delay(1.0), times=3)
    with pytest.raises(UpstreamError, match=r"/simple/tiny/: gave up after 1 retries: .*[Tt]imed? ?out"):
        client_for(upstream, read_timeout=0.2, retries=1).get_project("tiny")


def test_unreachable_upstream_is_an_upstream_error():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    client = UpstreamClient(f"http://127.0.0.1:{port}", retries=1, backoff=0.01, connect_timeout=1)
    with pytest.raises(UpstreamError, match=rf"127\.0\.0\.1:{port}/simple/tiny/: gave up after 1 retries"):
        client.get_project("tiny")


def test_a_page_broken_mid_body_is_fetched_again(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.reset_mid_body())
    client = client_for(upstream)
    page = client.get_project("tiny")
    assert [f.filename for f in page.files] == ["tiny-0.5.tar.gz", "tiny-1.0-py2.py3-none-any.whl"]
    assert client.requests_made == 2


def test_a_redirect_loop_is_an_upstream_error(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.redirect_loop(), times=20)
    with pytest.raises(UpstreamError, match=r"/simple/tiny/: more than 5 redirects"):
        client_for(upstream).get_project("tiny")
    assert upstream.count("/simple/tiny/") == 6


def test_an_oversized_page_is_refused_before_it_is_read(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.huge_page(3))
    with pytest.raises(UpstreamError, match=r"body of \d+ bytes is over the 1048576-byte limit; not read"):
        client_for(upstream, max_page_size=2**20).get_project("tiny")


def test_concurrency_is_bounded_by_max_connections(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.delay(0.3), times=6)
    client = client_for(upstream, max_connections=2)
    threads = [threading.Thread(target=client.get_project, args=("tiny",)) for _ in range(6)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert time.monotonic() - start >= 0.85  # three waves of two, not one wave of six
    assert upstream.count("/simple/tiny/") == 6


# ------------------------------------------------------------------------ scripted servers (odd behaviour)
Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def scripted_server(routes: dict[str, Handler]) -> Iterator[str]:
    """A throwaway server on 127.0.0.1 answering each path with its handler function; yields its base URL."""

    class Handle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes.get(self.path.split("?")[0], lambda h: h.send_error(404))(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


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


def test_an_oversized_page_without_length_is_cut_off_while_streaming():
    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(64):
                handler.wfile.write(b"<!--" + b"x" * 65536 + b"-->")
        except OSError:
            pass  # the client stopped reading

    with scripted_server({"/simple/demo/": endless}) as url, pytest.raises(UpstreamError, match="stopped reading"):
        UpstreamClient(url, retries=0, max_page_size=2**20).get_project("demo")


# ---------------------------------------------------------------------------------------- listing and feed
def test_root_listing_gives_normalized_names_and_serials(upstream, fake_index):
    fake_index.add_bulk_names(2000)
    projects = client_for(upstream).list_projects()
    assert len(projects) == 2003
    assert projects["foo-bar"] == fake_index.project("foo-bar").last_serial
    assert projects["bulk-project-0001999"] == fake_index.serial


def test_html_root_listing_has_no_serials(upstream, fake_index):
    upstream.json_enabled = False
    assert client_for(upstream).list_projects() == {"foo-bar": None, "tiny": None, "zope-hookable": None}


def test_root_listing_skips_invalid_names_and_rejects_a_broken_page(upstream, caplog):
    listing = {"meta": {"api-version": "1.1"}, "projects": [{"name": "ok_Name"}, {"name": "bad name!"}]}
    upstream.override_path("/simple/", json.dumps(listing).encode(), "application/vnd.pypi.simple.v1+json")
    with caplog.at_level(logging.WARNING, logger="sync.upstream"):
        assert client_for(upstream).list_projects() == {"ok-name": None}
    assert "'bad name!'" in caplog.text
    upstream.override_path(
        "/simple/", b'{"meta": {"api-version": "1.1"}, "projects": {}}', "application/vnd.pypi.simple.v1+json"
    )
    with pytest.raises(UpstreamError, match="projects must be a JSON array"):
        client_for(upstream).list_projects()


JSON_LISTING = "application/vnd.pypi.simple.v1+json"


def test_json_root_listing_is_read_in_any_key_order_and_ignores_unknown_fields(upstream):
    document = (
        b'{"projects": [{"_last-serial": 7, "extra": {"nested": [1, {"name": "decoy"}]}, "name": "B_b"},'
        b' {"name": "a", "_last-serial": "12"}, {"name": "b-B", "_last-serial": 9}],'
        b' "unknown": {"projects": [{"name": "decoy"}]}, "meta": {"_last-serial": 12, "api-version": "1.3"}}'
    )
    upstream.override_path("/simple/", document, JSON_LISTING)
    assert client_for(upstream).list_projects() == {"a": 12, "b-b": 9}


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        (b'[{"name": "a"}]', "the page must be a JSON object"),
        (b'{"meta": {"api-version": "1.1"}}', "projects must be a JSON array, got None"),
        (b'{"projects": []}', "meta must be a JSON object, got None"),
        (b'{"meta": [], "projects": []}', "meta must be a JSON object"),
        (b'{"meta": {"api-version": "2.0"}, "projects": []}', "unsupported repository API version '2.0'"),
        (b'{"meta": {"api-version": 1}, "projects": []}', "unsupported repository API version 1"),
        (b'{"meta": {"api-version": "1.1"}, "projects": [{"name": "a"}', "not valid JSON"),
        (b'{"meta": {"api-version": "1.1"}, "projects": []} trailing', "not valid JSON"),
        (b"", "not valid JSON"),
    ],
)
def test_a_broken_json_root_listing_is_refused_naming_the_listing(upstream, document, complaint):
    upstream.override_path("/simple/", document, JSON_LISTING)
    with pytest.raises(UpstreamError, match=rf"{upstream.url}/simple/: root listing: .*{complaint}"):
        client_for(upstream).list_projects()


@pytest.mark.parametrize(
    ("entries", "kept", "complaint"),
    [
        ('"a"', [], "skipping an entry that is not an object: 'a'"),
        ("[]", [], "skipping an entry that is not an object: []"),
        ('{"name": 5}', [], "skipping an entry whose name 5 is not a string"),
        ('{"name": ["a"]}', [], "skipping an entry whose name [] is not a string"),
        ("{}", [], "skipping an entry whose name None is not a string"),
        ('{"name": "a", "_last-serial": -1}', [("a", None)], "-1 is not a serial"),
        ('{"name": "a", "_last-serial": 1.5}', [("a", None)], "is not a serial"),
        ('{"name": "a", "_last-serial": true}', [("a", None)], "True is not a serial"),
        ('{"name": "a", "_last-serial": 9223372036854775808}', [("a", None)], "9223372036854775808 is not a serial"),
        ('{"name": "\u017fix"}', [], "invalid project name '\u017fix'"),
    ],
)
@pytest.mark.hostile_class(2)
def test_a_bad_root_listing_entry_is_skipped_with_one_log_line(upstream, caplog, entries, kept, complaint):
    document = f'{{"meta": {{"api-version": "1.1"}}, "projects": [{entries}, {{"name": "six", "_last-serial": 3}}]}}'
    upstream.override_path("/simple/", document.encode(), JSON_LISTING)
    with caplog.at_level(logging.WARNING, logger="sync"):
        listing = client_for(upstream).list_projects()
    assert sorted(listing.items()) == sorted([*kept, ("six", 3)])
    (line,) = [record.getMessage() for record in caplog.records]
    assert complaint in line


def test_a_root_listing_broken_mid_body_is_read_again_from_the_start(upstream, fake_index):
    fake_index.add_bulk_names(50_000)
    upstream.inject(r"^/simple/$", Fault.reset_mid_body())
    client = client_for(upstream)
    assert len(client.list_projects()) == 50_003
    assert client.requests_made == 2


def test_a_root_listing_over_the_limit_is_cut_off_while_streaming(upstream, fake_index):
    fake_index.add_bulk_names(50_000)
    with pytest.raises(UpstreamError, match=r"/simple/: body of \d+ bytes is over the 1048576-byte limit"):
        client_for(upstream, max_listing_size=2**20).list_projects()

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", JSON_LISTING)
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            handler.wfile.write(b'{"meta": {"api-version": "1.1"}, "projects": [')
            for index in range(200_000):
                handler.wfile.write(b'{"name": "p%d"},' % index)
        except OSError:
            pass  # the client stopped reading

    with scripted_server({"/simple/": endless}) as url, pytest.raises(UpstreamError, match="stopped reading"):
        UpstreamClient(url, retries=0, max_listing_size=2**20).list_projects()


def test_html_root_listing_streams_across_chunk_boundaries(upstream, fake_index):
    """Over 1 MiB of HTML, so names and tags are split between reads; it must list what the JSON listing lists."""
    fake_index.add_bulk_names(40_000)
    from_json = client_for(upstream).list_projects()
    upstream.json_enabled = False
    from_html = client_for(upstream).list_projects()
    assert list(from_html) == list(from_json)
    assert set(from_html.items()) == {(name, None) for name in from_json}


@pytest.mark.parametrize(
    ("charset", "complaint"),
    [("utf-8", "cannot decode the root listing as 'utf-8'"), ("no-such-codec", "cannot decode the root listing")],
)
def test_an_undecodable_html_root_listing_is_refused(upstream, charset, complaint):
    body = b"<html><body>" + b'<a href="a/">a</a>' * 70_000 + b"\xff\xfe</body></html>"
    upstream.override_path("/simple/", body, f"text/html; charset={charset}")
    with pytest.raises(UpstreamError, match=complaint):
        client_for(upstream).list_projects()


def test_html_root_listing_in_a_declared_charset(upstream):
    body = "<html><body><a href='caf/'>café</a><a href='ok/'>ok</a></body></html>".encode("latin-1")
    upstream.override_path("/simple/", body, "text/html; charset=latin-1")
    assert client_for(upstream).list_projects() == {"ok": None}  # "café" is no valid project name: skipped


def test_changelog_since_returns_names_and_serials(upstream, fake_index):
    start = fake_index.serial
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    fake_index.yank("Foo_Bar", "foo_bar-1.0.tar.gz")
    client = client_for(upstream)
    assert client.changelog_since(start) == [("tiny", start + 1), ("Foo_Bar", start + 2)]
    assert client.changelog_events_since(start + 1) == [
        ("Foo_Bar", start + 2, float(int(fake_index.timestamp(start + 2).timestamp())))
    ]
    assert client.last_serial() == start + 2
    assert client.changelog_since(start + 2) == []


def test_changelog_asks_again_while_answers_are_full(upstream, fake_index, monkeypatch):
    monkeypatch.setattr("tests.upstream.server.XMLRPC_MAX_ROWS", 3)
    monkeypatch.setattr("sync.feed.CHANGELOG_PAGE_ROWS", 3)
    changes = client_for(upstream).changelog_since(BASE_SERIAL)
    assert [serial for _, serial in changes] == list(range(BASE_SERIAL + 1, fake_index.serial + 1))
    assert upstream.count("/pypi", method="POST") == 3  # 3 + 3 + 1 rows


@pytest.mark.hostile_class(2)
def test_a_malformed_changelog_row_is_skipped_with_one_log_line(upstream, caplog):
    rows = [["tiny", "1.0", "yesterday", "create", 5], ["tiny", "1.0", 1_700_000_000, "create", 1234567], ["six"]]
    answer = xmlrpc.client.dumps(([*rows, ["tiny", "1.1", 1_700_000_000, "create", 7]],), methodresponse=True)
    answer = answer.replace("<int>1234567</int>", f"<i8>{2**63}</i8>")  # past what xmlrpc.client.dumps writes
    upstream.override_path("/pypi", answer.encode(), "text/xml")
    with caplog.at_level(logging.WARNING, logger="sync.upstream"):
        assert client_for(upstream).changelog_since(BASE_SERIAL) == [("tiny", 7)]
    skipped = [record.getMessage() for record in caplog.records]
    assert len(skipped) == 3
    assert all("/pypi: skipping malformed changelog row [" in line for line in skipped)
    assert "9223372036854775808" in skipped[1]


def test_no_xmlrpc_means_no_change_feed(upstream):
    upstream.xmlrpc_enabled = False
    client = client_for(upstream)
    assert client.changelog_since(BASE_SERIAL) is None
    assert client.last_serial() is None


def test_a_broken_xmlrpc_answer_is_an_upstream_error(upstream):
    upstream.override_path("/pypi", b"<methodResponse><params>", "text/xml")
    with pytest.raises(UpstreamError, match=r"/pypi: malformed answer to changelog_last_serial"):
        client_for(upstream).last_serial()


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
    with caplog.at_level(logging.WARNING, logger="sync.upstream"):
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
