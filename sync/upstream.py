"""Client for the upstream index: project pages (PEP 691 JSON or PEP 503 HTML), the root listing, the XML-RPC change
feed and file downloads — with bounded retries, a polite User-Agent, ETag reuse and strict checks on what comes back.

Bad file entries (unsafe names, foreign hosts, missing or malformed hashes, wrong JSON types) are dropped from the
page and logged: leaving one file out only hides it from installers, while refusing the whole page would block every
other file of the project for good. The page itself is refused (InvalidInput) when its structure is wrong, when two
entries claim the same storage key, or when every entry was dropped — publishing such a page would delete what the
mirror holds on the word of a broken upstream.
"""

from __future__ import annotations

import codecs
import importlib.metadata
import logging
import math
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from sync.config import PYPI_FILE_HOST
from sync.filters import file_version
from sync.layout import FILES_PREFIX, HTML_PAGE_V1, JSON_PAGE, edge_path, hashed_file_key
from sync.listing import ProjectListing
from sync.models import (
    MAX_SERIAL,
    SHA256_HEX,
    DistFile,
    InvalidInput,
    ProjectPage,
    check_serial,
    normalize_project_name,
)
from sync.project_status import REASON_META, STATUS_META, status_from_json, status_from_meta
from sync.provenance import PROVENANCE_SHA256_KEY, provenance_url
from sync.safe_parse import MAX_LINKS_COST, VALUE_COST, feed_bounded, json_listing_values, load_json, load_xmlrpc
from sync.transport import (
    MAX_RETRY_AFTER,
    READ_CHUNK,
    REQUEST_DEADLINE,
    Response,
    Transport,
    UpstreamError,
    allowed_origins,
    origin_of,
)

LOG = logging.getLogger(__name__)
__all__ = ["UpstreamError"]  # defined in sync.transport, raised and caught under this module's name

PROJECT_URL = "https://github.com/pypi-cdn/pypi-cdn"
HTML_PAGE_TYPES = frozenset({"text/html", HTML_PAGE_V1})
PAGE_ACCEPT = f"{JSON_PAGE}, {HTML_PAGE_V1};q=0.2, text/html;q=0.01"
SUPPORTED_API_MAJOR = "1"
SERIAL_HEADER = "X-PyPI-Last-Serial"

MAX_PAGE_SIZE = 64 * 2**20  # a project page or one XML-RPC answer (parsing it is bounded too: sync.safe_parse)
MAX_LISTING_SIZE = 512 * 2**20  # the root listing: PyPI's JSON one is ~50 MB
STALE_PAGE_ATTEMPTS = 4  # fetches of a page older than the serial the feed announced before StalePage
MAX_LABEL_LENGTH = 1024  # characters of a link's text kept: a longer one is no file or project name anyway
LINK_COST = 300  # bytes a kept link takes besides its attributes (dict, tuple, label): for _LinkParser.cost

PAGE_STATUSES = frozenset({200, 304, 404})
NO_XMLRPC_STATUSES = frozenset({404, 405, 501})
XMLRPC_METHOD_NOT_FOUND = -32601
CHANGELOG_PAGE_ROWS = 50_000  # PyPI's cap on one changelog_since_serial answer: a full answer means "ask again"
MAX_CHANGELOG_CALLS = 200

MAX_FILENAME_LENGTH = 255
MAX_KEY_BYTES = 900  # S3 allows 1024 for the whole key: room for a destination prefix and ".metadata"
UNSAFE_CHARACTERS = frozenset({"/", "\\", "\x7f", *map(chr, range(32))})
UNSAFE_TEXT = frozenset(map(chr, range(32))) - {"\t", "\n", "\r"} | {"\x7f"}


class ProjectNotFound(UpstreamError):
    """The project page answers 404: the project was deleted upstream."""


class StalePage(UpstreamError):
    """The page stays older than the serial the caller expects, even after cache-busting retries."""


# (URL as the page wrote it, filename, sha256) -> (URL to fetch, storage key); raises InvalidInput.
Locate = Callable[[str, str, str], tuple[str, str]]


def client_version() -> str:
    try:
        return importlib.metadata.version("pypi-cdn")
    except importlib.metadata.PackageNotFoundError:  # running from a bundle without the dist-info
        return "unknown"


