"""The whole path on one machine: the local upstream → Lambda handlers → moto S3 → edge function → nginx → pip."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError

import pytest

from devstack import redirector
from devstack.invalidations import EFFECT_SECONDS
from devstack.redirector import RedirectorError, find_nginx, start_redirector
from devstack.stack import BUCKET as STACK_BUCKET
from devstack.stack import LocalStack
from infra.cache_ttls import STATUS_TTLS
from infra.edge.render import RedirectorSettings
from sync.layout import STATUS_CACHE_CONTROL
from sync.state import load_state
from sync.storage import open_storage
from tests.upstream.corpus import installable_wheel

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PROJECT = "Stack_Demo"
NORMALIZED = "stack-demo"

NEEDS_NGINX = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, accept: str | None = None, *, follow: bool = True):
    """(status, headers, body) of a GET, like curl with or without -L."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except HTTPError as error:
        return error.code, error.headers, error.read()


def pip_download(index_url: str, requirement: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--isolated",
            "--only-binary",
            ":all:",
            "--index-url",
            index_url,
            "--dest",
            str(dest),
            requirement,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )


def publish(fake_index, version: str) -> tuple[str, bytes]:
    filename, wheel, metadata = installable_wheel(PROJECT, version)
    fake_index.add_file(PROJECT, filename, wheel, version=version, metadata=metadata)
    return filename, wheel


@NEEDS_NGINX
def test_pip_through_redirector_edge_and_bucket_then_a_new_release(upstream, fake_index, tmp_path):
    first_file, first_wheel = publish(fake_index, "1.0")
    with LocalStack(upstream=upstream.url, projects=[PROJECT]) as stack:
        summary = stack.sync()
        assert (summary["failed"], summary["worker_failures"], summary["handed_off"]) == (0, 0, 1)
        assert summary["root_written"]

        downloaded = pip_download(stack.index_url, f"{PROJECT}==1.0", tmp_path / "one")
        assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
        assert (tmp_path / "one" / first_file).read_bytes() == first_wheel

        # The redirector sends /simple and /packages to the edge, query kept; the edge negotiates.
        status, headers, _ = fetch(f"{stack.index_url}{NORMALIZED}/?x=1", PIP_ACCEPT, follow=False)
        assert (status, headers["Location"]) == (302, f"{stack.edge.url}/simple/{NORMALIZED}/?x=1")
        status, headers, body = fetch(f"{stack.index_url}{NORMALIZED}/", PIP_ACCEPT)
        assert (status, headers["Content-Type"], headers["Vary"]) == (
            200,
            "application/vnd.pypi.simple.v1+json",
            "Accept",
        )
        page = json.loads(body)
        assert [f["filename"] for f in page["files"]] == [first_file]
        status, headers, body = fetch(f"{stack.index_url}{NORMALIZED}/", BROWSER_ACCEPT)
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert first_file.encode() in body
        status, _, body = fetch(f"{stack.index_url}{NORMALIZED}/", "application/xml")
        assert status == 406
        assert b"application/vnd.pypi.simple.v1+json" in body
        status, headers, _ = fetch(f"{stack.edge.url}/simple/{PROJECT}/", PIP_ACCEPT, follow=False)
        assert (status, headers["Location"]) == (301, f"/simple/{NORMALIZED}/")
        file_path = "/" + page["files"][0]["url"].removeprefix("../../")
        status, headers, _ = fetch(f"{stack.index_url.removesuffix('/simple/')}{file_path}", follow=False)
        assert (status, headers["Location"]) == (301, f"{stack.edge.url}{file_path}")
        root = json.loads(fetch(stack.index_url, PIP_ACCEPT)[2])
        assert [p["name"] for p in root["projects"]] == [NORMALIZED]
        front = stack.index_url.removesuffix("/simple/")
        status, headers, _ = fetch(f"{front}/status.json", follow=False)
        assert (status, headers["Location"]) == (302, f"{stack.edge.url}/status.json")
        assert json.loads(fetch(f"{front}/status.json")[2])["projects"] == 1

        # Upstream publishes a release; the next tick mirrors it and invalidates the page at the caching edge,
        # which serves it once the invalidation takes effect; pip installs it through the same path.
        _, headers, _ = fetch(f"{stack.index_url}{NORMALIZED}/", PIP_ACCEPT)
        assert headers["X-Cache"] == "Hit from cloudfront"
        second_file, second_wheel = publish(fake_index, "2.0")
        summary = stack.sync()
        assert (summary["failed"], summary["worker_failures"], summary["handed_off"]) == (0, 0, 1)
        deadline = time.monotonic() + EFFECT_SECONDS + 10
        while second_file.encode() not in (page := fetch(f"{stack.index_url}{NORMALIZED}/", PIP_ACCEPT))[2]:
            assert time.monotonic() < deadline, "the invalidation never took effect"
            time.sleep(0.2)
        assert page[1]["X-Cache"] == "Miss from cloudfront"
        downloaded = pip_download(stack.index_url, f"{PROJECT}==2.0", tmp_path / "two")
        assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
        assert (tmp_path / "two" / second_file).read_bytes() == second_wheel


