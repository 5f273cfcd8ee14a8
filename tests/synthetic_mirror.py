"""A synthetic mirror written straight into a destination: real pages (sync/render.py) naming small files laid out
as PyPI's file host does (`packages/<blake2b-256 split 2/2/60>/<filename>`), every other file with its core
metadata. Tests write it through the Storage protocol (so S3 records each sha256 as the mirror's PUTs do); the
verify benchmark writes bigger ones faster with `write_folder` and `load_moto`."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sync import render
from sync.layout import (
    BINARY,
    FILE_CACHE_CONTROL,
    PAGE_CACHE_CONTROL,
    ROOT_HTML_KEY,
    ROOT_JSON_KEY,
    content_type_for,
    page_keys,
)
from sync.models import DistFile, ProjectPage
from sync.storage import Storage, put_chunks


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes


def project_name(index: int) -> str:
    return f"synthetic-{index:07d}"


def pypi_key(filename: str, body: bytes) -> str:
    digest = hashlib.blake2b(body, digest_size=32).hexdigest()
    return f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def project(index: int, files: int) -> tuple[ProjectPage, list[StoredObject]]:
    """Project `index` with `files` files (about 40 bytes each): its page and the objects the page names."""
    name = project_name(index)
    dists, objects = [], []
    for number in range(files):
        filename = f"{name.replace('-', '_')}-{number}.0-py3-none-any.whl"
        body = f"{name} file {number}\n".encode()
        key = pypi_key(filename, body)
        metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {number}.0\n".encode() if number % 2 else None
        dists.append(
            DistFile(
                filename=filename,
                url=f"https://files.example.org/{key}",
                sha256=hashlib.sha256(body).hexdigest(),
                key=key,
                size=len(body),
                metadata_sha256=hashlib.sha256(metadata).hexdigest() if metadata else None,
                has_metadata=metadata is not None,
            )
        )
        objects.append(StoredObject(key, body))
        if metadata:
            objects.append(StoredObject(key + ".metadata", metadata))
    return ProjectPage(name, index + 1, tuple(dists), versions=tuple(f"{n}.0" for n in range(files))), objects


def pages_of(page: ProjectPage) -> list[tuple[str, bytes]]:
    json_key, html_key = page_keys(page.normalized)
    return [(json_key, render.project_json(page)), (html_key, render.project_html(page))]


def root_pages(names: list[str]) -> list[tuple[str, Iterator[bytes]]]:
    return [
        (ROOT_JSON_KEY, render.root_json(((n, None) for n in names), None)),
        (ROOT_HTML_KEY, render.root_html((n, None) for n in names)),
    ]


def write_mirror(storage: Storage, projects: int, files: int) -> dict[str, StoredObject]:
    """A sound mirror of `projects` projects through `storage`; returns its objects by key."""
    stored: dict[str, StoredObject] = {}
    for index in range(projects):
        page, objects = project(index, files)
        for obj in objects:
            sha256 = hashlib.sha256(obj.body).hexdigest()
            storage.put_file(
                obj.key,
                io.BytesIO(obj.body),
                sha256=sha256,
                size=None,
                content_type=BINARY,
                cache_control=FILE_CACHE_CONTROL,
            )
            stored[obj.key] = obj
        for key, body in pages_of(page):
            storage.put_bytes(key, body, content_type=content_type_for(key), cache_control=PAGE_CACHE_CONTROL)
    for key, chunks in root_pages([project_name(i) for i in range(projects)]):
        put_chunks(storage, key, chunks, content_type=content_type_for(key), cache_control=PAGE_CACHE_CONTROL)
    return stored


def write_folder(root: Path, projects: int, files: int) -> int:
    """The same mirror written as plain files (no fsync, no temp files): returns the number of objects."""
    count = 0
    for index in range(projects):
        page, objects = project(index, files)
        for key, body in [(obj.key, obj.body) for obj in objects] + pages_of(page):
            path = root / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        count += len(objects)
    for key, chunks in root_pages([project_name(i) for i in range(projects)]):
        (root / key).write_bytes(b"".join(chunks))
    return count


def load_moto(backend: Any, bucket: str, projects: int, files: int) -> int:
    """The same mirror put straight into an in-process moto S3 backend, each object with its SHA256 recorded as a
    PUT naming ChecksumAlgorithm=SHA256 leaves it; returns the number of objects."""
    count = 0

    def put(key: str, body: bytes) -> None:
        stored = backend.put_object(
            bucket, key, body, checksum_value=base64.b64encode(hashlib.sha256(body).digest()).decode()
        )
        stored.checksum_algorithm = "SHA256"

    for index in range(projects):
        page, objects = project(index, files)
        for key, body in [(obj.key, obj.body) for obj in objects] + pages_of(page):
            put(key, body)
        count += len(objects)
    for key, chunks in root_pages([project_name(i) for i in range(projects)]):
        put(key, b"".join(chunks))
    return count
