"""The fake PyPI's faults behave as documented: statuses, delays, broken bodies, hostile pages, stale pages."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time

import pytest
import urllib3

from tests.test_upstream_server import fetch, html_links, json_page
from tests.upstream.server import JSON_TYPE, Fault


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
