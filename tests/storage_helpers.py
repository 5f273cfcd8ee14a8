"""What the storage tests share: a verified put of a file and of a small object, and the sha256 they promise."""

from __future__ import annotations

import hashlib
import io

from sync.layout import BINARY, FILE_CACHE_CONTROL
from sync.storage import Storage


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(
    storage: Storage,
    key: str,
    data: bytes,
    *,
    sha256: str | None = None,
    size: int | None = -1,
    if_none_match: bool = False,
) -> None:
    storage.put_file(
        key,
        io.BytesIO(data),
        sha256=sha256 or sha(data),
        size=len(data) if size == -1 else size,
        content_type=BINARY,
        cache_control=FILE_CACHE_CONTROL,
        if_none_match=if_none_match,
    )


def put_small(storage: Storage, key: str, data: bytes, **conditions) -> str:
    return storage.put_bytes(key, data, content_type="application/json", cache_control="no-store", **conditions)
