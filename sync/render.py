"""The mirror's pages as bytes: HTML (PEP 503/592/658/714/740/792) and JSON (PEP 691/700/714/740/792), with file
links relative to the page, so the mirror serves from any host. Pure and deterministic: an unchanged page renders to
identical bytes.

Versions: a JSON page says 1.4 (PEP 792 status, always given: a page without a marker is `active`), or 1.0 when some
file's size is unknown (PEP 700 requires sizes from 1.1 on); HTML pages and the root say 1.4, where PEP 833 keeps the
HTML form. Core metadata as PEP 714 has it: `core-metadata` in JSON; `data-core-metadata` in HTML, with the old
`data-dist-info-metadata` beside it as PyPI sends it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import quote, unquote

from sync.layout import FILES_PREFIX
from sync.models import DistFile, InvalidInput, ProjectPage, ProjectStatus, normalize_project_names
from sync.pages import parse_json_page
from sync.project_status import REASON_META, STATUS_META
from sync.provenance import PROVENANCE_SHA256_KEY
from sync.validate import check_key

API_VERSION = "1.4"
# Without every file's size a page cannot be a valid 1.1 (PEP 700) page: it says 1.0 and omits unknown sizes.
API_VERSION_WITHOUT_SIZES = "1.0"
HTML_API_VERSION = "1.4"  # PEP 833: later versions change the JSON form only
ACTIVE = ProjectStatus()
FILE_LINK_PREFIX = "../../"  # from simple/<name>/ to the bucket root, where packages/ lives
ROOT_BATCH = 4_096  # root entries rendered and encoded at a time: a few MB, whatever the number of projects


def file_href(key: str) -> str:
    """A stored file's URL relative to its project page."""
    return FILE_LINK_PREFIX + quote(key, safe="/")


def api_version(page: ProjectPage) -> str:
    return API_VERSION if all(dist.size is not None for dist in page.files) else API_VERSION_WITHOUT_SIZES


def _attribute(value: str) -> str:
    return html.escape(value, quote=True)


def _html_link(dist: DistFile) -> str:
    attributes = [f'href="{_attribute(file_href(dist.key))}#sha256={dist.sha256}"']
    if dist.requires_python is not None:
        attributes.append(f'data-requires-python="{_attribute(dist.requires_python)}"')
    if dist.yanked is not False:
        attributes.append(f'data-yanked="{_attribute(dist.yanked if isinstance(dist.yanked, str) else "")}"')
    if _serves_metadata(dist):
        attributes.append(f'data-dist-info-metadata="sha256={dist.metadata_sha256}"')
        attributes.append(f'data-core-metadata="sha256={dist.metadata_sha256}"')
    if dist.provenance is not None:
        attributes.append(f'data-provenance="{_attribute(dist.provenance)}"')
    return f"    <a {' '.join(attributes)}>{html.escape(dist.filename)}</a><br />"


def _status_meta(status: ProjectStatus) -> list[str]:
    lines = [f'    <meta name="{STATUS_META}" content="{_attribute(status.status)}">']
    if status.reason is not None:
        lines.append(f'    <meta name="{REASON_META}" content="{_attribute(status.reason)}">')
    return lines


def _serves_metadata(dist: DistFile) -> bool:
    """The mirror stores `.metadata` only when upstream gave its sha256 (it is verified like any file)."""
    return dist.has_metadata and dist.metadata_sha256 is not None


def project_html(page: ProjectPage) -> bytes:
    """The PEP 503 page of a project, laid out as PyPI's, ending in `<!--SERIAL n-->` when the serial is known."""
    title = html.escape(page.normalized)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{HTML_API_VERSION}">',
        *_status_meta(page.status or ACTIVE),
        f"    <title>Links for {title}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {title}</h1>",
        *(_html_link(dist) for dist in page.files),
        "  </body>",
        "</html>",
    ]
    if page.last_serial is not None:
        lines.append(f"<!--SERIAL {page.last_serial}-->")
    return ("\n".join(lines) + "\n").encode()


