"""Client for the upstream index: project pages (PEP 691 JSON or PEP 503 HTML), the root listing, the XML-RPC change
feed and file downloads — with bounded retries, a polite User-Agent, ETag reuse and strict checks on what comes back.

What it fetches goes through `sync.transport` (bounded HTTP); what comes back is parsed by `sync.pages` (project
pages), `sync.root_listing` (the root listing) and `sync.feed` (the change feed).
"""

from __future__ import annotations

import contextlib
import email.message
import importlib.metadata
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sync import feed
from sync.config import PYPI_FILE_HOST
from sync.layout import HTML_PAGE_V1, JSON_PAGE, PAGES_PREFIX, edge_path
from sync.listing import ProjectListing
from sync.models import MAX_SERIAL, InvalidInput, ProjectPage, normalize_project_name
from sync.origins import allowed_origins
from sync.page_budget import PAGE_MEMORY, MemoryBudget, Reservation, page_cost, worst_page_cost
from sync.pages import decoded_chunks, http_locator, parse_html_page, parse_json_page
from sync.root_listing import listing_from_html, listing_from_json, normalized_names
from sync.safe_parse import load_json
from sync.transport import MAX_RETRY_AFTER, REQUEST_DEADLINE, Response, Transport, UpstreamError
from sync.validate import SERIAL_DIGITS, check_serial

LOG = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/pypi-cdn/pypi-cdn"
HTML_PAGE_TYPES = frozenset({"text/html", HTML_PAGE_V1})
PAGE_ACCEPT = f"{JSON_PAGE}, {HTML_PAGE_V1};q=0.2, text/html;q=0.01"
SERIAL_HEADER = "X-PyPI-Last-Serial"

MAX_PAGE_SIZE = 64 * 2**20  # a project page or one XML-RPC answer (parsing it is bounded too: sync.safe_parse)
MAX_LISTING_SIZE = 512 * 2**20  # the root listing: PyPI's JSON one is ~50 MB
MAX_CONTENT_TYPE = 1024  # characters of a Content-Type header parsed: no media type and charset need more
STALE_PAGE_ATTEMPTS = 4  # fetches of a page older than the serial the feed announced before StalePage
PAGE_STATUSES = frozenset({200, 304, 404})


class ProjectNotFound(UpstreamError):
    """The project page answers 404: the project was deleted upstream."""


