"""CloudFront's invalidation API for the local edge: CreateInvalidation, GetInvalidation and ListInvalidations.

The sync's own boto3 CloudFront client talks to it (`endpoint_url`), so the requests are the ones production sends.
An invalidation takes effect on the edge cache `effect_seconds` after it is created and reports `Completed`
`complete_seconds` after it is created; the defaults are AWS's published figures (What's New, 2026-04-29:
"invalidations take effect in under 5 seconds at P95", "end-to-end completion time, which includes reporting the
invalidation status back, is under 25 seconds at P95"). As on CloudFront, a request that would put more than 3,000
paths or 15 wildcard paths in progress is refused with TooManyInvalidationsInProgress.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

from devstack.cache import EdgeCache
from sync.invalidation import MAX_PATHS_IN_FLIGHT, MAX_WILDCARDS_IN_FLIGHT

EFFECT_SECONDS = 5.0
COMPLETE_SECONDS = 25.0
DISTRIBUTION_ID = "ELOCALEDGE0001"
NAMESPACE = "http://cloudfront.amazonaws.com/doc/2020-05-31/"
MAX_BODY_BYTES = 1024 * 1024
MAX_LIST_ITEMS = 100
ROUTE = re.compile(r"^/2020-05-31/distribution/(?P<distribution>[^/]+)/invalidation(?:/(?P<id>[^/]+))?$")

log = logging.getLogger(__name__)


class InvalidationRefused(Exception):
    """CloudFront's error answer: HTTP status, error code, message."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Invalidation:
    id: str
    caller_reference: str
    paths: tuple[str, ...]
    created: datetime
    created_clock: float

    @property
    def wildcards(self) -> int:
        return sum(1 for path in self.paths if path.endswith("*"))