def mirrored_serial(stack: LocalStack) -> int | None:
    """The serial the mirror's own state records (the status must report it)."""
    storage = open_storage(f"s3://{STACK_BUCKET}", endpoint_url=stack.endpoint_url)
    state = load_state(storage)
    return state.serial if state else None


def test_the_status_is_served_by_the_edge_and_follows_each_pass(upstream, fake_index):
    publish(fake_index, "1.0")
    with LocalStack(upstream=upstream.url, projects=[PROJECT], redirector=False) as stack:
        stack.sync()
        status, headers, body = fetch(f"{stack.edge.url}/status.json")
        assert (status, headers["Content-Type"], headers["Cache-Control"]) == (
            200,
            "application/json",
            STATUS_CACHE_CONTROL,
        )
        first = json.loads(body)
        assert (first["upstream"], first["api_version"], first["projects"]) == (upstream.url, "1.4", 1)
        assert (first["last_serial"], first["pending"], first["lag_seconds"]) == (mirrored_serial(stack), 0, 0)
        assert first["last_sync"] == first["last_check"]

        publish(fake_index, "2.0")
        time.sleep(1.1)  # the status counts whole seconds
        stack.sync()
        deadline = time.monotonic() + STATUS_TTLS.max + 5  # the edge caches the status, as CloudFront does
        while (second := json.loads(fetch(f"{stack.edge.url}/status.json")[2]))["last_check"] == first["last_check"]:
            assert time.monotonic() < deadline, "the edge kept serving the old status"
            time.sleep(0.5)
        assert second["last_serial"] == mirrored_serial(stack)
        assert second["last_check"] > first["last_check"]
        # Only the status leaves the bucket root: the sync's state next to it stays private.
        assert fetch(f"{stack.edge.url}/.pypi-cdn/state.json")[0] == 404


@pytest.fixture
def squatter() -> Iterator[int]:
    """A port something else listens on (and accepts connections)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@NEEDS_NGINX
def test_a_taken_port_stops_the_stack_with_a_clear_error(upstream, squatter: int) -> None:
    stack = LocalStack(upstream=upstream.url, projects=[PROJECT], port=squatter)
    with pytest.raises(RedirectorError, match=f"127.0.0.1:{squatter} is already in use"), stack:
        pytest.fail("the stack said it was up")
    assert (stack.redirector, stack.edge, stack.moto) == (None, None, None)  # nothing left running


@NEEDS_NGINX
def test_a_port_taken_after_the_check_is_not_mistaken_for_nginx(
    squatter: int, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other listener accepts connections while nginx retries its bind and exits: that is no redirector."""
    monkeypatch.setattr(redirector, "port_is_free", lambda port: True)
    settings = RedirectorSettings(
        domain="localhost", cdn_hostname="localhost", dynamic_origin="http://127.0.0.1:9", hosted_zone_id="Z0LOCAL"
    )
    with pytest.raises(RedirectorError, match="Address already in use"):
        start_redirector(settings, tmp_path, cdn_url="http://127.0.0.1:9", http_port=squatter)
