"""The fake PyPI is the yardstick of every sync test: check it speaks what pypi.org speaks, and faults as documented."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import re
import socket
import time
import xmlrpc.client
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
import urllib3

from tests.upstream.corpus import build_corpus
from tests.upstream.index import BASE_SERIAL, FakeIndex
from tests.upstream.server import JSON_TYPE, V1_HTML_TYPE, Fault, UpstreamServer, negotiate

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
UPLOAD_TIME = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def fetch(server: UpstreamServer, path: str, method: str = "GET", **headers: str) -> Reply:
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=10)
    try:
        connection.request(method, path, headers={name.replace("_", "-"): value for name, value in headers.items()})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def json_page(server: UpstreamServer, name: str) -> dict:
    reply = fetch(server, f"/simple/{name}/", Accept=JSON_TYPE)
    assert reply.status == 200
    return reply.json()


class LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def html_links(body: bytes) -> list[dict[str, str | None]]:
    collector = LinkCollector()
    collector.feed(body.decode())
    return collector.links


# ------------------------------------------------------------------------------------------------ negotiation
@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "text/html"),
        ("*/*", "text/html"),
        (PIP_ACCEPT, JSON_TYPE),
        ("text/html;q=0.9, application/vnd.pypi.simple.v1+json;q=0.5", "text/html"),
        ("application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.9", "text/html"),
        ("application/vnd.pypi.simple.latest+json", JSON_TYPE),
        ("application/vnd.pypi.simple.v1+html", V1_HTML_TYPE),
        ("application/*", V1_HTML_TYPE),
        ("text/html;q=0, */*;q=0.1", V1_HTML_TYPE),
        ("application/json", None),
        ("application/vnd.pypi.simple.v1+json;q=0", None),
        ("text/html;q=bogus", None),
    ],
)
def test_negotiation_follows_q_values_not_order(accept, chosen):
    assert negotiate(accept) == chosen


def test_page_content_type_follows_accept_and_format_query(upstream):
    assert fetch(upstream, "/simple/tiny/").headers["Content-Type"] == "text/html; charset=utf-8"
    assert fetch(upstream, "/simple/tiny/", Accept=PIP_ACCEPT).headers["Content-Type"] == JSON_TYPE
    assert fetch(upstream, "/simple/tiny/", Accept=V1_HTML_TYPE).headers["Content-Type"] == V1_HTML_TYPE
    by_query = fetch(upstream, "/simple/tiny/?format=application/vnd.pypi.simple.v1%2Bjson", Accept="text/html")
    assert by_query.headers["Content-Type"] == JSON_TYPE
    assert by_query.json()["name"] == "tiny"
    refused = fetch(upstream, "/simple/tiny/", Accept="application/json")
    assert refused.status == 406
    assert fetch(upstream, "/simple/", Accept="image/png").status == 406


def test_json_disabled_serves_html_whatever_is_asked(upstream):
    upstream.json_enabled = False
    for reply in (fetch(upstream, "/simple/tiny/", Accept=JSON_TYPE), fetch(upstream, "/simple/?format=" + JSON_TYPE)):
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
        assert reply.body.startswith(b"<!DOCTYPE html>")


# ------------------------------------------------------------------------------------------------ page content
def test_json_page_has_pep_691_700_714_fields_with_the_right_types(upstream, fake_index):
    page = json_page(upstream, "foo-bar")
    project = fake_index.project("Foo_Bar")
    assert page["meta"] == {"api-version": "1.4", "_last-serial": project.last_serial}
    assert page["project-status"] == {"status": "active"}
    assert page["name"] == "foo-bar"
    assert page["versions"] == ["1.0", "1.1"]
    by_name = {entry["filename"]: entry for entry in page["files"]}
    assert set(by_name) == {"foo_bar-1.0.tar.gz", "foo_bar-1.0-py3-none-any.whl", "foo_bar-1.1-py3-none-any.whl"}
    for dist in project.files:
        entry = by_name[dist.filename]
        assert entry["url"] == upstream.url + dist.url_path
        assert entry["hashes"] == {"sha256": dist.sha256}
        assert entry["size"] == len(dist.content)
        assert isinstance(entry["size"], int)
        assert UPLOAD_TIME.match(entry["upload-time"])
    sdist, wheel, yanked = (by_name[name] for name in sorted(by_name, key=lambda n: (n.endswith(".whl"), n)))
    assert sdist["requires-python"] is None  # Warehouse writes every key, null or false when there is nothing
    assert sdist["core-metadata"] is False
    assert sdist["data-dist-info-metadata"] is False
    assert sdist["provenance"] is None
    assert sdist["yanked"] is False
    assert wheel["requires-python"] == ">=3.8"
    metadata = next(f.metadata for f in project.files if f.metadata)
    assert wheel["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert yanked["yanked"] == 'broken "wheel" <see #1>'


def test_upload_time_is_utc_with_microseconds(upstream, fake_index):
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"t", version="2.0")
    entry = next(f for f in json_page(upstream, "tiny")["files"] if f["filename"] == "tiny-2.0.tar.gz")
    assert entry["upload-time"] == fake_index.timestamp(fake_index.serial).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_url_path_is_pypis_blake2b_layout(fake_index):
    dist = fake_index.project("tiny").files[0]
    b2 = hashlib.blake2b(dist.content, digest_size=32).hexdigest()
    assert dist.url_path == f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{dist.filename}"
    assert dist.sha256 == hashlib.sha256(dist.content).hexdigest()


def test_html_page_escapes_attributes_and_carries_both_metadata_names(upstream, fake_index):
    reply = fetch(upstream, "/simple/foo-bar/")
    text = reply.body.decode()
    assert 'data-requires-python="&gt;=3.8"' in text
    assert 'data-yanked="broken &quot;wheel&quot; &lt;see #1&gt;"' in text
    assert "<title>Links for foo-bar</title>" in text  # Warehouse titles the page with the normalized name
    assert '<meta name="pypi:project-status" content="active">' in text
    assert text.rstrip().endswith(f"<!--SERIAL {fake_index.project('foo-bar').last_serial}-->")
    links = {link["href"]: link for link in html_links(reply.body)}
    for dist in fake_index.project("foo-bar").files:
        link = links[f"{upstream.url}{dist.url_path}#sha256={dist.sha256}"]
        assert link.get("data-requires-python") == dist.requires_python
        assert link.get("data-yanked") == (dist.yanked or None)
        expected_metadata = f"sha256={dist.metadata_sha256}" if dist.metadata else None
        assert link.get("data-core-metadata") == expected_metadata
        assert link.get("data-dist-info-metadata") == expected_metadata


def test_yanked_without_reason_is_an_empty_attribute_and_true_in_json(upstream, fake_index):
    fake_index.yank("tiny", "tiny-0.5.tar.gz")
    link = next(link for link in html_links(fetch(upstream, "/simple/tiny/").body) if "tiny-0.5" in str(link["href"]))
    assert link["data-yanked"] == ""
    entry = next(f for f in json_page(upstream, "tiny")["files"] if f["filename"] == "tiny-0.5.tar.gz")
    assert entry["yanked"] is True


def test_root_lists_every_project_with_its_serial(upstream, fake_index):
    reply = fetch(upstream, "/simple/", Accept=JSON_TYPE)
    assert reply.headers["X-PyPI-Last-Serial"] == str(fake_index.serial)
    root = reply.json()
    assert root["meta"] == {"api-version": "1.4", "_last-serial": fake_index.serial}
    assert root["projects"] == [{"name": p.name, "_last-serial": p.last_serial} for p in fake_index.projects()]
    hrefs = [link["href"] for link in html_links(fetch(upstream, "/simple/").body)]
    assert hrefs == ["/simple/foo-bar/", "/simple/tiny/", "/simple/zope-hookable/"]


def test_files_and_metadata_are_served_with_their_bytes(upstream, fake_index):
    wheel = next(f for f in fake_index.project("foo-bar").files if f.metadata)
    reply = fetch(upstream, wheel.url_path)
    assert (reply.status, reply.body, reply.headers["Content-Type"]) == (200, wheel.content, "application/octet-stream")
    assert reply.headers["Content-Length"] == str(wheel.size)
    assert fetch(upstream, wheel.url_path + ".metadata").body == wheel.metadata
    no_metadata = next(f for f in fake_index.project("foo-bar").files if not f.metadata)
    assert fetch(upstream, no_metadata.url_path + ".metadata").status == 404
    head = fetch(upstream, wheel.url_path, method="HEAD")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(wheel.size))


def test_files_base_url_points_pages_at_another_server(upstream, upstream_factory, fake_index):
    files_host = upstream_factory(fake_index)
    upstream.files_base_url = files_host.url
    entry = json_page(upstream, "tiny")["files"][0]
    assert entry["url"].startswith(files_host.url + "/packages/")
    path = entry["url"].removeprefix(files_host.url)
    assert hashlib.sha256(fetch(files_host, path).body).hexdigest() == entry["hashes"]["sha256"]
    assert upstream.count("/packages/") == 0
    assert files_host.count("/packages/") == 1


# ------------------------------------------------------------------------------------------------ ETag, redirects
def test_etag_is_strong_per_representation_and_answers_304(upstream, fake_index):
    tags = {
        accept: fetch(upstream, "/simple/tiny/", Accept=accept).headers["ETag"]
        for accept in (JSON_TYPE, V1_HTML_TYPE, "text/html")
    }
    assert len(set(tags.values())) == 3
    assert all(re.fullmatch(r'"[0-9a-f]{32}"', tag) for tag in tags.values())
    again = fetch(upstream, "/simple/tiny/", Accept=JSON_TYPE, If_None_Match=tags[JSON_TYPE])
    assert (again.status, again.body) == (304, b"")
    assert again.headers["ETag"] == tags[JSON_TYPE]
    assert again.headers["X-PyPI-Last-Serial"] == str(fake_index.project("tiny").last_serial)
    weak = fetch(upstream, "/simple/tiny/", Accept=JSON_TYPE, If_None_Match=f'"nope", W/{tags[JSON_TYPE]}')
    assert weak.status == 304
    assert fetch(upstream, "/simple/tiny/", If_None_Match="*").status == 304
    fake_index.add_file("tiny", "tiny-3.0.tar.gz", b"new", version="3.0")
    changed = fetch(upstream, "/simple/tiny/", Accept=JSON_TYPE, If_None_Match=tags[JSON_TYPE])
    assert changed.status == 200
    assert changed.headers["ETag"] != tags[JSON_TYPE]


def test_etag_disabled_sends_no_etag_and_never_304(upstream):
    first = fetch(upstream, "/simple/tiny/")
    upstream.etag_enabled = False
    reply = fetch(upstream, "/simple/tiny/", If_None_Match=first.headers["ETag"])
    assert reply.status == 200
    assert reply.headers["ETag"] is None


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/simple/Foo_Bar/", "/simple/foo-bar/"),
        ("/simple/foo-bar", "/simple/foo-bar/"),
        ("/simple/ZOPE.hookable?format=text/html", "/simple/zope-hookable/?format=text/html"),
        ("/simple", "/simple/"),
    ],
)
def test_non_canonical_page_urls_redirect_permanently(upstream, path, location):
    reply = fetch(upstream, path)
    assert (reply.status, reply.headers["Location"]) == (301, location)


@pytest.mark.parametrize("path", ["/simple/nowhere/", "/simple/..%2F..%2Fetc/", "/simple/tiny/extra", "/other"])
def test_unknown_paths_are_404(upstream, path):
    assert fetch(upstream, path).status == 404


def test_removed_project_is_404_and_removed_file_is_gone(upstream, fake_index):
    gone = fake_index.project("foo-bar").files[0]
    fake_index.remove_file("foo-bar", gone.filename)
    assert gone.filename not in {f["filename"] for f in json_page(upstream, "foo-bar")["files"]}
    assert fetch(upstream, gone.url_path).status == 404
    fake_index.remove_project("tiny")
    assert fetch(upstream, "/simple/tiny/").status == 404
    assert "tiny" not in {p["name"] for p in fetch(upstream, "/simple/", Accept=JSON_TYPE).json()["projects"]}


# ------------------------------------------------------------------------------------------------ XML-RPC
def test_xmlrpc_changelog_matches_every_mutation(upstream, fake_index):
    since = fake_index.serial
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"two", version="2.0")
    fake_index.yank("tiny", "tiny-2.0.tar.gz", "oops")
    fake_index.remove_file("tiny", "tiny-0.5.tar.gz")
    fake_index.remove_project("zope.hookable")
    proxy = xmlrpc.client.ServerProxy(upstream.url + "/pypi")
    rows = proxy.changelog_since_serial(since)
    assert [(name, version, action, serial) for name, version, _, action, serial in rows] == [
        ("tiny", "2.0", "add source file tiny-2.0.tar.gz", since + 1),
        ("tiny", "2.0", "yank release", since + 2),
        ("tiny", "0.5", "remove file tiny-0.5.tar.gz", since + 3),
        ("zope.Hookable", None, "remove project", since + 4),
    ]
    assert all(isinstance(row[2], int) for row in rows)
    assert proxy.changelog_last_serial() == since + 4 == fake_index.serial
    assert proxy.list_packages_with_serial() == {"Foo_Bar": BASE_SERIAL + 3, "tiny": since + 3}
    assert fake_index.project("tiny").last_serial == since + 3
    assert upstream.count("/pypi", method="POST") == 3


def test_xmlrpc_changelog_is_capped_at_50000_rows_per_call(upstream, fake_index):
    start = fake_index.serial
    fake_index.add_bulk_names(50_010)
    proxy = xmlrpc.client.ServerProxy(upstream.url + "/pypi")
    first = proxy.changelog_since_serial(start)
    assert len(first) == 50_000
    assert [row[4] for row in first[:2]] == [start + 1, start + 2]
    rest = proxy.changelog_since_serial(first[-1][4])
    assert [row[4] for row in rest] == list(range(start + 50_001, start + 50_011))
    assert rest[-1][0] == "Bulk_Project.0050009"


def test_xmlrpc_disabled_is_404_and_unknown_methods_fault(upstream):
    proxy = xmlrpc.client.ServerProxy(upstream.url + "/pypi")
    with pytest.raises(xmlrpc.client.Fault, match="not supported"):
        proxy.package_releases("tiny")
    with pytest.raises(xmlrpc.client.Fault, match="invalid parameters"):
        proxy.changelog_since_serial("yesterday")
    upstream.xmlrpc_enabled = False
    with pytest.raises(xmlrpc.client.ProtocolError) as refused:
        proxy.changelog_last_serial()
    assert refused.value.errcode == 404


# ------------------------------------------------------------------------------------------------ faults
def test_status_fault_with_retry_after_is_consumed_then_normal(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.status(503, retry_after=7), times=2)
    first, second, third = (fetch(upstream, "/simple/tiny/") for _ in range(3))
    assert (first.status, first.headers["Retry-After"]) == (503, "7")
    assert second.status == 503
    assert third.status == 200
    assert upstream.pending_faults() == 0
    assert fetch(upstream, "/simple/foo-bar/").status == 200


def test_fault_rules_apply_in_order_and_only_to_matching_paths(upstream):
    upstream.inject(r"/simple/tiny/", Fault.status(500))
    upstream.inject(r"/simple/", Fault.status(429))
    assert fetch(upstream, "/simple/foo-bar/").status == 429  # the first rule does not match it
    assert fetch(upstream, "/simple/tiny/").status == 500
    assert fetch(upstream, "/simple/tiny/").status == 200
    with pytest.raises(ValueError, match="invalid fault path regex"):
        upstream.inject("(", Fault.corrupt())


def test_delay_fault_makes_a_short_client_timeout_fire(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.delay(1.0))
    connection = http.client.HTTPConnection(upstream.url.removeprefix("http://"), timeout=0.1)
    started = time.monotonic()
    connection.request("GET", "/simple/tiny/")
    with pytest.raises(TimeoutError):
        connection.getresponse()
    connection.close()
    assert time.monotonic() - started < 0.9  # the client gave up; the server still sleeps
    assert fetch(upstream, "/simple/tiny/").status == 200


def test_delay_fault_then_answers_normally(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.delay(0.2))
    started = time.monotonic()
    assert fetch(upstream, "/simple/tiny/").status == 200
    assert time.monotonic() - started >= 0.2


def test_reset_mid_body_breaks_the_download(upstream, fake_index):
    dist = fake_index.project("zope-hookable").files[-1]
    upstream.inject(re.escape(dist.url_path), Fault.reset_mid_body())
    connection = http.client.HTTPConnection(upstream.url.removeprefix("http://"), timeout=10)
    connection.request("GET", dist.url_path)
    response = connection.getresponse()
    assert response.headers["Content-Length"] == str(dist.size)
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        response.read()
    connection.close()
    assert fetch(upstream, dist.url_path).body == dist.content


def test_truncate_sends_fewer_bytes_than_announced(upstream, fake_index):
    dist = fake_index.project("foo-bar").files[0]
    upstream.inject(re.escape(dist.url_path), Fault.truncate(100))
    connection = http.client.HTTPConnection(upstream.url.removeprefix("http://"), timeout=10)
    connection.request("GET", dist.url_path)
    response = connection.getresponse()
    assert response.headers["Content-Length"] == str(dist.size)
    with pytest.raises(http.client.IncompleteRead) as short:
        response.read()
    connection.close()
    assert short.value.partial == dist.content[:100]


def test_corrupt_keeps_the_size_and_breaks_the_hash(upstream, fake_index):
    dist = fake_index.project("foo-bar").files[0]
    upstream.inject(r"^/packages/", Fault.corrupt())
    body = fetch(upstream, dist.url_path).body
    assert len(body) == dist.size
    assert hashlib.sha256(body).hexdigest() != dist.sha256
    assert sum(a != b for a, b in zip(body, dist.content, strict=True)) == 1


def test_wrong_size_skews_sizes_in_json_pages(upstream, fake_index):
    upstream.inject(r"^/simple/tiny/$", Fault.wrong_size())
    sizes = {f["filename"]: f["size"] for f in json_page(upstream, "tiny")["files"]}
    assert sizes == {f.filename: f.size + 1 for f in fake_index.project("tiny").files}
    assert {f["filename"]: f["size"] for f in json_page(upstream, "tiny")["files"]} == {
        f.filename: f.size for f in fake_index.project("tiny").files
    }


def test_malformed_json_is_unparseable_json(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.malformed_json())
    reply = fetch(upstream, "/simple/tiny/", Accept="text/html")
    assert (reply.status, reply.headers["Content-Type"]) == (200, JSON_TYPE)
    assert reply.body.startswith(b'{"meta"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.body)


def test_malformed_html_cuts_the_last_hash(upstream):
    upstream.inject(r"^/simple/foo-bar/$", Fault.malformed_html())
    reply = fetch(upstream, "/simple/foo-bar/", Accept=JSON_TYPE)
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert re.search(rb"#sha256=[0-9a-f]{10}\Z", reply.body)
    assert b"</html>" not in reply.body


def test_redirect_loop_makes_a_client_give_up(upstream):
    upstream.inject(r"^/simple/tiny/$", Fault.redirect_loop(), times=10)
    with urllib3.PoolManager() as pool, pytest.raises(urllib3.exceptions.MaxRetryError):
        pool.request("GET", upstream.url + "/simple/tiny/", retries=urllib3.Retry(total=None, redirect=3))
    assert upstream.count("/simple/tiny/") == 4
    assert {r.status for r in upstream.requests} == {302}


def test_stale_page_serves_the_state_before_the_latest_change(upstream, fake_index):
    before = fake_index.project("tiny")
    fake_index.add_file("tiny", "tiny-2.0.tar.gz", b"fresh", version="2.0")
    upstream.inject(r"^/simple/tiny/$", Fault.stale_page(1), times=2)
    stale = fetch(upstream, "/simple/tiny/", Accept=JSON_TYPE)
    assert stale.headers["X-PyPI-Last-Serial"] == str(before.last_serial)
    assert stale.json()["meta"]["_last-serial"] == before.last_serial
    assert {f["filename"] for f in stale.json()["files"]} == {f.filename for f in before.files}
    assert "tiny-2.0.tar.gz" not in fetch(upstream, "/simple/tiny/").body.decode()
    fresh = json_page(upstream, "tiny")
    assert fresh["meta"]["_last-serial"] == fake_index.serial
    assert "tiny-2.0.tar.gz" in {f["filename"] for f in fresh["files"]}


def test_stale_page_of_a_project_newer_than_that_serial_is_404(upstream, fake_index):
    fake_index.add_file("Brand.New", "brand_new-1.0.tar.gz", b"new", version="1.0")
    upstream.inject(r"^/simple/brand-new/$", Fault.stale_page(1))
    assert fetch(upstream, "/simple/brand-new/").status == 404
    assert fetch(upstream, "/simple/brand-new/").status == 200


@pytest.mark.parametrize("accept", [JSON_TYPE, "text/html"])
def test_huge_page_is_exactly_that_big_and_still_well_formed(upstream, accept):
    upstream.inject(r"^/simple/foo-bar/$", Fault.huge_page(2.5))
    reply = fetch(upstream, "/simple/foo-bar/", Accept=accept)
    assert len(reply.body) == int(2.5 * 2**20)
    if accept == JSON_TYPE:
        assert len(reply.json()["files"]) == 3
    else:
        assert len(html_links(reply.body)) == 3
        assert reply.body.endswith(b"-->")


def test_override_page_serves_hostile_bytes_verbatim(upstream):
    hostile = b'<a href="../../etc/passwd#sha256=00" onclick="alert(1)">../evil.whl</a><script>x()</script>'
    upstream.override_page("Foo_Bar", hostile, "text/html")
    upstream.override_path("/simple/", b'{"projects": "not a list"}', JSON_TYPE)
    reply = fetch(upstream, "/simple/foo-bar/", Accept=JSON_TYPE)
    assert (reply.status, reply.body, reply.headers["Content-Type"]) == (200, hostile, "text/html")
    assert fetch(upstream, "/simple/").json() == {"projects": "not a list"}
    upstream.clear_overrides()
    assert json_page(upstream, "foo-bar")["name"] == "foo-bar"


# ------------------------------------------------------------------------------------------------ server plumbing
def test_request_log_counts_by_prefix_and_method(upstream, fake_index):
    fetch(upstream, "/simple/", User_Agent="pypi-cdn-test/1 (ops@example.org)")
    fetch(upstream, "/simple/tiny/")
    fetch(upstream, fake_index.project("tiny").files[0].url_path + "?x=1")
    xmlrpc.client.ServerProxy(upstream.url + "/pypi").changelog_last_serial()
    assert upstream.count() == 4
    assert upstream.count("/simple/") == 2
    assert upstream.count("/packages/", method="GET") == 1
    assert upstream.count(method="POST") == 1
    first = upstream.requests[0]
    assert (first.method, first.path, first.status) == ("GET", "/simple/", 200)
    assert first.headers["user-agent"] == "pypi-cdn-test/1 (ops@example.org)"
    assert upstream.requests[2].query == "x=1"
    upstream.reset_log()
    assert upstream.count() == 0


def test_keep_alive_serves_many_requests_on_one_connection(upstream, fake_index):
    connection = http.client.HTTPConnection(upstream.url.removeprefix("http://"), timeout=10)
    try:
        bodies = []
        for dist in fake_index.project("foo-bar").files:
            connection.request("GET", dist.url_path)
            bodies.append(connection.getresponse().read())
            if len(bodies) == 1:
                first_socket = connection.sock
            assert connection.sock is first_socket
    finally:
        connection.close()
    assert bodies == [f.content for f in fake_index.project("foo-bar").files]


def test_stop_refuses_new_connections_and_drops_idle_ones(fake_index):
    server = UpstreamServer(fake_index)
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=5)
    connection.request("GET", "/simple/tiny/")
    connection.getresponse().read()
    server.stop()
    server.stop()
    connection.request("GET", "/simple/tiny/")  # the first send after the peer closed still succeeds
    with pytest.raises(ConnectionError):
        connection.getresponse()
    connection.close()
    host, port = server.url.removeprefix("http://").split(":")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=2)


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
