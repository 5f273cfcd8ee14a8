"""The sync function's code as a reproducible zip: `sync/` plus the pinned runtime dependencies.

The same inputs give the same bytes on any machine (sorted entries, fixed timestamps and modes, no bytecode, no
installer scripts), so `pulumi preview` with no change shows no diff. Dependencies come from
`requirements/runtime.txt`, installed by uv for Lambda's platform (Python 3.13, aarch64, wheels only). Zips are
cached under `build/lambda/` by a hash of the inputs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.13"
PLATFORM = "aarch64-manylinux_2_28"
FORMAT_VERSION = "2"  # bump when the zip layout changes, so cached zips are rebuilt
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
# Bytecode, console scripts (their shebang names the build machine) and uv's lock file of the target folder.
SKIPPED_PARTS = {"__pycache__", "bin", ".lock"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class BundleError(RuntimeError):
    """The bundle could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256_base64: str  # what Lambda reports as CodeSha256 and Pulumi takes as source_code_hash


def build_bundle(
    source: Path = REPO_ROOT / "sync",
    requirements: Path = REPO_ROOT / "requirements" / "runtime.txt",
    build_dir: Path = REPO_ROOT / "build" / "lambda",
) -> Bundle:
    """The zip of `source` (as a top-level package) and `requirements`, built once per distinct input."""
    if not source.is_dir():
        raise BundleError(f"bundle: source package {source} is not a folder")
    if not requirements.is_file():
        raise BundleError(f"bundle: requirements file {requirements} does not exist")
    key = _inputs_hash(source, requirements)
    target = build_dir / f"sync-{key[:20]}.zip"
    if not target.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bundle-", dir=build_dir) as scratch:
            site = Path(scratch) / "site"
            _install(requirements, site)
            shutil.copytree(source, site / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.py[co]"))
            partial = Path(scratch) / "bundle.zip"
            write_zip(site, partial)
            os.replace(partial, target)  # atomic: concurrent builders of the same inputs agree on the bytes
    digest = hashlib.sha256(target.read_bytes()).digest()
    return Bundle(path=target, sha256_base64=base64.b64encode(digest).decode("ascii"))


def write_zip(root: Path, destination: Path) -> None:
    """Zip every file under `root` in sorted order, with fixed timestamps, modes and compression."""
    files = sorted(
        (path.relative_to(root).as_posix(), path)
        for path in root.rglob("*")
        if path.is_file()
        and not SKIPPED_PARTS.intersection(path.relative_to(root).parts)
        and not path.name.endswith(SKIPPED_SUFFIXES)
    )
    with zipfile.ZipFile(destination, "w") as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.external_attr = (0o100000 | FILE_MODE) << 16  # regular file, rw-r--r--
            info.create_system = 3  # unix, whatever the build machine
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=6)


def _inputs_hash(source: Path, requirements: Path) -> str:
    digest = hashlib.sha256(f"{FORMAT_VERSION} {PYTHON_VERSION} {PLATFORM}\n".encode())
    entries = [(f"req/{requirements.name}", requirements)]
    entries += [
        (f"src/{path.relative_to(source).as_posix()}", path)
        for path in source.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(SKIPPED_SUFFIXES)
    ]
    for name, path in sorted(entries):
        digest.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _uv() -> str:
    beside_python = Path(sys.executable).parent / "uv"
    found = str(beside_python) if beside_python.exists() else shutil.which("uv")
    if found is None:
        raise BundleError("bundle: uv not found (make venv installs it into .venv/bin)")
    return found


def _install(requirements: Path, target: Path) -> None:
    command = [
        _uv(),
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--python-version",
        PYTHON_VERSION,
        "--python-platform",
        PLATFORM,
        "--only-binary",
        ":all:",
        "--no-compile",
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603  # fixed argv
    if result.returncode != 0:
        raise BundleError(f"bundle: installing {requirements} failed: {result.stderr.strip()[-2000:]}")


def main() -> None:
    """`python -m infra.bundle`: build the zip (fetching the wheels into uv's cache once) and print it."""
    try:
        bundle = build_bundle()
    except BundleError as error:
        sys.exit(str(error))
    print(f"{bundle.path.relative_to(REPO_ROOT)} sha256={bundle.sha256_base64}")


if __name__ == "__main__":
    main()
