"""Audit a mirror: every page names only objects present with the right sha256; list what no page names.

While the destination's lease exists a run is writing, or died writing: the root listing and a project's second page
may then lag behind what is stored; so may the two pages of a project the last run failed (the next run retries it).
Those are reported as pending, not as problems; a page naming a missing or wrong object is a problem whatever the
lease or the state says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sync import render
from sync.files import objects_named
from sync.lease import LEASE_KEY
from sync.mirror import ROOT_HTML_KEY, ROOT_JSON_KEY, page_keys
from sync.project_status import is_quarantined
from sync.state import load_state
from sync.storage import Storage, StorageError

HASH_CHUNK = 1024 * 1024


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # what an unfinished run leaves for the next run to complete
    projects: int = 0
    objects_checked: int = 0
    unfinished: bool = False  # the lease exists: a run is writing, or died writing
    retrying: frozenset[str] = frozenset()  # projects the last run failed, which the next run retries

    @property
    def sound(self) -> bool:
        return not self.problems

    def lagging(self, message: str, project: str | None = None) -> None:
        """A page or listing behind what is stored: pending while a run is unfinished or the project awaits its
        retry, else a problem."""
        (self.pending if self.unfinished or project in self.retrying else self.problems).append(message)


def _sha256_of(storage: Storage, key: str) -> str:
    digest = hashlib.sha256()
    with storage.open(key) as body:
        while chunk := body.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _project_names(storage: Storage, report: VerifyReport) -> Iterator[str]:
    """Project directories under simple/, each checked to hold both pages."""
    pages: dict[str, set[str]] = {}
    for info in storage.list("simple/"):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[1]:
            pages.setdefault(parts[1], set()).add(parts[2])
    for name, found in sorted(pages.items()):
        missing = {"index.html", "index.v1_json"} - found
        if missing:
            report.lagging(f"incomplete project: simple/{name}/ lacks {', '.join(sorted(missing))}", name)
        yield name


def verify_mirror(storage: Storage, *, hashes: bool = True, workers: int = 8) -> VerifyReport:
    """Check pages against stored objects; with `hashes`, re-hash every named object (else compare sizes)."""
    report = VerifyReport(unfinished=storage.head(LEASE_KEY) is not None, retrying=_retrying(storage))
    sizes = {info.key: info.size for info in storage.list("packages/")}
    named: dict[str, tuple[str, int | None, str]] = {}  # key -> (sha256, size, naming project)
    projects = list(_project_names(storage, report))
    quarantined: set[str] = set()  # PEP 792: published, but not in the root listing
    for name in projects:
        report.projects += 1
        json_key, html_key = page_keys(name)
        found_json, found_html = storage.get_bytes(json_key), storage.get_bytes(html_key)
        if found_json is None:
            continue
        try:
            page = render.parse_published_json(found_json[0])
        except ValueError as error:
            report.problems.append(f"unreadable page: {json_key}: {error}")
            continue
        if page.normalized != name:
            report.problems.append(f"wrong project: {json_key} is for {page.normalized!r}")
        quarantined.update([name] if is_quarantined(page) else [])
        if found_html is not None and render.project_html(page) != found_html[0]:
            report.lagging(f"pages disagree: {html_key} does not match {json_key}", name)
        sizes_by_key = {f.key: f.size for f in page.files}
        for key, sha256 in objects_named(page).items():
            named[key] = (sha256, sizes_by_key.get(key), name)
    _check_root(storage, set(projects), quarantined, report)
    to_hash = []
    for key, (sha256, size, project) in sorted(named.items()):
        if key not in sizes:
            report.problems.append(f"missing: simple/{project}/ names {key}, which is not stored")
        elif size is not None and sizes[key] != size:
            report.problems.append(f"wrong size: {key} is {sizes[key]} bytes, simple/{project}/ says {size}")
        elif hashes:
            to_hash.append((key, sha256, project))
    with ThreadPoolExecutor(workers) as pool:
        for (key, sha256, project), actual in zip(
            to_hash, pool.map(lambda item: _safe_sha256(storage, item[0]), to_hash), strict=True
        ):
            report.objects_checked += 1
            if actual != sha256:
                report.problems.append(f"wrong sha256: {key} hashes to {actual}, simple/{project}/ says {sha256}")
    report.orphans = sorted(set(sizes) - set(named))
    return report


def _retrying(storage: Storage) -> frozenset[str]:
    """The projects the mirror's state says the next run retries (none when the state is absent or unreadable)."""
    try:
        state = load_state(storage)
    except StorageError:
        return frozenset()
    return frozenset(state.pending) if state else frozenset()


def _safe_sha256(storage: Storage, key: str) -> str:
    try:
        return _sha256_of(storage, key)
    except StorageError as error:
        return f"unreadable ({error})"


def _check_root(storage: Storage, projects: set[str], quarantined: set[str], report: VerifyReport) -> None:
    found_json, found_html = storage.get_bytes(ROOT_JSON_KEY), storage.get_bytes(ROOT_HTML_KEY)
    if found_json is None or found_html is None:
        report.lagging("missing root page: simple/index.v1_json and simple/index.html are both required")
        return
    try:
        listed = {entry["name"] for entry in json.loads(found_json[0])["projects"]}
    except (ValueError, KeyError, TypeError) as error:
        report.problems.append(f"unreadable root page: {ROOT_JSON_KEY}: {error}")
        return
    for name in sorted(listed - projects):
        report.lagging(f"dangling root entry: {ROOT_JSON_KEY} lists {name}, which has no pages")
    for name in sorted(projects - listed - quarantined):
        report.lagging(f"unlisted project: simple/{name}/ is not in {ROOT_JSON_KEY}")
