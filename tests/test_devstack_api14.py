"""Simple API 1.4 through the whole local path (handlers → moto S3 → edge function → nginx), read by pip and uv:
provenance documents served with their content type, a quarantine that empties the mirror and is lifted, and
`uv audit` reporting the PEP 792 status it reads from the mirror."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devstack.redirector import find_nginx
from devstack.stack import LocalStack
from tests.test_devstack_stack import PIP_ACCEPT, fetch, pip_download
from tests.upstream.corpus import installable_wheel, provenance_document

UV = Path(sys.executable).parent / "uv"
UV_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
PROJECT = "Attested_Demo"
NORMALIZED = "attested-demo"

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")


def publish(fake_index, version: str) -> tuple[str, bytes]:
    filename, wheel, metadata = installable_wheel(PROJECT, version)
    document = provenance_document(filename, hashlib.sha256(wheel).hexdigest())
    fake_index.add_file(PROJECT, filename, wheel, version=version, metadata=metadata, provenance=document)
    return filename, wheel


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_CACHE_DIR": str(cwd / "uv-cache"), "UV_PYTHON": sys.executable, "NO_COLOR": "1"}
    return subprocess.run([str(UV), *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd, env=env)


class _NoVulnerabilities(BaseHTTPRequestHandler):
    """OSV's `/v1/querybatch` answering "no known vulnerability" for every query, on loopback."""

    def do_POST(self) -> None:
        queries = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0))).get("queries", [])
        body = json.dumps({"results": [{} for _ in queries]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def osv_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoVulnerabilities)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_provenance_quarantine_and_installs_through_the_local_stack(upstream, fake_index, tmp_path):
    filename, wheel = publish(fake_index, "1.0")
    with LocalStack(upstream=upstream.url, projects=[PROJECT]) as stack:
        summary = stack.sync()
        assert (summary["failed"], summary["worker_failures"]) == (0, 0)
        status, headers, body = fetch(f"{stack.index_url}{NORMALIZED}/", PIP_ACCEPT)
        page = json.loads(body)
        assert (status, page["meta"]["api-version"], page["project-status"]) == (200, "1.4", {"status": "active"})
        (entry,) = page["files"]
        # The page points at the mirror's own copy, on the edge (the stack's public URL); served with PEP 740's type.
        assert entry["provenance"].startswith(stack.edge.url + "/packages/")
        status, headers, document = fetch(entry["provenance"])
        assert (status, headers["Content-Type"]) == (200, "application/vnd.pypi.integrity.v1+json")
        assert document == fake_index.provenance_of(PROJECT, filename)
        front = stack.index_url.removesuffix("/simple/")
        status, headers, _ = fetch(front + entry["provenance"].removeprefix(stack.edge.url), follow=False)
        assert (status, headers["Location"]) == (301, entry["provenance"])  # the redirector sends it on, as files
        status, headers, body = fetch(f"{stack.index_url}{NORMALIZED}/", "text/html")
        assert f'data-provenance="{entry["provenance"]}"'.encode() in body
        assert b'<meta name="pypi:project-status" content="active">' in body

        assert pip_download(stack.index_url, f"{PROJECT}==1.0", tmp_path / "pip").returncode == 0
        assert (tmp_path / "pip" / filename).read_bytes() == wheel
        installed = uv("pip", "install", "--dry-run", "--index-url", stack.index_url, f"{PROJECT}==1.0", cwd=tmp_path)
        assert installed.returncode == 0, installed.stderr
        assert f"{NORMALIZED}==1.0" in installed.stderr

        fake_index.set_status(PROJECT, "quarantined")
        assert stack.sync()["failed"] == 0
        stack.wait_for_edge()  # the caching edge serves the new pages once the invalidations take effect
        page = json.loads(fetch(f"{stack.index_url}{NORMALIZED}/", PIP_ACCEPT)[2])
        assert (page["project-status"], page["files"]) == ({"status": "quarantined"}, [])
        assert json.loads(fetch(stack.index_url, PIP_ACCEPT)[2])["projects"] == []  # the workers told the planner
        assert fetch(front + "/" + entry["url"].removeprefix("../../"))[0] == 404
        assert fetch(entry["provenance"])[0] == 404
        assert pip_download(stack.index_url, PROJECT, tmp_path / "none").returncode != 0
        refused = uv("pip", "install", "--dry-run", "--refresh", "--index-url", stack.index_url, PROJECT, cwd=tmp_path)
        assert refused.returncode != 0
        assert "no versions of attested-demo" in refused.stderr

        fake_index.set_status(PROJECT, "active")
        assert stack.sync()["failed"] == 0
        stack.wait_for_edge()  # the caching edge serves the new pages once the invalidations take effect
        assert [p["name"] for p in json.loads(fetch(stack.index_url, PIP_ACCEPT)[2])["projects"]] == [NORMALIZED]
        assert pip_download(stack.index_url, f"{PROJECT}==1.0", tmp_path / "back").returncode == 0
        assert (tmp_path / "back" / filename).read_bytes() == wheel
        assert fetch(entry["provenance"])[2] == fake_index.provenance_of(PROJECT, filename)


@pytest.mark.parametrize("status", ["deprecated", "archived"])
def test_uv_audit_reports_the_status_it_reads_from_the_mirror(upstream, fake_index, tmp_path, osv_url, status):
    publish(fake_index, "1.0")
    fake_index.set_status(PROJECT, status, "use something else")
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "0"\nrequires-python = ">=3.11"\ndependencies = ["{PROJECT}"]\n'
    )
    with LocalStack(upstream=upstream.url, projects=[PROJECT]) as stack:
        assert stack.sync()["failed"] == 0
        stack.wait_for_edge()  # the caching edge serves the new pages once the invalidations take effect
        audit = uv(
            "audit",
            "--default-index",
            stack.index_url,
            "--service-url",
            osv_url,
            "--output-format",
            "json",
            "--preview-features",
            "audit-command,json-output",
            cwd=tmp_path,
        )
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["adverse_statuses"] == [{"name": NORMALIZED, "status": status, "reason": "use something else"}]
