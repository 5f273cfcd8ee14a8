"""The local edge: the deployed function under node in front of a folder or a (moto) bucket, driven over HTTP."""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devstack.edge import EdgeError, EdgeServer, ViewerRequestFunction
from devstack.origins import FolderOrigin, S3Origin
from sync.layout import FILE_CACHE_CONTROL, PAGE_CACHE_CONTROL
from tests.upstream.corpus import installable_wheel

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)")

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html; charset=utf-8"
WHEEL_NAME = "demo_pkg-1.0-py3-none-any.whl"
WHEEL_KEY = f"packages/ab/cd/0123456789abcdef/{WHEEL_NAME}"
BIG_KEY = "packages/ef/01/fedcba9876543210/big-1.0.tar.gz"
BIG_SIZE = 3 * 1024 * 1024 + 17  # several copy chunks, not a multiple of any


def wheel_bytes() -> bytes:
    return installable_wheel("demo-pkg", "1.0")[1]


@functools.cache
def mirror_objects() -> dict[str, bytes]:
    """A tiny mirror whose JSON and HTML pages differ: the JSON names the wheel, the HTML names nothing."""
    wheel = wheel_bytes()
    project_json = {
        "meta": {"api-version": "1.1"},
        "name": "demo-pkg",
        "versions": ["1.0"],
        "files": [
            {
                "filename": WHEEL_NAME,
                "url": f"../../{WHEEL_KEY}",
                "hashes": {"sha256": hashlib.sha256(wheel).hexdigest()},
                "size": len(wheel),
            }
        ],
    }
    return {
        "simple/index.html": b'<!DOCTYPE html><html><body><a href="demo-pkg/">demo-pkg</a></body></html>',
        "simple/index.v1_json": json.dumps(
            {"meta": {"api-version": "1.1"}, "projects": [{"name": "demo-pkg"}]}
        ).encode(),
        "simple/demo-pkg/index.html": b"<!DOCTYPE html><html><body><h1>demo-pkg</h1></body></html>",
        "simple/demo-pkg/index.v1_json": json.dumps(project_json).encode(),
        WHEEL_KEY: wheel,
        BIG_KEY: bytes(range(256)) * (BIG_SIZE // 256) + b"x" * (BIG_SIZE % 256),
    }


@pytest.fixture(scope="module")
def edge_function() -> Iterator[ViewerRequestFunction]:
    with ViewerRequestFunction() as function:
        yield function


@pytest.fixture(scope="module")
def mirror_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    for key, data in mirror_objects().items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def edge(mirror_folder: Path, edge_function: ViewerRequestFunction) -> Iterator[EdgeServer]:
    with EdgeServer(FolderOrigin(mirror_folder), function=edge_function) as server:
        yield server


def get(
    server: EdgeServer, path: str, accept: str | None = None, method: str = "GET", **headers: str
) -> tuple[http.client.HTTPResponse, bytes]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    if accept is not None:
        headers["Accept"] = accept
    connection.request(method, path, headers={name.replace("_", "-"): value for name, value in headers.items()})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_pip_gets_json_with_the_object_headers(edge: EdgeServer) -> None:
    response, body = get(edge, "/simple/demo-pkg/", PIP_ACCEPT)
    assert response.status == 200
    assert response.getheader("Content-Type") == JSON_TYPE
    assert response.getheader("Vary") == "Accept"
    assert response.getheader("Cache-Control") == PAGE_CACHE_CONTROL
    assert response.getheader("ETag")
    assert json.loads(body)["name"] == "demo-pkg"


def test_a_browser_gets_html(edge: EdgeServer) -> None:
    response, body = get(edge, "/simple/demo-pkg/", BROWSER_ACCEPT)
    assert (response.status, response.getheader("Content-Type")) == (200, HTML_TYPE)
    assert body.startswith(b"<!DOCTYPE html>")
    response, body = get(edge, "/simple/", BROWSER_ACCEPT)
    assert b'href="demo-pkg/"' in body


def test_function_responses_pass_through(edge: EdgeServer) -> None:
    response, _ = get(edge, "/simple/Demo_Pkg?x=1", PIP_ACCEPT)
    assert (response.status, response.getheader("Location")) == (301, "/simple/demo-pkg/?x=1")
    response, body = get(edge, "/simple/demo-pkg/", "application/json")
    assert response.status == 406
    assert JSON_TYPE.encode() in body
    response, _ = get(edge, "/.pypi-cdn/state.json")
    assert response.status == 404


def test_missing_objects_are_404(edge: EdgeServer) -> None:
    assert get(edge, "/simple/no-such-project/", PIP_ACCEPT)[0].status == 404
    assert get(edge, "/packages/ab/cd/00/missing.whl")[0].status == 404


def test_files_stream_whole_with_immutable_caching(edge: EdgeServer) -> None:
    expected = mirror_objects()[BIG_KEY]
    response, body = get(edge, f"/{BIG_KEY}")
    assert response.status == 200
    assert response.getheader("Content-Length") == str(BIG_SIZE)
    assert response.getheader("Cache-Control") == FILE_CACHE_CONTROL
    assert response.getheader("Vary") is None
    assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()


def test_head_and_conditional_requests(edge: EdgeServer) -> None:
    response, body = get(edge, f"/{WHEEL_KEY}", method="HEAD")
    assert (response.status, body) == (200, b"")
    assert response.getheader("Content-Length") == str(len(mirror_objects()[WHEEL_KEY]))
    etag = response.getheader("ETag")
    assert etag
    response, body = get(edge, f"/{WHEEL_KEY}", If_None_Match=etag)
    assert (response.status, body) == (304, b"")


def test_concurrent_requests(edge: EdgeServer) -> None:
    paths = ["/simple/demo-pkg/", f"/{WHEEL_KEY}", "/simple/", "/simple/Demo.Pkg/"] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda path: get(edge, path, PIP_ACCEPT)[0].status, paths))
    assert statuses == [200, 200, 200, 301] * 8


