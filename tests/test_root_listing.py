"""The root listing through the client: JSON and HTML, streamed, bad entries skipped, broken listings refused."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler

import pytest

from sync.transport import UpstreamError
from sync.upstream import UpstreamClient
from tests.upstream.scripted import client_for, scripted_server
from tests.upstream.server import Fault


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
    with caplog.at_level(logging.WARNING, logger="sync.root_listing"):
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
