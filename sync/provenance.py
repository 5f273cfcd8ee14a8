"""PEP 740 provenance: each file's provenance document, checked and stored beside the file, and the URL pages give.

The mirror stores the document of `packages/…/<filename>` at `packages/…/<filename>.provenance`, served as
`application/vnd.pypi.integrity.v1+json`. Its pages point at the mirror's own copy when the mirror knows its public
base URL (`https://…`, the CDN's), else keep upstream's URL. A document may gain attestations after upload, so every
file's document is fetched again whenever the project's page changes; one that did not change is not written again.

What is checked (the signatures are not: that needs Sigstore's trust root, which clients verifying attestations
hold): the document is JSON of the documented shape, `{"version": 1, "attestation_bundles": [{"publisher": {kind,
claims}, "attestations": [...]}]}`, and every attestation's in-toto statement names this file (by its parsed wheel or
sdist name) and its sha256. A document that fails is left out (the page then says no provenance); an upstream that
cannot be reached fails the project, which keeps its published page and is retried.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from sync.layout import INTEGRITY as INTEGRITY_TYPE
from sync.layout import cache_control_for
from sync.models import DistFile, InvalidInput, ProjectPage
from sync.storage import Storage

if TYPE_CHECKING:
    from sync.upstream import UpstreamClient

LOG = logging.getLogger(__name__)

# The sha256 of the document the mirror holds, in its own JSON pages' file entries (a private key, as `_last-serial`).
PROVENANCE_SHA256_KEY = "_provenance-sha256"
MAX_PROVENANCE_BYTES = 1 * 2**20  # PyPI's documents are a few KB an attestation
MAX_PROVENANCE_URL_LENGTH = 2_048
MAX_ATTESTATIONS = 64  # per document, all bundles together
MAX_STATEMENT_BYTES = 64 * 2**10
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"


def provenance_url(where: str, value: object) -> str | None:
    """A page's `provenance` / `data-provenance` value: None, or an absolute http(s) URL (PEP 740 requires
    absolute); InvalidInput otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_PROVENANCE_URL_LENGTH:
        raise InvalidInput(f"{where}: provenance {value!r:.80} is not a URL of at most {MAX_PROVENANCE_URL_LENGTH}")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise InvalidInput(f"{where}: provenance {value!r:.80} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment or value != value.strip():
        raise InvalidInput(f"{where}: provenance {value!r:.80} is not an absolute http(s) URL")
    return value


def published_url(dist: DistFile, upstream_url: str, public_url: str | None) -> str:
    """The provenance URL a mirrored page gives: the mirror's copy under `public_url`, else upstream's."""
    return upstream_url if public_url is None else f"{public_url}/{quote(dist.provenance_key, safe='/')}"


def check_document(data: bytes, dist: DistFile) -> None:
    """Raise InvalidInput unless `data` is a provenance document (module doc) whose statements all name `dist`."""
    where = f"provenance of {dist.filename!r}"
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise InvalidInput(f"{where}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("version") != 1:
        raise InvalidInput(f"{where}: not a version 1 provenance object")
    bundles = document.get("attestation_bundles")
    if not isinstance(bundles, list) or not bundles:
        raise InvalidInput(f"{where}: attestation_bundles is not a non-empty array")
    attestations: list[object] = []
    for bundle in bundles:
        publisher = bundle.get("publisher") if isinstance(bundle, dict) else None
        if not isinstance(publisher, dict) or not isinstance(publisher.get("kind"), str):
            raise InvalidInput(f"{where}: an attestation bundle has no publisher with a kind")
        if not isinstance(publisher.get("claims", {}), dict | None):
            raise InvalidInput(f"{where}: publisher claims {publisher.get('claims')!r:.80} is not an object")
        found = bundle.get("attestations")
        if not isinstance(found, list) or not found:
            raise InvalidInput(f"{where}: an attestation bundle has no attestations")
        attestations.extend(found)
    if len(attestations) > MAX_ATTESTATIONS:
        raise InvalidInput(f"{where}: {len(attestations)} attestations, more than {MAX_ATTESTATIONS}")
    for attestation in attestations:
        _check_attestation(where, attestation, dist)


def _check_attestation(where: str, attestation: object, dist: DistFile) -> None:
    if not isinstance(attestation, dict) or attestation.get("version") != 1:
        raise InvalidInput(f"{where}: an attestation is not a version 1 attestation object")
    envelope = attestation.get("envelope")
    material = attestation.get("verification_material")
    if not isinstance(envelope, dict) or not isinstance(material, dict):
        raise InvalidInput(f"{where}: an attestation lacks its envelope or verification material")
    if not isinstance(material.get("certificate"), str) or not isinstance(envelope.get("signature"), str):
        raise InvalidInput(f"{where}: an attestation lacks its certificate or signature")
    statement = _statement(where, envelope.get("statement"))
    subjects = statement.get("subject")
    if statement.get("_type") != IN_TOTO_STATEMENT_V1 or not isinstance(subjects, list) or len(subjects) != 1:
        raise InvalidInput(f"{where}: a statement is not an in-toto v1 statement with exactly one subject")
    subject = subjects[0]
    name = subject.get("name") if isinstance(subject, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    sha256 = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(name, str) or not _same_distribution(name, dist.filename):
        raise InvalidInput(f"{where}: a statement is about {name!r:.120}, not this file")
    if not isinstance(sha256, str) or sha256.lower() != dist.sha256:
        raise InvalidInput(f"{where}: a statement names sha256 {sha256!r:.80}, not the file's {dist.sha256}")


def _statement(where: str, encoded: object) -> dict[str, Any]:
    if not isinstance(encoded, str) or len(encoded) > MAX_STATEMENT_BYTES * 4 // 3 + 4:
        raise InvalidInput(f"{where}: an envelope's statement is missing or too large")
    try:
        statement = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidInput(f"{where}: an envelope's statement is not base64-encoded JSON") from None
    if not isinstance(statement, dict):
        raise InvalidInput(f"{where}: an envelope's statement is not a JSON object")
    return statement


def _same_distribution(subject: str, filename: str) -> bool:
    """Whether a statement's subject names `filename`: compared parsed, as the subject may be normalized."""
    return subject == filename or (
        (parsed := _parsed_filename(subject)) is not None and parsed == _parsed_filename(filename)
    )


def _parsed_filename(filename: str) -> tuple[object, ...] | None:
    try:
        if filename.endswith(".whl"):
            return ("wheel", *parse_wheel_filename(filename))
        return ("sdist", *parse_sdist_filename(filename))
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def with_published_hashes(page: ProjectPage, published: ProjectPage | None, public_url: str | None) -> ProjectPage:
    """`page` as the mirror would publish it if no document changed: each file's provenance URL as the mirror
    gives it and the hash of the document held for it (what decides whether the project changed at all)."""
    held = {dist.key: dist.provenance_sha256 for dist in published.files} if published else {}
    return _replaced(
        page,
        lambda dist, url: dataclasses.replace(
            dist, provenance=published_url(dist, url, public_url), provenance_sha256=held.get(dist.key)
        ),
    )


def _replaced(page: ProjectPage, change: Callable[[DistFile, str], DistFile]) -> ProjectPage:
    """`page` with `change(dist, its provenance URL)` for each file that has one."""
    files = tuple(dist if dist.provenance is None else change(dist, dist.provenance) for dist in page.files)
    return dataclasses.replace(page, files=files)


def provenance_objects(page: ProjectPage) -> Iterable[tuple[str, str]]:
    """(key, sha256) of every provenance document a published page says the mirror holds."""
    return (
        (d.provenance_key, d.provenance_sha256)
        for d in page.files
        if d.provenance is not None and d.provenance_sha256 is not None
    )


class ProvenanceMirror:
    """Fetch, check and store the provenance documents of a page's files."""

    def __init__(self, upstream: UpstreamClient, storage: Storage, public_url: str | None, report: Callable[..., None]):
        self.upstream = upstream
        self.storage = storage
        self.public_url = public_url
        self.report = report  # Reporter.event

    def store(self, page: ProjectPage, published: ProjectPage | None, pool: Executor) -> ProjectPage:
        """The page with each file's provenance as published, after storing every document that changed.

        A file whose document is missing upstream (404) or fails the checks is published without provenance.
        UpstreamError or StorageError when a document cannot be fetched or stored: the project then fails.
        """
        held = {dist.key: dist.provenance_sha256 for dist in published.files} if published else {}
        wanted = [dist for dist in page.files if dist.provenance is not None]
        results = dict(zip((d.key for d in wanted), pool.map(lambda d: self._store_one(d, held), wanted), strict=True))
        return _replaced(
            page,
            lambda dist, url: dataclasses.replace(
                dist,
                provenance=None if results[dist.key] is None else published_url(dist, url, self.public_url),
                provenance_sha256=results[dist.key],
            ),
        )

    def _store_one(self, dist: DistFile, held: dict[str, str | None]) -> str | None:
        """The sha256 of the document now stored for `dist`, or None when it has none worth storing."""
        url = dist.provenance or ""
        host = (urlsplit(url).hostname or "").lower()
        if host not in self.upstream.file_hosts:
            reason = f"{url!r} is not on an allowed host"
            self.report("provenance_dropped", level="warning", key=dist.key, reason=reason)
            return None
        data = self.upstream.get_document(url, accept=INTEGRITY_TYPE, limit=MAX_PROVENANCE_BYTES)
        if data is None:
            self.report("provenance_dropped", level="warning", key=dist.key, reason=f"{url} answers 404")
            return None
        try:
            check_document(data, dist)
        except InvalidInput as error:
            self.report("provenance_dropped", level="warning", key=dist.key, reason=str(error))
            return None
        sha256 = hashlib.sha256(data).hexdigest()
        if held.get(dist.key) != sha256:
            self.storage.put_bytes(
                dist.provenance_key,
                data,
                content_type=INTEGRITY_TYPE,
                cache_control=cache_control_for(dist.provenance_key),
            )
        return sha256
