"""The root listing (`/simple/`) as it streams in: PEP 691 JSON or PEP 503 HTML, parsed as the bytes arrive into
(normalized name, serial) pairs for a ProjectListing, so PyPI's ~930,000 projects never sit in memory as a document.

The listing is refused (InvalidInput) when its structure is wrong; an entry that is not an object, has no string name
or names no valid project is skipped, and a bad serial is taken as unknown (the project's page then says), each with
one log line.

The JSON walk reads ijson's basic events itself: ijson.items/kvitems build every value under their prefix whole (an
entry's stray field of 500 MB of `[[[…` or a million keys would be one object), and ijson.parse's prefixes grow with
the nesting; here nothing below an entry's fields is built, and safe_parse.json_events bounds depth and token size.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterable, Iterator

from sync.models import InvalidInput, normalize_project_name
from sync.pages import LinkParser, check_api_version, expect
from sync.safe_parse import Readable, feed_bounded, json_events
from sync.transport import READ_CHUNK
from sync.validate import check_page_serial

LOG = logging.getLogger(__name__)

WHERE = "root listing"
_ENTRY = ("projects", "item")  # where an entry is: path of keys, "item" within an array
_ENTRY_FIELDS = frozenset({"name", "_last-serial"})
_CONTAINERS: dict[tuple[str, ...], type] = {(): dict, ("meta",): dict, ("projects",): list}  # what each must be
_STARTS = {"start_map": dict, "start_array": list}  # a container's start stands for it, empty, in type checks


def normalized_names(entries: Iterable[tuple[str, int | None]], url: str) -> Iterator[tuple[str, int | None]]:
    """Each (name, serial) with its name normalised; an invalid name is skipped with one log line naming `url`."""
    for name, serial in entries:
        try:
            yield normalize_project_name(name), serial
        except InvalidInput as error:
            LOG.warning("%s: skipping listed project: %s", url, error)


def listing_from_json(body: Readable) -> Iterator[tuple[str, int | None]]:
    """(name, serial) of each entry of a PEP 691 root listing, as the bytes arrive (module doc)."""
    path: list[str] = []  # per open container: the key being read, or "item" in an array
    entry: dict[str, object] | None = None
    api_version: object = None
    found: set[tuple[str, ...]] = set()
    for event, value in json_events(body, WHERE):
        if event == "map_key":
            path[-1] = value
            continue
        if event in ("end_map", "end_array"):
            path.pop()
            if entry is not None and tuple(path) == _ENTRY:
                yield from _entry(entry)
                entry = None
            continue
        where = tuple(path)
        scalar = _STARTS[event]() if event in _STARTS else value
        if where == _ENTRY:
            entry = _entry_start(event, scalar)
        elif entry is not None and where[:-1] == _ENTRY and where[-1] in _ENTRY_FIELDS:
            entry[where[-1]] = scalar
        elif where in _CONTAINERS:
            found.add(where)
            expect(scalar, _CONTAINERS[where], WHERE, ".".join(where) or "the page")
        elif where == ("meta", "api-version"):
            api_version = scalar
        if event in _STARTS:
            path.append("item" if event == "start_array" else "")
    for where in [where for where in _CONTAINERS if where not in found]:
        expect(None, _CONTAINERS[where], WHERE, ".".join(where))
    check_api_version(api_version, WHERE)


def _entry_start(event: str, value: object) -> dict[str, object] | None:
    """A new entry's fields, or None (and one log line) when the entry is not an object."""
    if event == "start_map":
        return {}
    LOG.warning("%s: skipping an entry that is not an object: %.80r", WHERE, value)
    return None


def _entry(entry: dict[str, object]) -> Iterator[tuple[str, int | None]]:
    name = entry.get("name")
    if not isinstance(name, str):
        LOG.warning("%s: skipping an entry whose name %.80r is not a string", WHERE, name)
        return
    try:
        serial = check_page_serial(f"{WHERE}: project {name!r:.80}", entry.get("_last-serial"))
    except InvalidInput as error:
        LOG.warning("%s; taken as unknown", error)
        serial = None
    yield name, serial


def listing_from_html(body: Readable, charset: str) -> Iterator[str]:
    """The link labels of a PEP 503 root listing, parsed as the bytes arrive."""
    parser = LinkParser()
    try:
        decoder = codecs.getincrementaldecoder(charset)()
    except LookupError as error:
        raise InvalidInput(f"cannot decode the {WHERE} as {charset!r}: {error}") from None
    while True:
        chunk = body.read(READ_CHUNK)
        try:
            feed_bounded(parser, [decoder.decode(chunk, final=not chunk)], WHERE, close=False)
        except UnicodeDecodeError as error:
            raise InvalidInput(f"cannot decode the {WHERE} as {charset!r}: {error}") from None
        yield from (label for _, label in parser.links)
        parser.links.clear()
        if not chunk:
            break
    parser.close()
    if not parser.complete:
        raise InvalidInput(f"{WHERE}: the HTML ends before </body> or </html> (truncated?)")
