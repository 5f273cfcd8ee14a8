"""Mirror from a real third-party index server (pypiserver, installed from PyPI) running on loopback."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sync.cli import main

STARTUP_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pypiserver(tmp_path):
    packages = tmp_path / "packages"
    packages.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port), str(packages)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            urllib.request.urlopen(url + "/simple/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("pypiserver did not start")
            time.sleep(0.1)
    yield url, packages
    server.terminate()
    server.wait(timeout=10)


def test_mirror_from_pypiserver_html_only_without_change_feed(pypiserver, tmp_path, capsys):
    url, packages = pypiserver
    contents = {
        "Demo_Pkg-1.0.tar.gz": b"sdist bytes",
        "demo_pkg-1.1-py3-none-any.whl": b"wheel bytes" * 100,
        "other-2.0.tar.gz": b"another project",
    }
    for name, body in contents.items():
        (packages / name).write_bytes(body)
    dest = tmp_path / "mirror"
    assert main(["mirror", "--upstream", url, "--dest", str(dest), "--log-format", "json"]) == 0
    assert main(["verify", "--dest", str(dest)]) == 0
    stored = {p.name: p.read_bytes() for p in (dest / "packages").rglob("*") if p.is_file()}
    assert stored == contents
    json_page = json.loads((dest / "simple" / "demo-pkg" / "index.v1_json").read_text())
    # pypiserver's HTML gives no sizes: the mirror fills them in from what it stored, so the page is a full 1.4
    # (no status marker upstream: the project is active).
    assert json_page["meta"]["api-version"] == "1.4"
    assert json_page["project-status"] == {"status": "active"}
    assert {f["filename"]: (f["hashes"]["sha256"], f["size"]) for f in json_page["files"]} == {
        name: (hashlib.sha256(body).hexdigest(), len(body))
        for name, body in contents.items()
        if name.lower().startswith("demo")
    }

    (packages / "other-2.1.tar.gz").write_bytes(b"a new release")
    assert main(["mirror", "--upstream", url, "--dest", str(dest), "--log-format", "json"]) == 0
    assert (dest / "packages" / "other-2.1.tar.gz").read_bytes() == b"a new release"
    assert main(["verify", "--dest", str(dest)]) == 0
    capsys.readouterr()


def test_verify_reports_a_missing_file(pypiserver, tmp_path, capsys):
    url, packages = pypiserver
    (packages / "solo-1.0.tar.gz").write_bytes(b"solo")
    dest = tmp_path / "mirror"
    assert main(["mirror", "--upstream", url, "--dest", str(dest), "--log-format", "json"]) == 0
    Path(dest / "packages" / "solo-1.0.tar.gz").unlink()
    capsys.readouterr()
    assert main(["verify", "--dest", str(dest)]) == 6
    assert capsys.readouterr().out.strip() == (
        "missing: simple/solo/ names packages/solo-1.0.tar.gz, which is not stored"
    )