@dataclass(frozen=True)
class _Fetched:
    status: int
    url: str  # after redirects
    body: bytearray  # read into one buffer: joining chunks would hold a page twice
    content_type: str
    etag: str | None
    serial: int | None  # from the X-PyPI-Last-Serial header


class UpstreamClient:
    """Talks to one upstream index (`base_url` is the host root: pages at /simple/, XML-RPC at /pypi)."""

    def __init__(
        self,
        base_url: str,
        *,
        contact: str | None = None,
        max_connections: int = 10,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        retries: int = 5,
        backoff: float = 0.5,
        file_hosts: Iterable[str] = (),
        max_page_size: int = MAX_PAGE_SIZE,
        max_listing_size: int = MAX_LISTING_SIZE,
        max_retry_after: float = MAX_RETRY_AFTER,
        deadline: float = REQUEST_DEADLINE,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.simple_url = self.base_url + "/simple/"
        self.xmlrpc_url = self.base_url + "/pypi"
        default_hosts = [PYPI_FILE_HOST] if parts.hostname == "pypi.org" else []
        own_origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        # Where files and redirects may lead: scheme, host and port (transport.allowed_origins).
        self.file_hosts = frozenset(host.lower() for host in (own_origin, *default_hosts, *file_hosts))
        self.retries = retries
        self.backoff = backoff
        self.max_page_size = max_page_size
        self.max_listing_size = max_listing_size
        contact_part = f"; {contact}" if contact else ""
        self.user_agent = f"pypi-cdn/{client_version()} (+{PROJECT_URL}{contact_part})"
        self._transport = Transport(
            allowed_origins(self.file_hosts),
            user_agent=self.user_agent,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries=retries,
            backoff=backoff,
            max_retry_after=max_retry_after,
            deadline=deadline,
        )

    # ------------------------------------------------------------------------------------------ public API
    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far, retries and redirects included."""
        return self._transport.requests_made

    def get_project(self, name: str, *, etag: str | None = None, min_serial: int | None = None) -> ProjectPage | None:
        """The project's page, or None when upstream answers 304 to `etag`.

        A page (or 304) whose serial is below `min_serial` is fetched again with a cache-busting query, then
        StalePage; so is a 404, once. A page without any serial (not PyPI) cannot be checked and is taken as current.
        """
        normalized = normalize_project_name(name)
        url = f"{self.simple_url}{normalized}/"
        headers = {"Accept": PAGE_ACCEPT} | ({"If-None-Match": etag} if etag else {})
        serial: int | None = None
        for attempt in range(STALE_PAGE_ATTEMPTS):
            if attempt:
                self._pause(attempt - 1)
            target = f"{url}?t={time.time_ns()}" if attempt else url
            fetched = self._fetch("GET", target, headers, accepted=PAGE_STATUSES, limit=self.max_page_size)
            if fetched.status == 404:
                if min_serial is None or attempt:
                    raise ProjectNotFound(f"{url}: project {normalized!r} not found upstream (404)")
                continue  # maybe a cached 404 from before the project was created: ask past the cache once
            if fetched.status == 304:
                serial = fetched.serial
                if min_serial is None or serial is None or serial >= min_serial:
                    return None
                continue
            page = self._parse_project(fetched, normalized)
            serial = page.last_serial
            if min_serial is None or serial is None or serial >= min_serial:
                return page
        raise StalePage(f"{url}: serial {serial} is still older than {min_serial} after {STALE_PAGE_ATTEMPTS} attempts")

    def list_projects(self) -> ProjectListing:
        """Every project of the root listing: normalized name -> its last serial (None from an HTML listing).

        The listing is parsed as it streams in and kept compact, so PyPI's ~930,000 projects fit in tens of MB.
        """

        def read(response: Response) -> ProjectListing:
            content_type = response.headers.get("Content-Type", "")
            if _media_type(content_type) == JSON_PAGE:
                entries = _listing_from_json(response)
            else:
                entries = ((name, None) for name in _listing_from_html(response, _charset(content_type)))
            return ProjectListing(self._normalized(entries))

        try:
            return self._transport.read_retrying(
                "GET",
                self.simple_url,
                {"Accept": PAGE_ACCEPT},
                accepted=frozenset({200}),
                read=read,
                limit=self.max_listing_size,
            )
        except InvalidInput as error:
            raise UpstreamError(f"{self.simple_url}: {error}") from None

    def _normalized(self, entries: Iterable[tuple[str, int | None]]) -> Iterator[tuple[str, int | None]]:
        for name, serial in entries:
            try:
                yield normalize_project_name(name), serial
            except InvalidInput as error:
                LOG.warning("%s: skipping listed project: %s", self.simple_url, error)

    def changelog_since(self, serial: int) -> list[tuple[str, int]] | None:
        """(project name, serial) of every change after `serial`, oldest first; None without XML-RPC upstream."""
        events = self.changelog_events_since(serial)
        return None if events is None else [(name, change_serial) for name, change_serial, _ in events]

    def changelog_events_since(self, serial: int) -> list[tuple[str, int, float]] | None:
        """changelog_since with each change's upstream Unix time: (project name, serial, time), oldest first.

        Asks again while an answer is full (PyPI caps one at 50,000 rows), at most MAX_CHANGELOG_CALLS times: a
        truncated result is still correct, as the caller only advances to the serials it received.
        """
        events: list[tuple[str, int, float]] = []
        since = serial
        for _ in range(MAX_CHANGELOG_CALLS):
            rows = self._xmlrpc("changelog_since_serial", since)
            if rows is None:
                return None
            if not isinstance(rows, list):
                raise UpstreamError(f"{self.xmlrpc_url}: changelog_since_serial answered {type(rows).__name__}")
            batch = [event for row in rows if (event := self._changelog_event(row)) is not None]
            events.extend(batch)
            if len(rows) < CHANGELOG_PAGE_ROWS:
                break
            newest = max((change_serial for _, change_serial, _ in batch), default=since)
            if newest <= since:
                raise UpstreamError(f"{self.xmlrpc_url}: changelog_since_serial({since}) made no progress")
            since = newest
        return events

    def last_serial(self) -> int | None:
        """The upstream's newest serial (XML-RPC changelog_last_serial); None without XML-RPC."""
        serial = self._xmlrpc("changelog_last_serial")
        if serial is None:
            return None
        try:
            return check_serial(f"{self.xmlrpc_url}: changelog_last_serial answered", serial)
        except InvalidInput as error:
            raise UpstreamError(str(error)) from None

    def get_document(self, url: str, *, accept: str, limit: int) -> bytes | None:
        """A small document (at most `limit` bytes) such as a PEP 740 provenance object; None when it answers 404."""
        fetched = self._fetch("GET", url, {"Accept": accept}, accepted=frozenset({200, 404}), limit=limit)
        return None if fetched.status == 404 else bytes(fetched.body)

    @contextmanager
    def open_file(self, url: str) -> Iterator[Response]:
        """A file's body as a raw (undecoded) binary stream; UpstreamError unless it answers 200 after retries.
        Its deadline grows with its Content-Length (transport.MIN_TRANSFER_RATE)."""
        with self._transport.response("GET", url, {}, decode_content=False) as response:
            if response.status != 200:
                raise UpstreamError(f"{url}: HTTP {response.status}{self._transport.after_retries(response.status)}")
            yield response

    # ------------------------------------------------------------------------------------------- transport
    def _pause(self, attempt: int) -> None:
        self._transport.pause(attempt)

    def _fetch(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        accepted: frozenset[int],
        limit: int,
        body: bytes | None = None,
    ) -> _Fetched:
        """A whole response of at most `limit` bytes with a status in `accepted` (else UpstreamError)."""

        def read(response: Response) -> _Fetched:
            content = response.read_all() if response.status == 200 else bytearray()
            return _Fetched(
                response.status,
                response.url,
                content,
                response.headers.get("Content-Type", ""),
                response.headers.get("ETag"),
                _header_serial(url, response.headers.get(SERIAL_HEADER)),
            )

        return self._transport.read_retrying(method, url, headers, accepted=accepted, read=read, limit=limit, body=body)

    # ---------------------------------------------------------------------------------------------- pages
    def _parse_project(self, fetched: _Fetched, normalized: str) -> ProjectPage:
        media = _media_type(fetched.content_type)
        locate = http_locator(fetched.url, normalized, self.file_hosts)
        if media == JSON_PAGE:
            document = load_json(fetched.body, f"page of {normalized!r}")  # empties the body: never held twice
            return parse_json_page(
                document, project=normalized, locate=locate, strict=False, serial=fetched.serial, etag=fetched.etag
            )
        if media in HTML_PAGE_TYPES or not media:
            return parse_html_page(
                _decoded(fetched),
                project=normalized,
                page_url=fetched.url,
                locate=locate,
                serial=fetched.serial,
                etag=fetched.etag,
            )
        raise UpstreamError(f"{fetched.url}: unexpected Content-Type {fetched.content_type!r} for a project page")

    # --------------------------------------------------------------------------------------------- XML-RPC
    def _xmlrpc(self, method: str, *params: int) -> Any:
        """The result of one XML-RPC call; None when the upstream has no XML-RPC or not this method."""
        request = _xmlrpc_request(method, params)
        fetched = self._fetch(
            "POST",
            self.xmlrpc_url,
            {"Content-Type": "text/xml"},
            body=request,
            accepted=NO_XMLRPC_STATUSES | {200},
            limit=self.max_page_size,
        )
        if fetched.status in NO_XMLRPC_STATUSES:
            return None
        try:
            params = load_xmlrpc(fetched.body, f"answer to {method}")
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == XMLRPC_METHOD_NOT_FOUND:
                return None
            raise UpstreamError(f"{self.xmlrpc_url}: {method} failed: {fault.faultString}") from None
        except InvalidInput as error:
            raise UpstreamError(f"{self.xmlrpc_url}: malformed answer to {method}: {error}") from None
        if len(params) != 1:
            raise UpstreamError(f"{self.xmlrpc_url}: malformed answer to {method}: {len(params)} values, not 1")
        return params[0]

    def _changelog_event(self, row: object) -> tuple[str, int, float] | None:
        """(name, serial, Unix time) of a [name, version, timestamp, action, serial] row; None (and one log line)
        for a malformed row, which is skipped: one bad row must not stop the feed for every project."""
        if isinstance(row, list | tuple) and len(row) >= 5:
            name, timestamp, serial = row[0], row[2], row[4]
            if (
                isinstance(name, str)
                and type(serial) is int
                and 0 <= serial < MAX_SERIAL
                and type(timestamp) in (int, float)
                and math.isfinite(timestamp)
            ):
                return name, serial, float(timestamp)
        LOG.warning("%s: skipping malformed changelog row %.200r", self.xmlrpc_url, row)
        return None


# ------------------------------------------------------------------------------------------------ parsing
def http_locator(page_url: str, project: str, hosts: Iterable[str]) -> Locate:
    """Resolve file URLs against the page, allow only the origins `hosts` name (transport.allowed_origins), and store
    each file at upstream's path: its URL path when that starts with /packages/ (PyPI's layout), else
    packages/<sha256 split 2/2/60>/<filename>."""

    origins = allowed_origins(hosts)

    def locate(raw_url: str, filename: str, sha256: str) -> tuple[str, str]:
        url = urldefrag(urljoin(page_url, raw_url)).url
        parts = urlsplit(url)
        if origin_of(url) not in origins:
            raise InvalidInput(f"{project}: file {filename!r}: URL {raw_url!r} is not on an allowed host and port")
        path = unquote(parts.path)
        if path.rsplit("/", 1)[-1] != filename:
            raise InvalidInput(f"{project}: file {filename!r}: URL {raw_url!r} names another file")
        key = path[1:] if path.startswith(edge_path(FILES_PREFIX)) else hashed_file_key(sha256, filename)
        check_key(project, filename, key)
        return url, key

    return locate


def parse_json_page(
    document: object,
    *,
    project: str | None,
    locate: Locate,
    strict: bool,
    serial: int | None = None,
    etag: str | None = None,
) -> ProjectPage:
    """A PEP 691/700/714 JSON page. `project` (normalized) must match its name when given; `serial` is the header's,
    used when the page has no `_last-serial`. Bad file entries raise when `strict`, else are dropped (module doc)."""
    where = f"page of {project!r}" if project else "page"
    page: dict[str, Any] = _expect(document, dict, where, "the page")
    meta = _expect(page.get("meta"), dict, where, "meta")
    _check_api_version(meta.get("api-version"), where)
    name = _expect(page.get("name"), str, where, "name")
    normalized = normalize_project_name(name)
    if project is not None and normalized != project:
        raise InvalidInput(f"{where}: it is the page of {name!r}")
    page_serial = _serial(where, meta.get("_last-serial", serial))
    entries = _expect(page.get("files"), list, where, "files")
    files = _collect(normalized, entries, lambda entry: _dist_from_json(normalized, entry, locate), strict)
    versions = page.get("versions")
    if versions is None:
        found = _versions_of(files)
    else:
        listed = _expect(versions, list, where, "versions")
        if not all(isinstance(v, str) for v in listed):
            raise InvalidInput(f"{where}: versions must be strings, got {listed!r}")
        found = tuple(listed)
    status = status_from_json(where, page.get("project-status"))
    return ProjectPage(normalized, page_serial, files, found, etag, status)


def parse_html_page(
    text: str | Iterable[str],
    *,
    project: str,
    page_url: str,
    locate: Locate,
    serial: int | None = None,
    etag: str | None = None,
) -> ProjectPage:
    """A PEP 503/592/658/714 HTML page (`project` normalized), as one text or its chunks; bad links are dropped
    (module doc)."""
    parser = _LinkParser()
    where = f"page of {project!r}"
    feed_bounded(parser, [text] if isinstance(text, str) else text, where)
    if not parser.complete:
        raise InvalidInput(f"{where}: the HTML ends before </body> or </html> (truncated?)")
    _check_api_version(parser.repository_version or "1.0", where)
    base = urljoin(page_url, parser.base_href) if parser.base_href else page_url
    links = [(attrs, label) for attrs, label in parser.links if attrs.get("href")]
    files = _collect(project, links, lambda link: _dist_from_html(project, link[0], link[1], base, locate), False)
    status = status_from_meta(where, parser.status_meta)
    return ProjectPage(project, serial, files, _versions_of(files), etag, status)


class _LinkParser(HTMLParser):
    """Collects anchors (attributes and text), `<base href>`, the repository-version meta, and whether it ended."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[dict[str, str | None], str]] = []
        self.base_href: str | None = None
        self.repository_version: str | None = None
        self.status_meta: dict[str, str | None] = {}  # PEP 792 meta name -> content, the first of each
        self.complete = False
        self._anchor: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.cost = 0  # bytes the kept links take, about: InvalidInput past safe_parse.MAX_LINKS_COST

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self._anchor, self._text = values, []
        elif tag == "base" and self.base_href is None:
            self.base_href = values.get("href")
        elif tag == "meta" and values.get("name") == "pypi:repository-version":
            self.repository_version = values.get("content")
        elif tag == "meta" and (name := values.get("name")) in (STATUS_META, REASON_META):
            self.status_meta.setdefault(name, values.get("content"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            label = "".join(self._text).strip()
            attributes = sum(VALUE_COST + len(name) + len(value or "") for name, value in self._anchor.items())
            self.cost += LINK_COST + len(label) + attributes
            if self.cost > MAX_LINKS_COST:
                raise InvalidInput(f"its links would take over {MAX_LINKS_COST >> 20} MiB")
            self.links.append((self._anchor, label))
            self._anchor = None
        elif tag in ("body", "html"):
            self.complete = True

    def handle_data(self, data: str) -> None:
        if self._anchor is not None and sum(map(len, self._text)) < MAX_LABEL_LENGTH:
            self._text.append(data[:MAX_LABEL_LENGTH])


def _collect(project: str, entries: list[Any], make: Callable[[Any], DistFile], strict: bool) -> tuple[DistFile, ...]:
    """Build each file; drop (and log) or raise on bad ones; refuse duplicate keys and all-bad pages."""
    files: list[DistFile] = []
    claimed: dict[str, str] = {}
    problems: list[str] = []
    for entry in entries:
        try:
            dist = make(entry)
        except InvalidInput as error:
            if strict:
                raise
            LOG.warning("dropping a file entry: %s", error)
            problems.append(str(error))
            continue
        for key in (dist.key, dist.metadata_key) if dist.has_metadata else (dist.key,):
            if key in claimed:
                raise InvalidInput(f"{project}: files {claimed[key]!r} and {dist.filename!r} both map to {key!r}")
            claimed[key] = dist.filename
        files.append(dist)
    if problems and not files:
        raise InvalidInput(f"{project}: every file entry was rejected, e.g. {problems[0]}")
    return tuple(files)


def _dist_from_json(project: str, entry: object, locate: Locate) -> DistFile:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{project}: file entry {entry!r} is not an object")
    filename = check_filename(project, entry.get("filename"))
    where = f"{project}: file {filename!r}"
    hashes = _expect(entry.get("hashes"), dict, where, "hashes")
    sha256 = check_sha256(where, hashes.get("sha256"))
    url, key = locate(_expect(entry.get("url"), str, where, "url"), filename, sha256)
    size = entry.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInput(f"{where}: size {size!r} is not a non-negative integer")
    upload_time = _optional_text(where, "upload-time", entry.get("upload-time"))
    if upload_time is not None:
        try:
            datetime.fromisoformat(upload_time)
        except ValueError:
            raise InvalidInput(f"{where}: upload-time {upload_time!r} is not an ISO 8601 time") from None
    yanked = entry.get("yanked", False)
    if not isinstance(yanked, bool | str):
        raise InvalidInput(f"{where}: yanked {yanked!r} is neither a boolean nor a reason")
    metadata = entry.get("core-metadata", entry.get("dist-info-metadata", entry.get("data-dist-info-metadata")))
    has_metadata, metadata_sha256 = _json_metadata(where, metadata)
    return DistFile(
        filename=filename,
        url=url,
        sha256=sha256,
        key=key,
        size=size,
        upload_time=upload_time,
        requires_python=_optional_text(where, "requires-python", entry.get("requires-python")) or None,
        yanked=_yank(where, yanked),
        metadata_sha256=metadata_sha256,
        has_metadata=has_metadata,
        provenance=_provenance(where, entry.get("provenance")),
        provenance_sha256=_provenance_sha256(where, entry.get(PROVENANCE_SHA256_KEY)),
    )


def _dist_from_html(project: str, attrs: dict[str, str | None], label: str, base: str, locate: Locate) -> DistFile:
    filename = check_filename(project, label)
    where = f"{project}: file {filename!r}"
    href = attrs["href"] or ""
    absolute = urljoin(base, href)  # against <base href> when the page has one
    algorithm, _, digest = urldefrag(absolute).fragment.partition("=")
    if algorithm != "sha256":
        raise InvalidInput(f"{where}: link {href!r} has no #sha256= hash")
    sha256 = check_sha256(where, digest)
    url, key = locate(absolute, filename, sha256)
    yanked: bool | str = False
    if "data-yanked" in attrs:
        yanked = _yank(where, attrs["data-yanked"] or True)
    metadata_attr = "data-core-metadata" if "data-core-metadata" in attrs else "data-dist-info-metadata"
    has_metadata, metadata_sha256 = False, None
    if metadata_attr in attrs:
        has_metadata, metadata_sha256 = _html_metadata(where, attrs[metadata_attr])
    return DistFile(
        filename=filename,
        url=url,
        sha256=sha256,
        key=key,
        requires_python=_optional_text(where, "data-requires-python", attrs.get("data-requires-python")) or None,
        yanked=yanked,
        metadata_sha256=metadata_sha256,
        has_metadata=has_metadata,
        provenance=_provenance(where, attrs.get("data-provenance")),
    )


def _provenance(where: str, value: object) -> str | None:
    """The PEP 740 provenance URL, or None; an invalid one is dropped (the file stays: provenance is optional)."""
    try:
        return provenance_url(where, value)
    except InvalidInput as error:
        LOG.warning("dropping a provenance URL: %s", error)
        return None


def _provenance_sha256(where: str, value: object) -> str | None:
    return None if value is None else check_sha256(f"{where}: {PROVENANCE_SHA256_KEY}", value)


def _json_metadata(where: str, value: object) -> tuple[bool, str | None]:
    """(upstream serves .metadata, its sha256 when given) from a PEP 691/714 core-metadata value."""
    if value is None or isinstance(value, bool):
        return bool(value), None
    if isinstance(value, dict):
        digest = value.get("sha256")
        return True, None if digest is None else check_sha256(f"{where}: core-metadata", digest)
    raise InvalidInput(f"{where}: core-metadata {value!r} is neither a boolean nor a hash object")


def _html_metadata(where: str, value: str | None) -> tuple[bool, str | None]:
    """The same from a PEP 658/714 attribute: "true" or "<hash name>=<hex>"."""
    if value is None or value.lower() == "true":
        return True, None
    algorithm, equals, digest = value.partition("=")
    if not equals or not algorithm:
        raise InvalidInput(f"{where}: core-metadata {value!r} is neither 'true' nor '<hash>=<hex>'")
    return True, check_sha256(f"{where}: core-metadata", digest) if algorithm == "sha256" else None


def _yank(where: str, value: bool | str) -> bool | str:
    """PEP 592: False, True, or the reason (an empty reason is a yank without one)."""
    if isinstance(value, str):
        return _optional_text(where, "yank reason", value) or True
    return value


def check_filename(project: str, filename: object) -> str:
    """`filename` when it is a plain, safe file name; InvalidInput naming project and value otherwise."""
    if not isinstance(filename, str) or not filename:
        raise InvalidInput(f"{project}: file name {filename!r} is missing or not a string")
    problem = None
    if len(filename) > MAX_FILENAME_LENGTH:
        problem = f"is longer than {MAX_FILENAME_LENGTH} characters"
    elif not UNSAFE_CHARACTERS.isdisjoint(filename):
        problem = "contains a slash, backslash or control character"
    elif ".." in filename or filename.startswith("."):
        problem = "contains '..' or starts with '.'"
    elif not _encodable(filename):
        problem = "is not valid Unicode"
    if problem:
        raise InvalidInput(f"{project}: file name {filename!r} {problem}")
    return filename


def check_sha256(where: str, value: object) -> str:
    """`value` as lower-case hex when it is a sha256; InvalidInput otherwise."""
    digest = value.lower() if isinstance(value, str) else value
    if not isinstance(digest, str) or not SHA256_HEX.match(digest):
        raise InvalidInput(f"{where}: sha256 {value!r} is missing or not 64 hex digits")
    return digest


def check_key(project: str, filename: str, key: str) -> str:
    """`key` when it is a safe storage path under packages/ ending in `filename`, short enough for S3."""
    segments = key.split("/")
    if (
        len(segments) < 2
        or segments[0] != "packages"
        or segments[-1] != filename
        or any(not s or s in (".", "..") or not UNSAFE_CHARACTERS.isdisjoint(s) for s in segments)
        or not _encodable(key)
        or len(key.encode()) > MAX_KEY_BYTES
    ):
        raise InvalidInput(f"{project}: file {filename!r}: storage path {key!r} is not a safe packages/… path")
    return key


def _optional_text(where: str, field: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {field} {value!r} is not a string")
    if not UNSAFE_TEXT.isdisjoint(value) or not _encodable(value):
        raise InvalidInput(f"{where}: {field} {value!r} contains control characters or invalid Unicode")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON "\ud800" escape
        return False
    return True


def _expect(value: object, kind: type, where: str, field: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{where}: {field} must be a JSON {_JSON_NAMES[kind]}, got {value!r:.80}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer"}


def _check_api_version(value: object, where: str) -> None:
    if not isinstance(value, str) or value.split(".", 1)[0] != SUPPORTED_API_MAJOR:
        raise InvalidInput(f"{where}: unsupported repository API version {value!r} (want 1.x)")


def _serial(where: str, value: object) -> int | None:
    """A `_last-serial`: a serial (0 <= s < 2**63), or its decimal string (as bandersnatch mirrors write it)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= _SERIAL_DIGITS:
        value = int(value)
    if value is None:
        return None
    return check_serial(f"{where}: _last-serial", value)


_SERIAL_DIGITS = len(str(MAX_SERIAL))


def _versions_of(files: Iterable[DistFile]) -> tuple[str, ...]:
    """Releases named by wheel and sdist filenames, in PEP 440 order (for pages that do not list them)."""
    found = {version for dist in files if (version := file_version(dist.filename)) is not None}
    return tuple(str(version) for version in sorted(found))


def _listing_from_json(body: Response) -> Iterator[tuple[str, int | None]]:
    """(name, serial) of each entry of a PEP 691 root listing, parsed as the bytes arrive (bounded: safe_parse).

    The listing is refused when its structure is wrong; an entry that is not an object or has no string name is
    skipped, and a bad serial is taken as unknown (the project's page then says), each with one log line.
    """
    where = "root listing"
    api_version: object = None
    found: set[str] = set()
    entry: dict[str, object] = {}
    for prefix, event, value in json_listing_values(body, where):
        if prefix == "projects.item":
            if event == "start_map":
                entry = {}
            elif event == "end_map":
                yield from _listing_entry(entry)
            elif event != "end_array":
                LOG.warning("%s: skipping an entry that is not an object: %.80r", where, _json_scalar(event, value))
        elif event in _INNER_EVENTS:  # inside a value that already began: seen at its start
            continue
        elif prefix in _LISTING_ENTRY_FIELDS:
            entry[prefix[_ENTRY_FIELD_START:]] = _json_scalar(event, value)
        elif prefix in _LISTING_CONTAINERS:
            found.add(prefix)
            _expect(_json_scalar(event, value), _LISTING_CONTAINERS[prefix], where, prefix or "the page")
        elif prefix == "meta.api-version":
            api_version = _json_scalar(event, value)
    for prefix in ("meta", "projects"):
        if prefix not in found:
            _expect(None, _LISTING_CONTAINERS[prefix], where, prefix)
    _check_api_version(api_version, where)


def _listing_entry(entry: dict[str, object]) -> Iterator[tuple[str, int | None]]:
    name = entry.get("name")
    if not isinstance(name, str):
        LOG.warning("root listing: skipping an entry whose name %.80r is not a string", name)
        return
    try:
        serial = _serial(f"root listing: project {name!r:.80}", entry.get("_last-serial"))
    except InvalidInput as error:
        LOG.warning("%s; taken as unknown", error)
        serial = None
    yield name, serial


_LISTING_ENTRY_FIELDS = frozenset({"projects.item.name", "projects.item._last-serial"})
_ENTRY_FIELD_START = len("projects.item.")
_LISTING_CONTAINERS: dict[str, type] = {"": dict, "meta": dict, "projects": list}  # prefix → the JSON type it must be
_CONTAINER_STARTS = {"start_map": dict, "start_array": list}
_INNER_EVENTS = frozenset({"end_map", "end_array"})


def _json_scalar(event: str, value: object) -> object:
    """A value as json.loads would give it for type checks: a container start stands for an empty container."""
    if event in _CONTAINER_STARTS:
        return _CONTAINER_STARTS[event]()
    return value


def _listing_from_html(body: Response, charset: str) -> Iterator[str]:
    """The link labels of a PEP 503 root listing, parsed as the bytes arrive."""
    parser = _LinkParser()
    try:
        decoder = codecs.getincrementaldecoder(charset)()
    except LookupError as error:
        raise InvalidInput(f"cannot decode the root listing as {charset!r}: {error}") from None
    while True:
        chunk = body.read(READ_CHUNK)
        try:
            feed_bounded(parser, [decoder.decode(chunk, final=not chunk)], "root listing", close=False)
        except UnicodeDecodeError as error:
            raise InvalidInput(f"cannot decode the root listing as {charset!r}: {error}") from None
        yield from (label for _, label in parser.links)
        parser.links.clear()
        if not chunk:
            break
    parser.close()
    if not parser.complete:
        raise InvalidInput("root listing: the HTML ends before </body> or </html> (truncated?)")


def _decoded(fetched: _Fetched) -> Iterator[str]:
    """The page's text in chunks of READ_CHUNK bytes (never a second copy of a whole page in memory)."""
    charset = _charset(fetched.content_type)
    try:
        decoder = codecs.getincrementaldecoder(charset)()
        view = memoryview(fetched.body)
        for start in range(0, len(view), READ_CHUNK):
            yield decoder.decode(view[start : start + READ_CHUNK])
        yield decoder.decode(b"", final=True)
    except (LookupError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{fetched.url}: cannot decode the page as {charset!r}: {error}") from None


def _charset(content_type: str) -> str:
    """The charset a Content-Type names; UTF-8 when it names none."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or "utf-8"
    return "utf-8"


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _header_serial(url: str, value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _SERIAL_DIGITS and int(digits) < MAX_SERIAL):
        raise UpstreamError(f"{url}: {SERIAL_HEADER} {value!r:.40} is not a serial (an integer from 0 to 2**63 - 1)")
    return int(digits)


def _xmlrpc_request(method: str, params: tuple[int, ...]) -> bytes:
    """An XML-RPC call of `method` with integer params; one past XML-RPC's 32 bits goes as <i8>, as Python's and
    PyPI's servers read it (xmlrpc.client.dumps refuses it, and a serial past 2**31 would stop every run)."""
    values = "".join(
        f"<param><value><{'int' if xmlrpc.client.MININT <= value <= xmlrpc.client.MAXINT else 'i8'}>{value:d}"
        f"</{'int' if xmlrpc.client.MININT <= value <= xmlrpc.client.MAXINT else 'i8'}></value></param>"
        for value in params
    )
    return (
        f"<?xml version='1.0'?>\n<methodCall>\n<methodName>{method}</methodName>\n<params>{values}</params>\n"
        "</methodCall>\n"
    ).encode()
