"""Project pages as upstream serves them — PEP 691/700/714/740/792 JSON and PEP 503/592/658/714/740/792 HTML —
parsed into a ProjectPage whose every file is safe to fetch, store and publish.

Bad file entries (unsafe names, foreign hosts, missing or malformed hashes, wrong JSON types) are dropped from the
page and logged: leaving one file out only hides it from installers, while refusing the whole page would block every
other file of the project for good. The page itself is refused (InvalidInput) when its structure is wrong, when two
entries claim the same storage key, or when every entry was dropped — publishing such a page would delete what the
mirror holds on the word of a broken upstream.

Why not pypi-simple (1.8.0, kept as a test dependency that reads back our pages): it would add requests,
beautifulsoup4, pydantic (compiled pydantic-core: it has aarch64/3.13 wheels, the rest is pure) and mailbits to the
Lambda bundle, about 13 MB unpacked, to be validated again here anyway. Its pydantic models refuse a whole page for
one bad entry or provenance URL, keep `_last-serial` as any string, and check no file name, storage key, host or
ASCII name; its HTML page is a whole BeautifulSoup tree, and neither it nor its link stream bounds links, labels or
open constructs; it knows PEP 740/792 but not our `_provenance-sha256`. Our bounds would sit around it, not in it.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from sync.filters import file_version
from sync.layout import FILES_PREFIX, edge_path, hashed_file_key
from sync.models import DistFile, InvalidInput, ProjectPage, normalize_project_name
from sync.origins import allowed_origins, origin_of
from sync.project_status import REASON_META, STATUS_META, status_from_json, status_from_meta
from sync.provenance import PROVENANCE_SHA256_KEY, provenance_url
from sync.safe_parse import MAX_LINKS_COST, VALUE_COST, feed_bounded
from sync.transport import READ_CHUNK
from sync.validate import check_filename, check_key, check_page_serial, check_sha256, check_text

LOG = logging.getLogger(__name__)

SUPPORTED_API_MAJOR = "1"
MAX_LABEL_LENGTH = 1024  # characters of a link's text kept: a longer one is no file or project name anyway
LINK_COST = 300  # bytes a kept link takes besides its attributes (dict, tuple, label): for LinkParser.cost

# (URL as the page wrote it, filename, sha256) -> (URL to fetch, storage key); raises InvalidInput.
Locate = Callable[[str, str, str], tuple[str, str]]


def http_locator(page_url: str, project: str, hosts: Iterable[str]) -> Locate:
    """Resolve file URLs against the page, allow only the origins `hosts` name (origins.allowed_origins), and store
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
    page: dict[str, Any] = expect(document, dict, where, "the page")
    meta = expect(page.get("meta"), dict, where, "meta")
    check_api_version(meta.get("api-version"), where)
    name = expect(page.get("name"), str, where, "name")
    normalized = normalize_project_name(name)
    if project is not None and normalized != project:
        raise InvalidInput(f"{where}: it is the page of {name!r}")
    page_serial = check_page_serial(where, meta.get("_last-serial", serial))
    entries = expect(page.get("files"), list, where, "files")
    files = _collect(normalized, entries, lambda entry: _dist_from_json(normalized, entry, locate), strict)
    versions = page.get("versions")
    if versions is None:
        found = versions_of(files)
    else:
        listed = expect(versions, list, where, "versions")
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
    parser = LinkParser()
    where = f"page of {project!r}"
    feed_bounded(parser, [text] if isinstance(text, str) else text, where)
    if not parser.complete:
        raise InvalidInput(f"{where}: the HTML ends before </body> or </html> (truncated?)")
    check_api_version(parser.repository_version or "1.0", where)
    base = urljoin(page_url, parser.base_href) if parser.base_href else page_url
    links = [(attrs, label) for attrs, label in parser.links if attrs.get("href")]
    files = _collect(project, links, lambda link: _dist_from_html(project, link[0], link[1], base, locate), False)
    status = status_from_meta(where, parser.status_meta)
    return ProjectPage(project, serial, files, versions_of(files), etag, status)


class LinkParser(HTMLParser):
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
                self.links.clear()  # the error's traceback keeps this parser: not its links
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
    hashes = expect(entry.get("hashes"), dict, where, "hashes")
    sha256 = check_sha256(where, hashes.get("sha256"))
    url, key = locate(expect(entry.get("url"), str, where, "url"), filename, sha256)
    size = entry.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInput(f"{where}: size {size!r} is not a non-negative integer")
    upload_time = check_text(where, "upload-time", entry.get("upload-time"))
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
        requires_python=check_text(where, "requires-python", entry.get("requires-python")) or None,
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
        requires_python=check_text(where, "data-requires-python", attrs.get("data-requires-python")) or None,
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
        return check_text(where, "yank reason", value) or True
    return value


def expect(value: object, kind: type, where: str, field: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidInput(f"{where}: {field} must be a JSON {_JSON_NAMES[kind]}, got {value!r:.80}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "integer"}


def check_api_version(value: object, where: str) -> None:
    if not isinstance(value, str) or value.split(".", 1)[0] != SUPPORTED_API_MAJOR:
        raise InvalidInput(f"{where}: unsupported repository API version {value!r} (want 1.x)")


def versions_of(files: Iterable[DistFile]) -> tuple[str, ...]:
    """Releases named by wheel and sdist filenames, in PEP 440 order (for pages that do not list them)."""
    found = {version for dist in files if (version := file_version(dist.filename)) is not None}
    return tuple(str(version) for version in sorted(found))


def decoded_chunks(body: bytearray, charset: str, url: str) -> Iterator[str]:
    """`body`'s text in chunks of READ_CHUNK bytes (never a second copy of a whole page in memory)."""
    try:
        decoder = codecs.getincrementaldecoder(charset)()
        view = memoryview(body)
        for start in range(0, len(view), READ_CHUNK):
            yield decoder.decode(view[start : start + READ_CHUNK])
        yield decoder.decode(b"", final=True)
    except (LookupError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{url}: cannot decode the page as {charset!r}: {error}") from None