class StalePage(UpstreamError):
    """The page stays older than the serial the caller expects, even after cache-busting retries."""


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
    media_type: str  # lower case; "" when the answer named none
    charset: str
    etag: str | None
    serial: int | None  # from the X-PyPI-Last-Serial header
    reservation: Reservation | None = None  # of the page memory budget, held until the page is parsed


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
        page_memory: MemoryBudget = PAGE_MEMORY,
    ):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"upstream {base_url!r} is not an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.simple_url = self.base_url + edge_path(PAGES_PREFIX)  # upstream serves the paths the mirror serves
        self.xmlrpc_url = self.base_url + "/pypi"
        default_hosts = [PYPI_FILE_HOST] if parts.hostname == "pypi.org" else []
        own_origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        # Where files and redirects may lead: scheme, host and port (origins.allowed_origins).
        self.file_hosts = frozenset(host.lower() for host in (own_origin, *default_hosts, *file_hosts))
        self.retries = retries
        self.backoff = backoff
        self.max_page_size = max_page_size
        self.max_listing_size = max_listing_size
        self.page_memory = page_memory
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
        project = normalize_project_name(name)
        url = f"{self.simple_url}{project}/"
        headers = {"Accept": PAGE_ACCEPT} | ({"If-None-Match": etag} if etag else {})
        for attempt in self._transport.attempts(StalePage, STALE_PAGE_ATTEMPTS):
            with attempt:
                target = f"{url}?t={time.time_ns()}" if attempt.num > 1 else url
                fetched = self._fetch(
                    "GET", target, headers, accepted=PAGE_STATUSES, limit=self.max_page_size, budget=self.page_memory
                )
                with fetched.reservation or contextlib.nullcontext():
                    page = self._page_of(fetched, project, url, min_serial, attempt.num)
                serial = fetched.serial if page is None else page.last_serial
                if min_serial is None or serial is None or serial >= min_serial:
                    return page
                raise StalePage(f"{url}: serial {serial} is still older than {min_serial} after {attempt.num} attempts")
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _page_of(
        self, fetched: _Fetched, project: str, url: str, min_serial: int | None, attempt: int
    ) -> ProjectPage | None:
        """The page of one answer (None for a 304); ProjectNotFound, or StalePage to ask again, for a 404."""
        if fetched.status == 404:
            if min_serial is None or attempt > 1:
                raise ProjectNotFound(f"{url}: project {project!r} not found upstream (404)")
            # maybe a cached 404 from before the project was created: ask past the cache once
            raise StalePage(f"{url}: 404, maybe cached from before serial {min_serial}")
        return None if fetched.status == 304 else self._parse_project(fetched, project)

    def list_projects(self) -> ProjectListing:
        """Every project of the root listing: normalized name -> its last serial (None from an HTML listing).

        The listing is parsed as it streams in and kept compact, so PyPI's ~930,000 projects fit in tens of MB.
        """

        def read(response: Response) -> ProjectListing:
            media_type, charset = content_type(response.headers.get("Content-Type", ""))
            if media_type == JSON_PAGE:
                entries = listing_from_json(response)
            else:
                entries = ((name, None) for name in listing_from_html(response, charset))
            return ProjectListing(normalized_names(entries, self.simple_url))

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

    def changelog_events_since(self, serial: int) -> list[feed.ChangeEvent] | None:
        """Every change after `serial` (project name, serial, upstream Unix time, whether it removed the project),
        oldest first; None without XML-RPC upstream.

        Asks again while an answer is full (PyPI caps one at 50,000 rows), at most MAX_CHANGELOG_CALLS times: a
        truncated result is still correct, as the caller only advances to the serials it received.
        """
        events: list[feed.ChangeEvent] = []
        since = serial
        for _ in range(feed.MAX_CHANGELOG_CALLS):
            rows = self._xmlrpc("changelog_since_serial", since)
            if rows is None:
                return None
            try:
                batch = feed.changelog_events(rows, self.xmlrpc_url)
            except feed.FeedError as error:
                raise UpstreamError(f"{self.xmlrpc_url}: {error}") from None
            events.extend(batch)
            if len(rows) < feed.CHANGELOG_PAGE_ROWS:
                break
            newest = max((event.serial for event in batch), default=since)
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
    def _fetch(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        accepted: frozenset[int],
        limit: int,
        body: bytes | None = None,
        budget: MemoryBudget | None = None,
    ) -> _Fetched:
        """A whole response of at most `limit` bytes with a status in `accepted` (else UpstreamError); a 200 read
        with a `budget` holds its share of it (`_Fetched.reservation`, for the caller to release)."""

        taken: list[Reservation] = []  # by every attempt: one that failed, even after reading, gives its share back

        def read(response: Response) -> _Fetched:
            header = response.headers.get("Content-Type", "")
            reservation = None
            if response.status == 200 and budget is not None:
                reservation = budget.reserve(worst_page_cost(_length(response, limit)), f"{response.url}: page")
                taken.append(reservation)
            try:
                content = response.read_all() if response.status == 200 else bytearray()
                if reservation is not None:
                    cost = page_cost(content, json=content_type(header)[0] == JSON_PAGE)
                    reservation.fit(cost, f"{response.url}: page")
            except BaseException:
                if reservation is not None:
                    reservation.release()
                raise
            return _Fetched(
                response.status,
                response.url,
                content,
                header,
                *content_type(header),
                response.headers.get("ETag"),
                _header_serial(url, response.headers.get(SERIAL_HEADER)),
                reservation,
            )

        fetched = None
        try:
            fetched = self._transport.read_retrying(
                method, url, headers, accepted=accepted, read=read, limit=limit, body=body
            )
            return fetched
        finally:
            for reservation in taken:
                if fetched is None or reservation is not fetched.reservation:
                    reservation.release()

    # ---------------------------------------------------------------------------------------------- pages
    def _parse_project(self, fetched: _Fetched, normalized: str) -> ProjectPage:
        media = fetched.media_type
        locate = http_locator(fetched.url, normalized, self.file_hosts)
        if media == JSON_PAGE:
            document = load_json(fetched.body, f"page of {normalized!r}")  # empties the body: never held twice
            return parse_json_page(
                document, project=normalized, locate=locate, strict=False, serial=fetched.serial, etag=fetched.etag
            )
        if media in HTML_PAGE_TYPES or not media:
            return parse_html_page(
                decoded_chunks(fetched.body, fetched.charset, fetched.url),
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
        fetched = self._fetch(
            "POST",
            self.xmlrpc_url,
            {"Content-Type": feed.CONTENT_TYPE},
            body=feed.request(method, *params),
            accepted=feed.NO_XMLRPC_STATUSES | {200},
            limit=self.max_page_size,
        )
        if fetched.status in feed.NO_XMLRPC_STATUSES:
            return None
        try:
            return feed.answer(fetched.body, method)
        except feed.FeedError as error:
            raise UpstreamError(f"{self.xmlrpc_url}: {error}") from None


def content_type(header: str) -> tuple[str, str]:
    """(media type in lower case, charset) of a Content-Type header, parsed by the stdlib: "" when it names no
    type, UTF-8 when it names no charset. Only its first MAX_CONTENT_TYPE characters are read."""
    if not header.strip():
        return "", "utf-8"
    message = email.message.Message()
    message["Content-Type"] = header[:MAX_CONTENT_TYPE]
    return message.get_content_type(), message.get_content_charset() or "utf-8"


def _length(response: Response, limit: int) -> int:
    """The body's announced length, or `limit` (what reading may take) when it announces none or a wrong one."""
    value = response.headers.get("Content-Length", "")
    return int(value) if value.isascii() and value.isdigit() and int(value) <= limit else limit


def _header_serial(url: str, value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit() and len(digits) <= SERIAL_DIGITS and int(digits) < MAX_SERIAL):
        raise UpstreamError(f"{url}: {SERIAL_HEADER} {value!r:.40} is not a serial (an integer from 0 to 2**63 - 1)")
    return int(digits)
