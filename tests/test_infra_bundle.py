"""infra/bundle.py: the Lambda zip is byte-identical across builds and holds sync/ plus the pinned dependencies."""

from __future__ import annotations

import base64
import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from infra.bundle import FIXED_TIME, Bundle, BundleError, build_bundle, write_zip

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_REQUIREMENTS = REPO_ROOT / "requirements" / "runtime.txt"


@pytest.fixture(autouse=True)
def offline_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the internet: uv installs from its cache (filled by `make venv`)."""
    monkeypatch.setenv("UV_OFFLINE", "1")


def copy_of_sync(destination: Path) -> Path:
    """A copy of sync/ with some bytecode that must stay out of the zip."""
    package = destination / "sync"
    shutil.copytree(REPO_ROOT / "sync", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "models.cpython-313.pyc").write_bytes(b"bytecode")
    return package


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Bundle, Bundle]:
    """The same source built twice, into two separate build folders (a snapshot of sync/, so it cannot move)."""
    root = tmp_path_factory.mktemp("bundle")
    source = copy_of_sync(root / "src")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UV_OFFLINE", "1")
        first = build_bundle(source, RUNTIME_REQUIREMENTS, root / "build-a")
        second = build_bundle(source, RUNTIME_REQUIREMENTS, root / "build-b")
    return source, first, second


def test_two_builds_are_byte_identical(built: tuple[Path, Bundle, Bundle]) -> None:
    _, first, second = built
    assert first.path != second.path
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256_base64 == second.sha256_base64
    assert first.sha256_base64 == base64.b64encode(hashlib.sha256(first.path.read_bytes()).digest()).decode()


def test_zip_holds_sync_and_runtime_dependencies_without_bytecode(built: tuple[Path, Bundle, Bundle]) -> None:
    source, bundle, _ = built
    with zipfile.ZipFile(bundle.path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        sync_files = {path.relative_to(source.parent).as_posix() for path in source.rglob("*.py")}
        assert sync_files <= set(names)
        for package in ("urllib3/__init__.py", "packaging/version.py", "boto3/__init__.py"):
            assert package in names
        assert any(name.startswith("aws_lambda_powertools/") for name in names)
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")) or n.startswith("bin/")]
        assert ".lock" not in names
        assert {info.date_time for info in infos} == {FIXED_TIME}
        assert {info.external_attr >> 16 for info in infos} == {0o100644}
        assert archive.read("sync/models.py") == (source / "models.py").read_bytes()


def test_cached_zip_is_reused_without_rebuilding(
    built: tuple[Path, Bundle, Bundle], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, first, _ = built

    def no_install(*_: object) -> None:
        raise AssertionError("the cached zip should have been used")

    monkeypatch.setattr("infra.bundle._install", no_install)
    assert build_bundle(source, RUNTIME_REQUIREMENTS, first.path.parent) == first


def test_a_changed_source_gives_a_new_zip(built: tuple[Path, Bundle, Bundle], tmp_path: Path) -> None:
    _, before, _ = built
    source = copy_of_sync(tmp_path / "src")
    (source / "models.py").write_text((source / "models.py").read_text() + "\n# changed\n")
    after = build_bundle(source, RUNTIME_REQUIREMENTS, before.path.parent)
    assert after.path != before.path
    assert after.sha256_base64 != before.sha256_base64


def test_write_zip_ignores_file_times_and_modes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        root = tmp_path / name / "site"
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "mod.py").write_text("x = 1\n")
        (root / "pkg" / "mod.py").chmod(0o600 if name == "a" else 0o755)
    (tmp_path / "b" / "site" / "pkg" / "mod.py").touch()
    write_zip(tmp_path / "a" / "site", tmp_path / "a.zip")
    write_zip(tmp_path / "b" / "site", tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    source = copy_of_sync(tmp_path / "src")
    with pytest.raises(BundleError, match="source package"):
        build_bundle(tmp_path / "nowhere", RUNTIME_REQUIREMENTS, tmp_path / "build")
    with pytest.raises(BundleError, match="requirements file"):
        build_bundle(source, tmp_path / "missing.txt", tmp_path / "build")


def test_an_uninstallable_requirement_fails_with_uv_s_reason(tmp_path: Path) -> None:
    source = copy_of_sync(tmp_path / "src")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this-package-does-not-exist-anywhere==0.0.1\n")
    with pytest.raises(BundleError, match=r"installing .*requirements\.txt failed"):
        build_bundle(source, requirements, tmp_path / "build")