def test_pip_downloads_through_the_edge(edge: EdgeServer, tmp_path: Path) -> None:
    """Real pip: the wheel is only named by the JSON page, so success proves pip was served JSON."""
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "pip", "download", "--no-deps", "--no-cache-dir", "--disable-pip-version-check", "--isolated"),
            *("--index-url", f"{edge.url}/simple/", "--dest", str(tmp_path), "demo-pkg"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / WHEEL_NAME).read_bytes() == mirror_objects()[WHEEL_KEY]


def test_s3_origin_serves_stored_headers(edge_function: ViewerRequestFunction, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")]:
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="mirror")
        for key, data in mirror_objects().items():
            page = key.startswith("simple/")
            client.put_object(
                Bucket="mirror",
                Key=f"prod/{key}",
                Body=data,
                ContentType=(JSON_TYPE if key.endswith("v1_json") else HTML_TYPE) if page else "application/zip",
                CacheControl=PAGE_CACHE_CONTROL if page else FILE_CACHE_CONTROL,
            )
        with EdgeServer(S3Origin(endpoint, "mirror", prefix="prod/"), function=edge_function) as s3_edge:
            response, body = get(s3_edge, "/simple/demo-pkg/", PIP_ACCEPT)
            assert (response.status, response.getheader("Content-Type")) == (200, JSON_TYPE)
            assert response.getheader("Cache-Control") == PAGE_CACHE_CONTROL
            assert json.loads(body)["files"][0]["filename"] == WHEEL_NAME
            response, body = get(s3_edge, f"/{WHEEL_KEY}")
            assert (response.status, response.getheader("Content-Type")) == (200, "application/zip")
            assert body == mirror_objects()[WHEEL_KEY]
            assert get(s3_edge, "/simple/nothing-here/", PIP_ACCEPT)[0].status == 404
    finally:
        server.stop()


def test_function_failures_are_edge_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.js"
    broken.write_text("function handler(event) { return event.request.nothing.uri; }\n")
    with ViewerRequestFunction(broken) as function, pytest.raises(EdgeError, match="TypeError"):
        function({"request": {}})
    undeclared = tmp_path / "sloppy.js"
    undeclared.write_text("function handler(event) { leaked = 1; return event.request; }\n")
    with ViewerRequestFunction(undeclared) as function, pytest.raises(EdgeError, match="leaked is not defined"):
        function({"request": {}})  # strict mode, as on CloudFront
    with pytest.raises(EdgeError, match=r"not found; install Node\.js"):
        ViewerRequestFunction(node=str(tmp_path / "no-node"))


def test_a_missing_handler_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.js"
    empty.write_text("var x = 1;\n")
    with ViewerRequestFunction(empty) as function, pytest.raises(EdgeError, match="defines no function handler"):
        function({"request": {}})


def test_folder_origin_stays_inside_its_folder(mirror_folder: Path) -> None:
    origin = FolderOrigin(mirror_folder / "simple")
    assert origin.fetch("../" + WHEEL_KEY) is None
    assert origin.fetch("demo-pkg") is None  # a folder is not an object
    found = origin.fetch("demo-pkg/index.v1_json")
    assert found is not None
    with found.body:
        assert found.content_type == JSON_TYPE
    with pytest.raises(ValueError, match="does not exist"):
        FolderOrigin(mirror_folder / "nope")


def test_console_output_stays_out_of_the_protocol(tmp_path: Path) -> None:
    chatty = tmp_path / "chatty.js"
    chatty.write_text("function handler(event) { console.log('x'.repeat(100000)); return event.request; }\n")
    with ViewerRequestFunction(chatty) as function:
        for _ in range(3):  # 300 KB of logging: more than a pipe holds, so a pipe would block node
            assert function({"request": {"uri": "/"}}) == {"uri": "/"}
