"""bandersnatch for the comparison: a pinned release in its own venv under build/, and its config per run."""

from __future__ import annotations

import configparser
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

BANDERSNATCH_VERSION = "8.2.0"
REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "build" / "bandersnatch-venv"
EXECUTABLE = VENV / "bin" / "bandersnatch"
PYTHON_312 = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"  # bandersnatch needs Python >= 3.12


def ensure_bandersnatch() -> None:
    """Install bandersnatch (with its S3 plugin) into build/bandersnatch-venv unless that version is there."""
    if EXECUTABLE.exists():
        found = subprocess.run([str(EXECUTABLE), "--version"], check=False, capture_output=True, text=True)
        if found.stdout.split()[-1:] == [BANDERSNATCH_VERSION]:
            return
    if not PYTHON_312.exists():
        raise SystemExit(f"bandersnatch needs Python >= 3.12: {PYTHON_312} is missing (pyenv install 3.12.1)")
    subprocess.run([str(PYTHON_312), "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", f"bandersnatch[s3]=={BANDERSNATCH_VERSION}"], check=True
    )


def bandersnatch_command(
    work_dir: Path,
    upstream: str,
    dest: str,
    *,
    endpoint_url: str | None,
    workers: int,
    live: tuple[Sequence[str], int] | None,
    credentials: dict[str, str],
    json: bool = False,
) -> list[str]:
    """Write a config mirroring `upstream` into `dest` (a folder or s3://bucket/prefix); returns the command.

    `live` is (projects, releases to keep) for an allowlisted mirror of the latest releases of a few projects.
    `json` also mirrors each project's JSON metadata (web/json), which `bandersnatch verify` reads.
    """
    config = configparser.ConfigParser()
    s3 = dest.startswith("s3://")
    config["mirror"] = {
        "directory": "/" + dest.removeprefix("s3://") if s3 else dest,
        "master": upstream,
        "allow-non-https": "true",
        "json": "true" if json else "false",
        "release-files": "true",
        "core-metadata": "true",
        "workers": str(min(workers, 10)),  # bandersnatch refuses more than 10
        "timeout": "60",
        "global-timeout": "3600",
        "stop-on-error": "false",
        "hash-index": "false",
        "simple-format": "ALL",
        "storage-backend": "s3" if s3 else "filesystem",
        "compare-method": "hash",
    }
    if s3:
        config["s3"] = {
            "endpoint_url": endpoint_url or "",
            "aws_access_key_id": credentials["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": credentials["AWS_SECRET_ACCESS_KEY"],
            "region_name": credentials["AWS_DEFAULT_REGION"],
        }
    if live is not None:
        projects, releases = live
        config["plugins"] = {"enabled": "\nallowlist_project\nlatest_release"}
        config["allowlist"] = {"packages": "\n" + "\n".join(projects)}
        config["latest_release"] = {"keep": str(releases)}
    path = work_dir / f"bandersnatch-{uuid.uuid4().hex[:8]}.conf"
    with path.open("w") as file:
        config.write(file)
    return [str(EXECUTABLE), "--config", str(path), "mirror"]