def _json_file(dist: DistFile) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": dist.filename,
        "url": file_href(dist.key),
        "hashes": {"sha256": dist.sha256},
        "yanked": dist.yanked,
    }
    if dist.size is not None:
        entry["size"] = dist.size
    if dist.upload_time is not None:
        entry["upload-time"] = dist.upload_time
    if dist.requires_python is not None:
        entry["requires-python"] = dist.requires_python
    if _serves_metadata(dist):
        entry["core-metadata"] = {"sha256": dist.metadata_sha256}
    entry["provenance"] = dist.provenance
    if dist.provenance is not None and dist.provenance_sha256 is not None:
        entry[PROVENANCE_SHA256_KEY] = dist.provenance_sha256
    return entry


def _json_status(status: ProjectStatus) -> dict[str, str]:
    return {"status": status.status} if status.reason is None else {"status": status.status, "reason": status.reason}


def project_json(page: ProjectPage) -> bytes:
    """The JSON page of a project: sorted keys, files and versions in upstream order."""
    meta: dict[str, Any] = {"api-version": api_version(page)}
    if page.last_serial is not None:
        meta["_last-serial"] = page.last_serial
    document = {
        "meta": meta,
        "name": page.normalized,
        "versions": list(page.versions),
        "files": [_json_file(dist) for dist in page.files],
        "project-status": _json_status(page.status or ACTIVE),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _root_body(
    projects: Iterable[tuple[str, int | None]], render: Callable[[str, str, int | None], str], separator: str
) -> Iterator[bytes]:
    """Each (name, serial) rendered by `render(name, normalized, serial)` and joined, in UTF-8 batches."""
    entries = iter(projects)
    first = True
    while batch := list(islice(entries, ROOT_BATCH)):
        normalized = normalize_project_names([name for name, _ in batch])
        text = separator.join(render(n, norm, serial) for (n, serial), norm in zip(batch, normalized, strict=True))
        yield ("" if first else separator).encode() + text.encode()
        first = False


def _root_link(name: str, normalized: str, _serial: int | None) -> str:
    return f'    <a href="{normalized}/">{name}</a>'


def root_html(projects: Iterable[tuple[str, int | None]]) -> Iterator[bytes]:
    """The PEP 503 root page in chunks, listing (name, serial) pairs in the order given; links are `<normalized>/`."""
    head = (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{HTML_API_VERSION}">\n'
        "    <title>Simple index</title>\n  </head>\n  <body>\n"
    )
    yield head.encode()
    # Only PEP 508 names get through normalize_project_names: letters, digits, . _ - need no HTML escaping.
    listed = False
    for chunk in _root_body(projects, _root_link, "\n"):
        listed = True
        yield chunk
    yield b"\n  </body>\n</html>\n" if listed else b"  </body>\n</html>\n"


def _root_entry(name: str, _normalized: str, serial: int | None) -> str:
    return f'{{"name":"{name}"}}' if serial is None else f'{{"_last-serial":{serial:d},"name":"{name}"}}'


def root_json(projects: Iterable[tuple[str, int | None]], last_serial: int | None) -> Iterator[bytes]:
    """The PEP 691 root page in chunks: `projects[{name, _last-serial}]` in the order given (serials omitted when
    unknown)."""
    meta: dict[str, Any] = {"api-version": API_VERSION}
    if last_serial is not None:
        meta["_last-serial"] = last_serial
    yield ('{"meta":' + json.dumps(meta, sort_keys=True, separators=(",", ":")) + ',"projects":[').encode()
    # Only PEP 508 names get through normalize_project_names: nothing in them needs JSON escaping.
    yield from _root_body(projects, _root_entry, ",")
    yield b"]}"


def _published_location(url: str, filename: str, sha256: str) -> tuple[str, str]:
    """(url, key) of a link the mirror wrote: `../../<quoted key>`; the URL stays relative."""
    if not url.startswith(FILE_LINK_PREFIX):
        raise InvalidInput(f"published file {filename!r}: URL {url!r} is not a {FILE_LINK_PREFIX}{FILES_PREFIX} link")
    return url, check_key("published page", filename, unquote(url.removeprefix(FILE_LINK_PREFIX)))


def parse_published_json(data: bytes) -> ProjectPage:
    """Read back a JSON page this module wrote (strictly: any bad entry raises InvalidInput, a ValueError).

    Each DistFile's `url` is the relative link as published; `key` and the hashes are what diffs and audits use.
    """
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise InvalidInput(f"published page is not valid JSON ({error})") from None
    return parse_json_page(document, project=None, locate=_published_location, strict=True)
