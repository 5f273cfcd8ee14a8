"""The fake PyPI is the yardstick of every sync test: check it speaks what pypi.org speaks (pages, negotiation, ETags,
redirects, XML-RPC, connections)."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import xmlrpc.client
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from tests.upstream.index import BASE_SERIAL
from tests.upstream.server import JSON_TYPE, V1_HTML_TYPE, UpstreamServer, negotiate

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
