"""Bounded HTTP to the upstream, through the client: retries, Retry-After, timeouts, redirects, size limits, the
connection bound."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from sync.transport import UpstreamError
from sync.upstream import UpstreamClient
from tests.upstream.scripted import client_for, elapsed, scripted_server
from tests.upstream.server import Fault


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
