"""Where the local edge (devstack/edge.py) reads objects from: a mirror folder or an S3 bucket (or moto)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sync.layout import cache_control_for, content_type_for


@dataclass(frozen=True)
class EdgeObject:
    """An object the origin returned: a stream of its bytes and the headers it was stored with."""

    body: BinaryIO
    size: int
    content_type: str
    cache_control: str | None
    etag: str | None


class Origin(Protocol):
    def fetch(self, key: str) -> EdgeObject | None:
        """The object stored under `key`, or None when there is none."""
        ...


class FolderOrigin:
    """Objects from a mirror folder (the sync's folder destination); types and caching derived from the key."""

    def __init__(self, path: Path | str) -> None:
        self.root = Path(path).resolve()
        if not self.root.is_dir():
            raise ValueError(f"origin folder {str(path)!r} does not exist or is not a folder")

    def fetch(self, key: str) -> EdgeObject | None:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        try:
            body = path.open("rb")
        except FileNotFoundError:  # deleted by a sync since the check
            return None
        stat = os.fstat(body.fileno())
        return EdgeObject(
            body=body,
            size=stat.st_size,
            content_type=content_type_for(key),
            cache_control=cache_control_for(key),
            etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
        )


class S3Origin:
    """Objects from an S3 bucket (or moto), served with the Content-Type and Cache-Control they were stored with."""

    def __init__(self, endpoint_url: str | None, bucket: str, prefix: str = "") -> None:
        import boto3  # noqa: PLC0415 - only S3-backed edges need it

        self.bucket = bucket
        self.prefix = prefix
        self._client = boto3.client("s3", endpoint_url=endpoint_url)

    def fetch(self, key: str) -> EdgeObject | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client.exceptions.NoSuchKey:
            return None
        return EdgeObject(
            body=response["Body"],
            size=response["ContentLength"],
            content_type=response.get("ContentType") or content_type_for(key),
            cache_control=response.get("CacheControl"),
            etag=response.get("ETag"),
        )