class InvalidationLedger:
    """The distribution's invalidations: applied to `cache` after `effect_seconds`, done after `complete_seconds`."""

    def __init__(
        self,
        cache: EdgeCache,
        *,
        effect_seconds: float = EFFECT_SECONDS,
        complete_seconds: float = COMPLETE_SECONDS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not 0 <= effect_seconds <= complete_seconds:
            raise ValueError(f"invalidation delays: 0 <= effect ({effect_seconds}) <= complete ({complete_seconds})")
        self.caches = [cache]
        self.effect_seconds = effect_seconds
        self.complete_seconds = complete_seconds
        self.clock = clock or cache.clock
        self._items: list[Invalidation] = []  # oldest first
        self._lock = threading.Lock()
        self.paths_created = 0

    def add_cache(self, cache: EdgeCache) -> None:
        """Another edge location of the same distribution: invalidations apply to it too."""
        self.caches.append(cache)

    def status(self, item: Invalidation) -> str:
        return "Completed" if self.clock() >= item.created_clock + self.complete_seconds else "InProgress"

    def create(self, paths: list[str], caller_reference: str) -> Invalidation:
        if not paths or any(not p.startswith("/") for p in paths):
            raise InvalidationRefused(HTTPStatus.BAD_REQUEST, "InvalidArgument", f"paths must start with '/': {paths}")
        with self._lock:
            for item in self._items:
                if item.caller_reference == caller_reference:
                    if item.paths == tuple(paths):
                        return item
                    raise InvalidationRefused(
                        HTTPStatus.CONFLICT, "InvalidationBatchAlreadyExists", f"{caller_reference!r} is taken"
                    )
            running = [item for item in self._items if self.status(item) == "InProgress"]
            wildcards = sum(1 for p in paths if p.endswith("*"))
            in_flight_paths = sum(len(i.paths) - i.wildcards for i in running) + len(paths) - wildcards
            in_flight_wildcards = sum(i.wildcards for i in running) + wildcards
            if in_flight_paths > MAX_PATHS_IN_FLIGHT or in_flight_wildcards > MAX_WILDCARDS_IN_FLIGHT:
                raise InvalidationRefused(
                    HTTPStatus.BAD_REQUEST,
                    "TooManyInvalidationsInProgress",
                    f"{in_flight_paths} paths and {in_flight_wildcards} wildcards would be in progress",
                )
            now = self.clock()
            item = Invalidation(
                id="I" + uuid.uuid4().hex[:13].upper(),
                caller_reference=caller_reference,
                paths=tuple(paths),
                created=datetime.now(UTC),
                created_clock=now,
            )
            self._items.append(item)
            self.paths_created += len(paths)
        for cache in self.caches:
            cache.invalidate(item.paths, effective_at=now + self.effect_seconds)
        return item

    def settled_at(self) -> float:
        """When every invalidation created so far has taken effect (clock seconds)."""
        with self._lock:
            return max((item.created_clock + self.effect_seconds for item in self._items), default=0.0)

    def get(self, invalidation_id: str) -> Invalidation:
        with self._lock:
            for item in self._items:
                if item.id == invalidation_id:
                    return item
        raise InvalidationRefused(HTTPStatus.NOT_FOUND, "NoSuchInvalidation", f"no invalidation {invalidation_id}")

    def newest_first(self) -> list[Invalidation]:
        with self._lock:
            return self._items[::-1]


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _element(parent: ET.Element, name: str, text: str | int | None = None) -> ET.Element:
    child = ET.SubElement(parent, name)
    if text is not None:
        child.text = str(text).lower() if isinstance(text, bool) else str(text)
    return child


def invalidation_xml(item: Invalidation, status: str) -> bytes:
    root = ET.Element("Invalidation", xmlns=NAMESPACE)
    _element(root, "Id", item.id)
    _element(root, "Status", status)
    _element(root, "CreateTime", _timestamp(item.created))
    batch = _element(root, "InvalidationBatch")
    paths = _element(batch, "Paths")
    _element(paths, "Quantity", len(item.paths))
    items = _element(paths, "Items")
    for path in item.paths:
        _element(items, "Path", path)
    _element(batch, "CallerReference", item.caller_reference)
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


def invalidation_list_xml(ledger: InvalidationLedger, marker: str, max_items: int) -> bytes:
    """One page of ListInvalidations, newest first, starting after the invalidation named by `marker`."""
    items = ledger.newest_first()
    ids = [item.id for item in items]
    start = ids.index(marker) + 1 if marker in ids else 0
    page = items[start : start + max_items]
    truncated = start + max_items < len(items)
    root = ET.Element("InvalidationList", xmlns=NAMESPACE)
    _element(root, "Marker", marker)
    if truncated:
        _element(root, "NextMarker", page[-1].id)
    _element(root, "MaxItems", max_items)
    _element(root, "IsTruncated", truncated)
    _element(root, "Quantity", len(page))
    listed = _element(root, "Items")
    for item in page:
        summary = _element(listed, "InvalidationSummary")
        _element(summary, "Id", item.id)
        _element(summary, "CreateTime", _timestamp(item.created))
        _element(summary, "Status", ledger.status(item))
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


def parse_batch(body: bytes) -> tuple[list[str], str]:
    """(paths, caller reference) of a CreateInvalidation request body."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - the sync's own boto3 client on 127.0.0.1 sends this
    except ET.ParseError as error:
        raise InvalidationRefused(HTTPStatus.BAD_REQUEST, "MalformedXML", f"request body: {error}") from None
    ns = {"cf": NAMESPACE}
    paths = [(p.text or "") for p in root.findall("cf:Paths/cf:Items/cf:Path", ns)]
    reference = root.findtext("cf:CallerReference", default="", namespaces=ns)
    if not reference:
        raise InvalidationRefused(HTTPStatus.BAD_REQUEST, "InvalidArgument", "CallerReference is required")
    return paths, reference


class _ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def api(self) -> _ApiServer:
        return cast(_ApiServer, self.server)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_POST(self) -> None:
        self._answer(self._create)

    def do_GET(self) -> None:
        self._answer(self._read)

    def _answer(self, action: Callable[[re.Match[str]], tuple[HTTPStatus, bytes, dict[str, str]]]) -> None:
        route = ROUTE.match(urlsplit(self.path).path)
        try:
            if route is None:
                raise InvalidationRefused(HTTPStatus.NOT_FOUND, "NotFound", f"no such API path {self.path}")
            if route["distribution"] != self.api.distribution_id:
                raise InvalidationRefused(
                    HTTPStatus.NOT_FOUND, "NoSuchDistribution", f"no distribution {route['distribution']}"
                )
            status, body, headers = action(route)
        except InvalidationRefused as refused:
            status, headers = refused.status, {}
            error = ET.Element("ErrorResponse", xmlns=NAMESPACE)
            detail = _element(error, "Error")
            _element(detail, "Type", "Sender")
            _element(detail, "Code", refused.code)
            _element(detail, "Message", str(refused))
            _element(error, "RequestId", uuid.uuid4().hex)
            body = ET.tostring(error, xml_declaration=True, encoding="utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _create(self, route: re.Match[str]) -> tuple[HTTPStatus, bytes, dict[str, str]]:
        if route["id"]:
            raise InvalidationRefused(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed", "POST an invalidation batch")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            raise InvalidationRefused(HTTPStatus.BAD_REQUEST, "InvalidArgument", f"body of {length} bytes")
        paths, reference = parse_batch(self.rfile.read(length))
        item = self.api.ledger.create(paths, reference)
        location = f"http://{self.headers.get('Host', '')}{self.path}/{item.id}"
        return HTTPStatus.CREATED, invalidation_xml(item, self.api.ledger.status(item)), {"Location": location}

    def _read(self, route: re.Match[str]) -> tuple[HTTPStatus, bytes, dict[str, str]]:
        ledger = self.api.ledger
        if route["id"]:
            item = ledger.get(route["id"])
            return HTTPStatus.OK, invalidation_xml(item, ledger.status(item)), {}
        query = parse_qs(urlsplit(self.path).query)
        marker = query.get("Marker", [""])[0]
        try:
            max_items = min(int(query.get("MaxItems", [MAX_LIST_ITEMS])[0]), MAX_LIST_ITEMS)
        except ValueError:
            raise InvalidationRefused(HTTPStatus.BAD_REQUEST, "InvalidArgument", "MaxItems is not a number") from None
        return HTTPStatus.OK, invalidation_list_xml(ledger, marker, max(1, max_items)), {}


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], ledger: InvalidationLedger, distribution_id: str) -> None:
        super().__init__(address, _ApiHandler)
        self.ledger = ledger
        self.distribution_id = distribution_id


class InvalidationApi:
    """The API on 127.0.0.1 (`endpoint_url`), serving one distribution's ledger in a background thread."""

    def __init__(self, ledger: InvalidationLedger, *, distribution_id: str = DISTRIBUTION_ID, port: int = 0) -> None:
        self.ledger = ledger
        self.distribution_id = distribution_id
        self._server = _ApiServer(("127.0.0.1", port), ledger, distribution_id)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="cloudfront-api", daemon=True
        )
        self._thread.start()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
