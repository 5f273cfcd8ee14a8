"""The fake PyPI over HTTP: what pypi.org and files.pythonhosted.org answer, plus knobs and injected faults.

Endpoints: `/simple/` and `/simple/<name>/` (PEP 503 HTML / PEP 691 JSON by Accept or `?format=`, API 1.4 as
Warehouse renders it: PEP 592/700/714 fields, PEP 740 `provenance`, PEP 792 `project-status`; strong ETags,
`X-PyPI-Last-Serial`, 301 to the normalized name), `/packages/…` files and their `.metadata`, PEP 740 provenance
documents at `/integrity/<project>/<version>/<filename>/provenance`,
XML-RPC at `POST /pypi` (`changelog_since_serial`, `changelog_last_serial`, `list_packages_with_serial`), and the
legacy JSON API `/pypi/<name>/json` (what bandersnatch reads per project).
Runs in-process on 127.0.0.1 (stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive), one daemon thread per connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
import socket
import socketserver
import struct
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from enum import Enum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.parsers.expat import ExpatError

from packaging.utils import canonicalize_name

from tests.upstream.index import PROJECT_NAME, FakeFile, FakeIndex, FakeProject

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
V1_HTML_TYPE = "application/vnd.pypi.simple.v1+html"
TEXT_HTML_TYPE = "text/html"
# Offers in the server's order of preference on equal quality: plain HTML first, so `*/*` gets HTML as on PyPI.
PAGE_OFFERS = (TEXT_HTML_TYPE, V1_HTML_TYPE, JSON_TYPE)
MEDIA_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_TYPE,
    "application/vnd.pypi.simple.latest+html": V1_HTML_TYPE,
}
CONTENT_TYPE_HEADERS = {TEXT_HTML_TYPE: "text/html; charset=utf-8", V1_HTML_TYPE: V1_HTML_TYPE, JSON_TYPE: JSON_TYPE}
API_VERSION = "1.4"  # Warehouse's, since PEP 792
INTEGRITY_TYPE = "application/vnd.pypi.integrity.v1+json"
XMLRPC_MAX_ROWS = 50_000  # PyPI's cap on one changelog_since_serial answer
PAGE_CACHE_CONTROL = "max-age=600, public"
FILE_CACHE_CONTROL = "max-age=365000000, immutable, public"
SMALL_BODY = 64 * 1024  # bodies up to this size go out in the same write as the headers
PADDING_BLOCK = b"x" * 2**20
PAGE_CACHE_ENTRIES = 4096


class FaultKind(Enum):
    STATUS = "status"
    DELAY = "delay"
    RESET_MID_BODY = "reset_mid_body"
    TRUNCATE = "truncate"
    CORRUPT = "corrupt"
    WRONG_SIZE = "wrong_size"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_HTML = "malformed_html"
    REDIRECT_LOOP = "redirect_loop"
    STALE_PAGE = "stale_page"
    HUGE_PAGE = "huge_page"


# Faults that change how an otherwise normal response goes over the wire.
TRANSPORT_FAULTS = frozenset({FaultKind.RESET_MID_BODY, FaultKind.TRUNCATE, FaultKind.CORRUPT})


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for `UpstreamServer.inject`; build it with the class methods below.

    Page faults (wrong_size, malformed_json, malformed_html, stale_page, huge_page) shape `/simple/` answers only;
    a request on another path consumes them without effect.
    """

    kind: FaultKind
    code: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    bytes_sent: int = 0
    serial_offset: int = 0
    megabytes: float = 0.0

    @classmethod
    def status(cls, code: int, retry_after: int | None = None) -> Fault:
        """Answer `code` with a short text body instead (and `Retry-After: <seconds>` when given)."""
        return cls(FaultKind.STATUS, code=code, retry_after=retry_after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep `seconds` before answering normally (for client read timeouts; keep it short in tests)."""
        return cls(FaultKind.DELAY, seconds=seconds)

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """Send the headers and the first half of the body, then reset the connection (TCP RST)."""
        return cls(FaultKind.RESET_MID_BODY)

    @classmethod
    def truncate(cls, bytes_sent: int) -> Fault:
        """Announce the full Content-Length, send only the first `bytes_sent` bytes (fewer than all), then close."""
        return cls(FaultKind.TRUNCATE, bytes_sent=bytes_sent)

    @classmethod
    def corrupt(cls) -> Fault:
        """Send a body of the right size with its middle byte flipped, so its sha256 is wrong."""
        return cls(FaultKind.CORRUPT)

    @classmethod
    def wrong_size(cls) -> Fault:
        """A JSON page advertises every file's `size` one byte too large (HTML pages carry no size: no effect)."""
        return cls(FaultKind.WRONG_SIZE)

    @classmethod
    def malformed_json(cls) -> Fault:
        """Answer 200 with the JSON content type and the JSON page cut in half (never valid JSON), whatever Accept."""
        return cls(FaultKind.MALFORMED_JSON)

    @classmethod
    def malformed_html(cls) -> Fault:
        """Answer 200 text/html with the HTML page cut inside the last link's `#sha256=` (short hash, no end tags)."""
        return cls(FaultKind.MALFORMED_HTML)

    @classmethod
    def redirect_loop(cls) -> Fault:
        """Answer 302 to the very same URL; inject it `times` >= the client's redirect limit for a real loop."""
        return cls(FaultKind.REDIRECT_LOOP)

    @classmethod
    def stale_page(cls, serial_offset: int) -> Fault:
        """Serve a project page as it was at serial `last_serial - serial_offset` (older files list and serial).

        1 = as before the project's latest change; 404 if the project did not exist yet. The root listing is served
        current.
        """
        return cls(FaultKind.STALE_PAGE, serial_offset=serial_offset)

    @classmethod
    def huge_page(cls, megabytes: float) -> Fault:
        """Pad the negotiated page to `megabytes` MiB while keeping it valid (a JSON key, an HTML comment)."""
        return cls(FaultKind.HUGE_PAGE, megabytes=megabytes)


@dataclass
class _FaultRule:
    pattern: re.Pattern[str]
    fault: Fault
    remaining: int


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it: `path` is percent-decoded and without the query string."""

    method: str
    path: str
    status: int
    headers: Message
    query: str = ""


@dataclass
class _Response:
    status: int
    parts: list[bytes] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return sum(len(part) for part in self.parts)


@dataclass(frozen=True)
class _Request:
    method: str
    target: str  # as sent: path and query, still percent-encoded
    path: str  # percent-decoded
    query: str
    headers: Message
    body: bytes


@dataclass(frozen=True)
class _Rendered:
    body: bytes
    etag: str


def negotiate(accept: str | None, offers: tuple[str, ...] = PAGE_OFFERS) -> str | None:
    """The offer the Accept header prefers (q-values count, order does not; no Accept = `*/*`), None if none fits."""
    ranges: list[tuple[str, float]] = []
    for item in (accept or "*/*").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((MEDIA_ALIASES.get(media.lower(), media.lower()), quality))
    best, best_quality = None, 0.0
    for offer in offers:
        quality = _offer_quality(offer, ranges)
        if quality > best_quality:
            best, best_quality = offer, quality
    return best


def _offer_quality(offer: str, ranges: list[tuple[str, float]]) -> float:
    """q of the most specific media range matching `offer` (RFC 9110 §12.5.1)."""
    by_specificity: dict[int, float] = {}
    for media, quality in ranges:
        if media == offer:
            specificity = 2
        elif media == offer.split("/", maxsplit=1)[0] + "/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        by_specificity[specificity] = max(quality, by_specificity.get(specificity, 0.0))
    return by_specificity[max(by_specificity)] if by_specificity else 0.0


def iso_time(moment: datetime) -> str:
    """PEP 700 upload-time as PyPI writes it: `2024-01-02T03:04:05.123456Z` (naive times are taken as UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def provenance_url(index_base: str, project: FakeProject, dist: FakeFile) -> str | None:
    """Where Warehouse serves a file's PEP 740 provenance (`integrity.provenance`, absolute on the index's host)."""
    if dist.provenance is None:
        return None
    return f"{index_base}/integrity/{project.normalized}/{quote(dist.version)}/{quote(dist.filename)}/provenance"


def render_project_json(project: FakeProject, files_base: str, index_base: str, size_delta: int = 0) -> bytes:
    """The JSON page as Warehouse's `_simple_detail` builds it (API 1.4: PEP 691/700/714/740/792); `size_delta`
    skews every advertised size (the wrong_size fault). A quarantined project lists no files and no versions."""
    files = []
    for dist in project.offered_files:
        metadata: dict[str, str] | bool = (
            {"sha256": dist.metadata_sha256} if dist.metadata_sha256 is not None else False
        )
        files.append(
            {
                "filename": dist.filename,
                "url": files_base + dist.url_path,
                "hashes": {"sha256": dist.sha256},
                "requires-python": dist.requires_python,
                "size": dist.size + size_delta,
                "upload-time": iso_time(dist.upload_time),
                "yanked": dist.yanked,
                "data-dist-info-metadata": metadata,  # PyPI still sends the pre-PEP 714 key, under this name
                "core-metadata": metadata,
                "provenance": provenance_url(index_base, project, dist),
            }
        )
    status: dict[str, str] = {"status": project.status}
    if project.status_reason is not None:  # Warehouse keeps no reason; the spec allows one
        status["reason"] = project.status_reason
    page = {
        "meta": {"api-version": API_VERSION, "_last-serial": project.last_serial},
        "name": project.normalized,
        "versions": list(project.versions),
        "files": files,
        "project-status": status,
    }
    return json.dumps(page, separators=(",", ":")).encode()


def render_legacy_json(project: FakeProject, files_base: str) -> bytes:
    """The legacy JSON API document (`/pypi/<name>/json`): `info`, `last_serial`, `releases` and `urls`."""
    releases: dict[str, list[dict[str, object]]] = {version: [] for version in project.versions}
    for dist in project.files:
        metadata: dict[str, str] | bool = (
            {"sha256": dist.metadata_sha256} if dist.metadata_sha256 is not None else False
        )
        releases[dist.version].append(
            {
                "filename": dist.filename,
                "url": files_base + dist.url_path,
                "digests": {"sha256": dist.sha256, "blake2b_256": dist.blake2b_256},
                "size": dist.size,
                "packagetype": "bdist_wheel" if dist.filename.endswith(".whl") else "sdist",
                "requires_python": dist.requires_python,
                "upload_time": dist.upload_time.strftime("%Y-%m-%dT%H:%M:%S"),
                "upload_time_iso_8601": iso_time(dist.upload_time),
                "yanked": dist.yanked is not False,
                "yanked_reason": dist.yanked if isinstance(dist.yanked, str) else None,
                "core-metadata": metadata,
                "data-dist-info-metadata": metadata,
            }
        )
    latest = project.versions[-1] if project.versions else None
    document = {
        "info": {"name": project.name, "version": latest},
        "last_serial": project.last_serial,
        "releases": releases,
        "urls": releases.get(latest, []) if latest is not None else [],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _html_link(project: FakeProject, dist: FakeFile, files_base: str, index_base: str) -> str:
    """One anchor as Warehouse's `detail.html` writes it, attribute order and spacing included."""
    attributes = ""
    if dist.requires_python:
        attributes += f'data-requires-python="{html.escape(dist.requires_python)}" '
    if dist.yanked is not False:
        reason = dist.yanked if isinstance(dist.yanked, str) else ""
        attributes += f'data-yanked="{html.escape(reason)}" '
    if (metadata_sha256 := dist.metadata_sha256) is not None:
        attributes += f'data-dist-info-metadata="sha256={metadata_sha256}" '
        attributes += f'data-core-metadata="sha256={metadata_sha256}"'
    if (provenance := provenance_url(index_base, project, dist)) is not None:
        attributes += f' data-provenance="{html.escape(provenance)}"'
    href = html.escape(files_base + dist.url_path)
    return f'    <a href="{href}#sha256={dist.sha256}" {attributes}>{html.escape(dist.filename)}</a><br />'


def render_project_html(project: FakeProject, files_base: str, index_base: str) -> bytes:
    """The HTML page as Warehouse's `detail.html` renders it (API 1.4), with its trailing `<!--SERIAL n-->`.

    Warehouse writes `pypi:project-status` always and keeps no reason; a reason given here goes in
    `pypi:project-status-reason`, as the spec has it."""
    title = html.escape(project.normalized)
    status = [f'    <meta name="pypi:project-status" content="{html.escape(project.status)}">']
    if project.status_reason is not None:
        status.append(f'    <meta name="pypi:project-status-reason" content="{html.escape(project.status_reason)}">')
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">',
        *status,
        f"    <title>Links for {title}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {title}</h1>",
        *(_html_link(project, dist, files_base, index_base) for dist in project.offered_files),
        "  </body>",
        "</html>",
        f"<!--SERIAL {project.last_serial}-->",
        "",
    ]
    return "\n".join(lines).encode()


# Project names in the index are PEP 508 names (letters, digits, . _ -): nothing to escape in JSON or HTML, which
# keeps a ~930k-entry root listing cheap to render.
def render_root_json(serial: int, listing: Iterable[tuple[str, str, int]]) -> bytes:
    projects = ",".join(f'{{"name":"{display}","_last-serial":{last}}}' for display, _, last in listing)
    return f'{{"meta":{{"api-version":"{API_VERSION}","_last-serial":{serial}}},"projects":[{projects}]}}'.encode()


def render_root_html(serial: int, listing: Iterable[tuple[str, str, int]]) -> bytes:
    links = "\n".join(f'    <a href="/simple/{normalized}/">{display}</a>' for display, normalized, _ in listing)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>Simple index</title>\n  </head>\n  <body>\n{links}\n  </body>\n</html>\n<!--SERIAL {serial}-->\n"
    ).encode()


def _etag(content_type: str, body: bytes) -> str:
    return '"' + hashlib.blake2b(content_type.encode() + b"\n" + body, digest_size=16).hexdigest() + '"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _text_response(status: int, message: str | None = None, headers: list[tuple[str, str]] | None = None) -> _Response:
    text = message or _phrase(status)
    return _Response(status, [text.encode() + b"\n"], [("Content-Type", "text/plain; charset=utf-8"), *(headers or [])])


def _json_response(status: int, document: dict[str, str]) -> _Response:
    return _Response(status, [json.dumps(document).encode()], [("Content-Type", "application/json")])


def _redirect(status: int, location: str) -> _Response:
    return _text_response(status, f"moved to {location}", [("Location", location)])


class UpstreamServer:
    """A fake PyPI serving `index` on http://127.0.0.1:<free port> until `stop()` (or the end of a `with`).

    Knobs, changeable while it runs: `json_enabled` (False: HTML only, Accept ignored, like old devpi/pypiserver),
    `xmlrpc_enabled` (False: /pypi answers 404), `files_base_url` (None: file URLs in pages point at this server;
    else at that base, e.g. another UpstreamServer over the same index), `etag_enabled`.
    """

    def __init__(
        self,
        index: FakeIndex,
        *,
        json_enabled: bool = True,
        xmlrpc_enabled: bool = True,
        files_base_url: str | None = None,
        etag_enabled: bool = True,
    ):
        self.index = index
        self.json_enabled = json_enabled
        self.xmlrpc_enabled = xmlrpc_enabled
        self.files_base_url = files_base_url
        self.etag_enabled = etag_enabled
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()  # requests log, fault rules, overrides
        self._faults: list[_FaultRule] = []
        self._overrides: dict[str, tuple[bytes, str]] = {}
        self._page_cache: dict[tuple[str, int, str, str], _Rendered] = {}
        self._root_cache: dict[str, tuple[int, _Rendered]] = {}
        self._root_lock = threading.Lock()  # one root render at a time: a PyPI-sized one takes a while
        self._http = _HTTPServer(self)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.simple_url = self.url + "/simple/"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name=f"upstream-{self.url}", daemon=True
        )
        self._stopped = False
        self._thread.start()

    def __enter__(self) -> UpstreamServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._http.shutdown()
        self._http.close_connections()
        self._http.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------- log, faults, overrides
    def count(self, path_prefix: str | None = None, method: str | None = None) -> int:
        """How many logged requests have a path starting with `path_prefix` and (when given) this method."""
        with self._lock:
            return sum(
                1
                for record in self.requests
                if (path_prefix is None or record.path.startswith(path_prefix))
                and (method is None or record.method == method)
            )

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def inject(self, path_regex: str, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` requests whose path (decoded, no query) matches `path_regex` (re.search).

        Rules are tried in the order injected; each request consumes at most one rule use.
        """
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        try:
            pattern = re.compile(path_regex)
        except re.error as error:
            raise ValueError(f"invalid fault path regex {path_regex!r}: {error}") from None
        with self._lock:
            self._faults.append(_FaultRule(pattern, fault, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        """Fault uses injected but not yet consumed."""
        with self._lock:
            return sum(rule.remaining for rule in self._faults)

    def override_path(self, path: str, body: bytes, content_type: str) -> None:
        """Serve `body` verbatim (200, `content_type`) for any request on exactly `path`, e.g. `/simple/`."""
        with self._lock:
            self._overrides[path] = (body, content_type)

    def override_page(self, name: str, body: bytes, content_type: str = TEXT_HTML_TYPE) -> None:
        """Serve `body` verbatim as the page of project `name`, whatever the Accept header (hostile-content tests)."""
        self.override_path(f"/simple/{canonicalize_name(name)}/", body, content_type)

    def clear_overrides(self) -> None:
        with self._lock:
            self._overrides.clear()

    # -------------------------------------------------------------------------------------------- answering
    def respond(self, method: str, target: str, headers: Message, body: bytes) -> tuple[_Response, Fault | None]:
        """The response to one request, and the transport fault to apply while sending it (if any)."""
        parts = urlsplit(target)
        request = _Request(method, target, unquote(parts.path), parts.query, headers, body)
        fault = self._take_fault(request.path)
        if fault is not None and fault.kind is FaultKind.DELAY:
            time.sleep(fault.seconds)
        response = self._route(request, fault)
        with self._lock:
            self.requests.append(RequestRecord(method, request.path, response.status, headers, request.query))
        transport = fault if fault is not None and fault.kind in TRANSPORT_FAULTS else None
        return response, transport

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for rule in self._faults:
                if rule.pattern.search(path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._faults.remove(rule)
                    return rule.fault
        return None

    def _route(self, request: _Request, fault: Fault | None) -> _Response:
        if (replaced := self._replaced_response(request, fault)) is not None:
            return replaced
        if request.path in {"/pypi", "/pypi/"}:
            return self._xmlrpc(request)
        if request.path.startswith("/pypi/"):
            return self._legacy_json(request)
        if request.path.startswith(("/packages/", "/integrity/")):
            return self._file(request) if request.path.startswith("/packages/") else self._provenance(request)
        if request.path == "/simple" or request.path.startswith("/simple/"):
            return self._simple(request, fault)
        return _text_response(404)

    def _replaced_response(self, request: _Request, fault: Fault | None) -> _Response | None:
        """What an injected status or redirect loop, or an overridden path, answers instead of the index."""
        if fault is not None and fault.kind is FaultKind.STATUS:
            retry = [("Retry-After", str(fault.retry_after))] if fault.retry_after is not None else []
            return _text_response(fault.code, f"injected status {fault.code}", retry)
        if fault is not None and fault.kind is FaultKind.REDIRECT_LOOP:
            return _redirect(302, request.target)
        with self._lock:
            override = self._overrides.get(request.path)
        return None if override is None else _Response(200, [override[0]], [("Content-Type", override[1])])

    def _simple(self, request: _Request, fault: Fault | None) -> _Response:
        if request.method not in {"GET", "HEAD"}:
            return _text_response(405, headers=[("Allow", "GET, HEAD")])
        if request.path in {"/simple", "/simple/"}:
            return self._root(request, fault)
        name, slash, tail = request.path.removeprefix("/simple/").partition("/")
        if tail or not PROJECT_NAME.match(name):
            return _text_response(404)
        normalized = canonicalize_name(name)
        if normalized != name or not slash:
            return _redirect(301, f"/simple/{normalized}/" + (f"?{request.query}" if request.query else ""))
        return self._project_page(request, normalized, fault)

    def _project_page(self, request: _Request, normalized: str, fault: Fault | None) -> _Response:
        offset = fault.serial_offset if fault is not None and fault.kind is FaultKind.STALE_PAGE else 0
        project = self.index.page_state(normalized, offset)
        if project is None:
            return _text_response(404)
        content_type = self._negotiate(request)
        if content_type is None:
            return _text_response(406)
        files_base = (self.files_base_url or self.url).rstrip("/")
        if fault is not None and fault.kind is FaultKind.WRONG_SIZE and content_type == JSON_TYPE:
            skewed = render_project_json(project, files_base, self.url, size_delta=1)
            return _Response(200, [skewed], self._page_headers(JSON_TYPE, project.last_serial))

        def render(kind: str) -> _Rendered:
            key = (project.normalized, project.last_serial, kind, files_base)
            cached = self._page_cache.get(key)
            if cached is None:
                body = (
                    render_project_json(project, files_base, self.url)
                    if kind == JSON_TYPE
                    else render_project_html(project, files_base, self.url)
                )
                cached = _Rendered(body, _etag(kind, body))
                if len(self._page_cache) >= PAGE_CACHE_ENTRIES:
                    self._page_cache.clear()
                self._page_cache[key] = cached
            return cached

        return self._page(content_type, render, project.last_serial, request, fault)

    def _root(self, request: _Request, fault: Fault | None) -> _Response:
        if request.path == "/simple":
            return _redirect(301, "/simple/" + (f"?{request.query}" if request.query else ""))
        content_type = self._negotiate(request)
        if content_type is None:
            return _text_response(406)
        serial, _ = self._root_rendered(JSON_TYPE if content_type == JSON_TYPE else TEXT_HTML_TYPE)
        return self._page(content_type, lambda kind: self._root_rendered(kind)[1], serial, request, fault)

    def _root_rendered(self, kind: str) -> tuple[int, _Rendered]:
        """The root listing as (serial, body) in `kind` (JSON or HTML), rendered once per serial."""
        with self._root_lock:
            cached = self._root_cache.get(kind)
            if cached is None or cached[0] != self.index.serial:
                serial, listing = self.index.listing()
                body = render_root_json(serial, listing) if kind == JSON_TYPE else render_root_html(serial, listing)
                cached = (serial, _Rendered(body, _etag(kind, body)))
                self._root_cache[kind] = cached
            return cached

    def _page(
        self, content_type: str, render: Callable[[str], _Rendered], serial: int, request: _Request, fault: Fault | None
    ) -> _Response:
        """A page response in `content_type`, shaped by a page fault if one applies."""
        body_kind = JSON_TYPE if content_type == JSON_TYPE else TEXT_HTML_TYPE
        kind = fault.kind if fault is not None else None
        if kind is FaultKind.MALFORMED_JSON:
            body = render(JSON_TYPE).body
            return _Response(200, [body[: len(body) // 2]], self._page_headers(JSON_TYPE, serial))
        if kind is FaultKind.MALFORMED_HTML:
            body = render(TEXT_HTML_TYPE).body
            hash_at = body.rfind(b"#sha256=")
            cut = hash_at + len(b"#sha256=") + 10 if hash_at >= 0 else len(body) // 2
            return _Response(200, [body[:cut]], self._page_headers(TEXT_HTML_TYPE, serial))
        rendered = render(body_kind)
        page_headers = self._page_headers(content_type, serial)
        if fault is not None and fault.kind is FaultKind.HUGE_PAGE:
            return _Response(200, _padded(rendered.body, body_kind, int(fault.megabytes * 2**20)), page_headers)
        if self.etag_enabled:
            page_headers.append(
                ("ETag", rendered.etag if body_kind == content_type else _etag(content_type, rendered.body))
            )
            if _etag_matches(request.headers.get("If-None-Match"), page_headers[-1][1]):
                return _Response(304, [], page_headers)
        return _Response(200, [rendered.body], page_headers)

    def _page_headers(self, content_type: str, serial: int) -> list[tuple[str, str]]:
        return [
            ("Content-Type", CONTENT_TYPE_HEADERS[content_type]),
            ("X-PyPI-Last-Serial", str(serial)),
            ("Vary", "Accept"),
            ("Cache-Control", PAGE_CACHE_CONTROL),
        ]

    def _negotiate(self, request: _Request) -> str | None:
        if not self.json_enabled:
            return TEXT_HTML_TYPE
        requested = parse_qs(request.query).get("format")
        return negotiate(requested[-1] if requested else request.headers.get("Accept"))

    def _file(self, request: _Request) -> _Response:
        if request.method not in {"GET", "HEAD"}:
            return _text_response(405, headers=[("Allow", "GET, HEAD")])
        found = self.index.file_at(request.path)
        if found is not None:
            body = found.content
        else:
            path = request.path
            owner = self.index.file_at(path.removesuffix(".metadata")) if path.endswith(".metadata") else None
            if owner is None or owner.metadata is None:
                return _text_response(404)
            body = owner.metadata
        return _Response(
            200, [body], [("Content-Type", "application/octet-stream"), ("Cache-Control", FILE_CACHE_CONTROL)]
        )

    def _provenance(self, request: _Request) -> _Response:
        """`/integrity/<project>/<version>/<filename>/provenance` as Warehouse's `provenance_for_file` answers it:
        406 unless Accept allows the integrity type or JSON, 404 without provenance, else the document."""
        if request.method not in {"GET", "HEAD"}:
            return _text_response(405, headers=[("Allow", "GET, HEAD")])
        parts = request.path.removeprefix("/integrity/").split("/")
        if len(parts) != 4 or parts[3] != "provenance":
            return _text_response(404)
        chosen = negotiate(request.headers.get("Accept"), (INTEGRITY_TYPE, "application/json"))
        if chosen is None:
            return _json_response(406, {"message": "Request not acceptable"})
        document = self.index.provenance_of(parts[0], parts[2])
        if document is None:
            return _json_response(404, {"message": f"No provenance available for {parts[2]}"})
        return _Response(200, [document], [("Content-Type", chosen), ("Cache-Control", PAGE_CACHE_CONTROL)])

    def _legacy_json(self, request: _Request) -> _Response:
        if request.method not in {"GET", "HEAD"}:
            return _text_response(405, headers=[("Allow", "GET, HEAD")])
        name, _, tail = request.path.removeprefix("/pypi/").partition("/")
        project = self.index.page_state(name) if tail == "json" and PROJECT_NAME.match(name) else None
        if project is None:
            return _text_response(404)
        body = render_legacy_json(project, (self.files_base_url or self.url).rstrip("/"))
        headers = [
            ("Content-Type", "application/json"),
            ("X-PyPI-Last-Serial", str(project.last_serial)),
            ("Cache-Control", PAGE_CACHE_CONTROL),
        ]
        return _Response(200, [body], headers)

    def _xmlrpc(self, request: _Request) -> _Response:
        if not self.xmlrpc_enabled:
            return _text_response(404)
        if request.method != "POST":
            return _text_response(405, headers=[("Allow", "POST")])
        try:
            params, method = xmlrpc.client.loads(request.body, use_builtin_types=True)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError) as error:
            return _text_response(400, f"malformed XML-RPC request: {error}")
        methods: dict[str, Callable[..., Any]] = {
            "changelog_since_serial": self._changelog_since_serial,
            "changelog_last_serial": lambda: self.index.serial,
            "list_packages_with_serial": self._list_packages_with_serial,
        }
        call = methods.get(method or "")
        try:
            if call is None:
                raise xmlrpc.client.Fault(-32601, f"method {method!r} is not supported")
            try:
                answer = xmlrpc.client.dumps((call(*params),), methodresponse=True, allow_none=True)
            except (TypeError, ValueError) as error:
                raise xmlrpc.client.Fault(-32602, f"invalid parameters for {method}: {error}") from None
        except xmlrpc.client.Fault as fault:
            answer = xmlrpc.client.dumps(fault, methodresponse=True, allow_none=True)
        return _Response(200, [answer.encode()], [("Content-Type", "text/xml; charset=utf-8")])

    def _changelog_since_serial(self, since: int) -> list[list[object]]:
        if not isinstance(since, int):
            raise TypeError(f"serial must be an integer, got {since!r}")
        return [list(row) for row in self.index.changelog_since(since, XMLRPC_MAX_ROWS)]

    def _list_packages_with_serial(self) -> dict[str, int]:
        _, listing = self.index.listing()
        return {display: last for display, _, last in listing}


def _padded(body: bytes, body_kind: str, size: int) -> list[bytes]:
    """`body` grown to `size` bytes by a padding JSON key or HTML comment, as shared 1 MiB blocks (no big copy)."""
    if body_kind == JSON_TYPE:
        head, tail = body[:-1] + b',"_padding":"', b'"}'
    else:
        head, tail = body + b"<!--", b"-->"
    fill = max(size - len(head) - len(tail), 0)
    blocks, rest = divmod(fill, len(PADDING_BLOCK))
    return [head, *([PADDING_BLOCK] * blocks), PADDING_BLOCK[:rest], tail]


_ServerRequest = socket.socket | tuple[bytes, socket.socket]  # what socketserver's type stubs say a request is


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, upstream: UpstreamServer):
        self.upstream = upstream
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, which can be slow and is not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.socket.getsockname()[1]

    def process_request(self, request: _ServerRequest, client_address: Any) -> None:
        if isinstance(request, socket.socket):  # always, on a TCP server
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: _ServerRequest) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: _ServerRequest, client_address: Any) -> None:
        """A client that resets or drops its connection is normal here; print anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Wake every connection thread (idle keep-alives included) so it ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-pypi"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 30  # seconds an idle keep-alive connection is kept

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read `UpstreamServer.requests` instead."""

    def _serve(self) -> None:
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit() or "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._send(_text_response(400, "a request body needs a Content-Length"), None)
            return
        body = self.rfile.read(int(length_header))
        response, transport = cast(_HTTPServer, self.server).upstream.respond(
            self.command, self.path, self.headers, body
        )
        self._send(response, transport)

    def _send(self, response: _Response, transport: Fault | None) -> None:
        length = response.length
        lines = [
            f"HTTP/1.1 {response.status} {_phrase(response.status)}",
            f"Date: {self.date_time_string()}",
            f"Server: {self.server_version}",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        if response.status != 304:
            lines.append(f"Content-Length: {length}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        parts = response.parts if self.command != "HEAD" and response.status != 304 else []
        limit = sum(len(part) for part in parts)
        kind = transport.kind if transport is not None else None
        if kind is FaultKind.CORRUPT and limit:
            corrupted = bytearray(b"".join(parts))
            corrupted[limit // 2] ^= 0xFF
            parts = [bytes(corrupted)]
        elif transport is not None and kind is FaultKind.TRUNCATE:
            limit = min(transport.bytes_sent, max(limit - 1, 0))
        elif kind is FaultKind.RESET_MID_BODY:
            limit //= 2
        try:
            self._write(head, parts, limit)
        except OSError:  # the client went away
            self.close_connection = True
            return
        if kind is FaultKind.TRUNCATE:
            self.close_connection = True
        elif kind is FaultKind.RESET_MID_BODY:
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()  # with a zero linger time: the peer gets a TCP RST

    def _write(self, head: bytes, parts: list[bytes], limit: int) -> None:
        """Send `head`, then the first `limit` bytes of `parts`; small bodies share the headers' write."""
        if parts and limit <= SMALL_BODY:
            self.wfile.write(head + b"".join(parts)[:limit])
            return
        self.wfile.write(head)
        for part in parts:
            if limit <= 0:
                break
            self.wfile.write(memoryview(part)[:limit])
            limit -= len(part)
