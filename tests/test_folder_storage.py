"""The folder backend's own behaviour: names the file system limits, temp files, disk errors, pruning."""

from __future__ import annotations

import errno
import io
import os

import pytest

from sync import folder_storage as folder_module
from sync.folder_storage import FolderStorage
from sync.layout import BINARY
from sync.storage import ChecksumMismatch, StorageError, UnstorableKey
from tests.storage_helpers import put, put_small, sha


@pytest.mark.hostile_class(9)
def test_folder_refuses_a_name_too_long_and_finds_none_stored(tmp_path):
    storage = FolderStorage(tmp_path / "m")
    too_long = "packages/aa/" + "é" * 128 + ".whl"  # 260 bytes
    with pytest.raises(UnstorableKey, match="too long"):
        put(storage, too_long, b"x")
    with pytest.raises(UnstorableKey, match="too long"):
        put_small(storage, too_long, b"x")
    assert storage.head(too_long) is None
    assert storage.get_bytes(too_long) is None
    storage.delete(too_long)  # absent
    with pytest.raises(StorageError, match="no such object"):
        storage.open(too_long)
    assert list(tmp_path.rglob("*.tmp-*")) == []


@pytest.mark.hostile_class(9)
def test_folder_stores_a_name_at_the_file_systems_limit(tmp_path):
    storage = FolderStorage(tmp_path / "m")
    at_limit = "packages/aa/" + "x" * 251 + ".whl"  # 255 bytes: its temp file's name must be shorter
    put(storage, at_limit, b"x", if_none_match=True)
    put_small(storage, "s/" + "y" * 255, b"y")
    assert storage.get_bytes(at_limit)[0] == b"x"


def test_folder_leaves_no_temp_file_and_lists_none(tmp_path):
    folder = FolderStorage(tmp_path / "dest")
    with pytest.raises(ChecksumMismatch):
        put(folder, "p/f.whl", b"data", sha256=sha(b"other"))
    assert [p.name for p in (tmp_path / "dest" / "p").iterdir()] == []
    (tmp_path / "dest" / "p" / ".g.whl.tmp-abc123").write_bytes(b"half")  # as a killed run leaves it
    put(folder, "p/f.whl", b"data")
    assert [info.key for info in folder.list("")] == ["p/f.whl"]
    assert oct((tmp_path / "dest" / "p" / "f.whl").stat().st_mode & 0o777) == "0o644"


def test_folder_disk_full_names_the_key_and_cleans_up(tmp_path, monkeypatch):
    folder = FolderStorage(tmp_path / "dest")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder_module.os, "fsync", full)
    with pytest.raises(StorageError, match=r"p/f\.whl: cannot write .*No space left on device"):
        put(folder, "p/f.whl", b"data")
    with pytest.raises(StorageError, match="No space left on device"):
        put_small(folder, "p/g", b"data")
    assert list((tmp_path / "dest" / "p").iterdir()) == []


def test_folder_prunes_empty_directories_after_delete(tmp_path):
    folder = FolderStorage(tmp_path / "dest")
    put(folder, "packages/aa/bb/cc/f.whl", b"x")
    put(folder, "packages/aa/other", b"y")
    folder.delete("packages/aa/bb/cc/f.whl")
    assert not (tmp_path / "dest" / "packages" / "aa" / "bb").exists()
    assert (tmp_path / "dest" / "packages" / "aa" / "other").exists()


def test_folder_upload_errors_from_the_source_pass_through_unchanged(tmp_path):
    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise TimeoutError("upstream stalled")

    folder = FolderStorage(tmp_path / "dest")
    with pytest.raises(TimeoutError, match="upstream stalled"):
        folder.put_file("f", Broken(), sha256=sha(b""), size=None, content_type=BINARY, cache_control="")
    assert list((tmp_path / "dest").iterdir()) == []


@pytest.mark.parametrize("run_names", [2, 3, 20])  # 20: the folder's 20 names fill one run exactly
def test_a_folder_bigger_than_a_run_lists_in_the_same_order(tmp_path, monkeypatch, run_names):
    """A folder of more names than FOLDER_RUN_NAMES is sorted in runs spilled to disk and merged: the same keys in
    the same order as a folder sorted whole, odd names and sub-folders included."""
    storage = FolderStorage(tmp_path)
    names = ["b", "a", "ä", "z-1", "A", "0", "a.b", "\U0001f600", "x y", "a-"]
    for name in names:
        put_small(storage, f"simple/{name}", name.encode())
        put_small(storage, f"simple/{name}-dir/inner", b"")
    whole = [info.key for info in storage.list("simple/")]
    monkeypatch.setattr(folder_module, "FOLDER_RUN_NAMES", run_names)
    assert [info.key for info in storage.list("simple/")] == whole
    assert [info.key for info in storage.list("simple/", start_after="simple/a.b")] == [
        key for key in whole if key > "simple/a.b"
    ]
    assert sorted(whole) == sorted(f"simple/{name}{inner}" for name in names for inner in ("", "-dir/inner"))
