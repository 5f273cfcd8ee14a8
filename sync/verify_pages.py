"""The page side of a verify: project folders in key order, each project's pages read and checked, the claims they
make on packages/ objects, and the root listing merged with the project folders as both stream by.

Pages are the mirror's own, read strictly (sync/render.py), and tolerant of fields this version does not know.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import ijson

from sync import render
from sync.claims import Claim, claims_of
from sync.layout import PAGE_NAMES, ROOT_HTML_KEY, ROOT_JSON_KEY, STATE_KEY, page_keys
from sync.listing import SortedTable, encode_name
from sync.project_status import is_quarantined
from sync.storage import ObjectNotFound, Storage, StorageError

STATE_HEADER_MAX_BYTES = 64 * 2**20  # the state's first line: its serial and the projects awaiting a retry
ROOT_READ_CHUNK = 256 * 1024


@dataclass
class ProjectOutcome:
    """What one project's pages say: findings as (kind, line, project) and the claims on stored objects."""

    findings: list[tuple[str, str, str | None]] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    quarantined: bool = False  # PEP 792: published, but left out of the root listing


def project_dirs(storage: Storage, after: str = "") -> Iterator[tuple[str, frozenset[str]]]:
    """(name, the page files found) of each folder simple/<name>/ sorting after `after`'s, in key order."""
    start = f"simple/{after}/" if after else ""
    current, found = "", set[str]()
    for info in storage.list("simple/", start_after=start):
        parts = info.key.split("/")
        if len(parts) != 3 or not parts[1] or (after and parts[1] + "/" <= after + "/"):
            continue
        if parts[1] != current:
            if current:
                yield current, frozenset(found)
            current, found = parts[1], set()
        found.add(parts[2])
    if current:
        yield current, frozenset(found)


def read_project(storage: Storage, name: str, found: frozenset[str], *, full: bool) -> ProjectOutcome:
    """The claims of simple/<name>/index.v1_json; with `full`, the project's page findings too."""
    outcome = ProjectOutcome()
    json_key, html_key = page_keys(name)
    if full and (missing := PAGE_NAMES - found):
        line = f"incomplete project: simple/{name}/ lacks {', '.join(sorted(missing))}"
        outcome.findings.append(("lagging", line, name))
    found_json = storage.get_bytes(json_key) if "index.v1_json" in found else None
    if found_json is None:
        return outcome
    try:
        page = render.parse_published_json(found_json[0])
    except ValueError as error:
        if full:
            outcome.findings.append(("problem", f"unreadable page: {json_key}: {error}", None))
        return outcome
    outcome.claims = list(claims_of(page))
    outcome.quarantined = is_quarantined(page)
    if not full:
        return outcome
    if page.normalized != name:
        outcome.findings.append(("problem", f"wrong project: {json_key} is for {page.normalized!r}", None))
    found_html = storage.get_bytes(html_key) if "index.html" in found else None
    if found_html is not None and render.project_html(page) != found_html[0]:
        outcome.findings.append(("lagging", f"pages disagree: {html_key} does not match {json_key}", name))
    return outcome


class RootCheck:
    """The root listing against the project folders, both in key order: `seen` each folder, then `finish`."""

    def __init__(self, storage: Storage, report: Lagging, after: str = ""):
        self.report = report
        self.table = _root_names(storage, report)
        self._listed = iter(self.table or ())
        self._next = self._advance(f"{after}/".encode() if after else b"")

    def _advance(self, past: bytes = b"") -> bytes | None:
        for key, _ in self._listed:
            if key > past:
                return key
        return None

    def seen(self, name: str, *, quarantined: Callable[[], bool] = lambda: False) -> None:
        """Folder simple/<name>/ exists; a quarantined project is not listed, and need not be (`quarantined` is
        asked only about an unlisted one)."""
        if self.table is None:
            return
        key = f"{name}/".encode()
        while self._next is not None and self._next < key:
            self._dangling(self._next)
            self._next = self._advance()
        if self._next == key:
            self._next = self._advance()
        elif not quarantined():
            self.report.lagging(f"unlisted project: simple/{name}/ is not in {ROOT_JSON_KEY}")

    def finish(self) -> None:
        while self._next is not None:
            self._dangling(self._next)
            self._next = self._advance()

    def _dangling(self, key: bytes) -> None:
        name = key.decode().removesuffix("/")
        self.report.lagging(f"dangling root entry: {ROOT_JSON_KEY} lists {name}, which has no pages")


class Lagging(Protocol):
    """Where RootCheck reports (sync.verify.VerifyReport)."""

    def lagging(self, message: str, project: str | None = None) -> None: ...

    def add(self, kind: str, line: str) -> None: ...


def _root_names(storage: Storage, report: Lagging) -> SortedTable | None:
    """The names the root JSON page lists, as `name/` keys (the order of the folders' keys); None when the root
    pages are missing or unreadable (reported)."""
    if storage.head(ROOT_HTML_KEY) is None:
        report.lagging("missing root page: simple/index.v1_json and simple/index.html are both required")
        return None
    try:
        with storage.open(ROOT_JSON_KEY) as stream:
            names = ijson.items(stream, "projects.item.name", buf_size=ROOT_READ_CHUNK)
            return SortedTable(((encode_name(_text(name)) + b"/", b"") for name in names), combine=min)
    except ObjectNotFound:
        report.lagging("missing root page: simple/index.v1_json and simple/index.html are both required")
    except (ValueError, ijson.JSONError) as error:
        report.add("problem", f"unreadable root page: {ROOT_JSON_KEY}: {error}")
    return None


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"project name {value!r:.80} is not a string")
    return value


def retrying(storage: Storage) -> frozenset[str]:
    """The projects the mirror's state says the next run retries, read from the state's first line alone (none when
    the state is absent or unreadable)."""
    try:
        with storage.open(STATE_KEY) as stream:
            header = json.loads(stream.readline(STATE_HEADER_MAX_BYTES))
    except (StorageError, ValueError):
        return frozenset()
    pending = header.get("pending") if isinstance(header, dict) else None
    return frozenset(map(str, pending)) if isinstance(pending, dict) else frozenset()
