"""The CLI contract: flags, one-sentence errors, documented exit codes — run as a real subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sync.cli import EXIT_CODES, build_parser
from sync.config import MirrorConfig, load_config
from sync.lease import acquire
from sync.storage import open_storage
from tests.upstream.server import Fault

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
        env={**os.environ, **(env or {})},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1


def test_mirror_then_verify_from_the_command_line(upstream, tmp_path):
    dest = str(tmp_path / "mirror")
    mirrored = run_cli("mirror", "--upstream", upstream.url, "--dest", dest, "--workers", "4")
    assert mirrored.returncode == 0, mirrored.stderr
    events = mirrored.stderr.splitlines()
    assert any('"event": "run_finished"' in line for line in events)  # JSON lines when not on a terminal
    verified = run_cli("verify", "--dest", dest)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "sound:" in verified.stderr


def test_verify_names_each_problem_and_exits_6(upstream, tmp_path):
    dest = tmp_path / "mirror"
    assert run_cli("mirror", "--upstream", upstream.url, "--dest", str(dest)).returncode == 0
    victim = next(p for p in sorted((dest / "packages").rglob("*")) if p.is_file())
    victim.write_bytes(b"tampered")
    verified = run_cli("verify", "--dest", str(dest))
    assert verified.returncode == 6
    problems = verified.stdout.splitlines()
    key = victim.relative_to(dest).as_posix()
    assert [line.split(":")[0] for line in problems] == ["wrong size" if "size" in problems[0] else "wrong sha256"]
    assert key in problems[0]


def test_bad_flag_is_a_usage_error():
    result = run_cli("mirror", "--dest", "/tmp/x", "--workers", "many")
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_names_the_setting(tmp_path):
    result = run_cli("mirror", "--dest", str(tmp_path), "--workers", "0")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: workers: 0 is not between 1 and 64"


def test_bad_config_file_is_named(tmp_path):
    config = tmp_path / "mirror.toml"
    config.write_text("workerz = 3\n")
    result = run_cli("mirror", "--dest", str(tmp_path / "m"), "--config", str(config))
    assert result.returncode == 2
    assert f"--config {config}: unknown setting(s) workerz" in result.stderr


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('projects = "requests"', "projects = 'requests' must be a list of strings"),
        ('workers = "4"', "workers = '4' must be an integer"),
        ("workers = true", "workers = True must be an integer"),
        ("file_hosts = [1]", "file_hosts = [1] must be a list of strings"),
        ("max_file_size = 1.5", "max_file_size = 1.5 must be an integer"),
        ('lease_ttl = "long"', "lease_ttl = 'long' must be a number"),
    ],
)
def test_config_values_of_the_wrong_type_are_named(tmp_path, line, message):
    config = tmp_path / "mirror.toml"
    config.write_text(line + "\n")
    result = run_cli("mirror", "--dest", str(tmp_path / "m"), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --config {config}: {message}"


def test_config_values_of_the_right_type_are_taken(tmp_path):
    config = tmp_path / "mirror.toml"
    config.write_text('projects = ["Six"]\nworkers = 4\nlease_ttl = 60\ncontact = "ops@example.org"\n')
    assert load_config(config, {"dest": str(tmp_path / "m")}) == MirrorConfig(
        dest=str(tmp_path / "m"), projects=("six",), workers=4, lease_ttl=60, contact="ops@example.org"
    )


def test_unreachable_upstream_exits_3_with_one_sentence(tmp_path):
    result = run_cli("mirror", "--upstream", f"http://127.0.0.1:{closed_port()}", "--dest", str(tmp_path / "m"))
    assert result.returncode == 3
    assert_one_sentence(result.stderr)
    assert "upstream http://127.0.0.1:" in result.stderr


def test_unwritable_destination_exits_4_with_one_sentence(upstream, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("mirror", "--upstream", upstream.url, "--dest", str(blocker / "mirror"))
    assert result.returncode == 4
    assert_one_sentence(result.stderr)
    assert str(blocker) in result.stderr


def test_bad_s3_destination_is_named(tmp_path):
    result = run_cli("verify", "--dest", "s3://")
    assert result.returncode == 4
    assert_one_sentence(result.stderr)
    assert "s3://" in result.stderr


def test_lease_held_exits_5(upstream, tmp_path):
    dest = tmp_path / "mirror"
    lease = acquire(open_storage(str(dest)), owner="nightly-job", ttl=600)
    try:
        result = run_cli("mirror", "--upstream", upstream.url, "--dest", str(dest))
    finally:
        lease.release()
    assert result.returncode == 5
    assert_one_sentence(result.stderr)
    assert "nightly-job" in result.stderr


def test_failed_projects_exit_1_with_a_line_each(upstream, fake_index, tmp_path):
    upstream.inject(r"^/packages/", Fault.status(404), times=1000)
    result = run_cli("mirror", "--upstream", upstream.url, "--dest", str(tmp_path / "mirror"))
    assert result.returncode == 1
    failed = sorted(line.split(":")[1].strip() for line in result.stderr.splitlines() if line.startswith("failed: "))
    assert failed == sorted(p.normalized for p in fake_index.projects() if p.files)


def test_allowlisted_project_missing_upstream_is_not_an_error(upstream, tmp_path):
    result = run_cli("mirror", "--upstream", upstream.url, "--dest", str(tmp_path / "m"), "--project", "nowhere")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [None, "mirror", "verify"])
def test_help_documents_exit_codes(command):
    result = run_cli(*([command] if command else []), "--help")
    assert result.returncode == 0
    for code in EXIT_CODES:
        assert f"  {code:>3}  " in result.stdout


def test_parser_has_the_documented_mirror_contract():
    parser = build_parser()
    args = parser.parse_args(
        [
            "mirror",
            "--upstream",
            "https://example.org",
            "--dest",
            "s3://b/p",
            "--project",
            "a",
            "--project",
            "b",
            "--workers",
            "3",
            "--config",
            "f.toml",
        ]
    )
    assert (args.upstream, args.dest, args.projects, args.workers, str(args.config)) == (
        "https://example.org",
        "s3://b/p",
        ["a", "b"],
        3,
        "f.toml",
    )
