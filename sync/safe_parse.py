"""Bounded parsers for what upstream sends: the memory a JSON, HTML or XML answer can cost is capped before or while
it is parsed, whatever its nesting or shape, so a small hostile answer cannot grow a run past its memory budget.

- **JSON pages and XML-RPC answers** are parsed whole, after an upper bound of what parsing costs is computed from a
  cheap count of their structural bytes (each value costs at most VALUE_COST bytes as Python objects, and the text
  at most JSON_TEXT_WIDTH times its size); over MAX_PARSE_COST, the answer is refused unparsed. XML-RPC answers with
  a DTD (the only source of XML entity expansion) are refused.
- **The JSON root listing** streams: nesting past MAX_LISTING_DEPTH, or a single token (a string, a number, a run
  of blanks) past MAX_TOKEN_BYTES, is refused while reading, and the parser's event batches stay small.
- **HTML** is fed in chunks; a construct that stays open past MAX_TOKEN_BYTES (an unclosed comment, tag or
  attribute) is refused rather than buffered and rescanned, and so is a page whose parsing takes MAX_PARSE_SECONDS
  or whose links would take MAX_LINKS_COST.
"""

from __future__ import annotations

import json
import re
import time
import xmlrpc.client
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from typing import Any, Protocol
from xml.parsers.expat import ExpatError

import ijson

from sync.models import InvalidInput

MAX_PARSE_COST = 136 * 2**20  # bytes one parsed answer may cost: PyPI's largest page (ddtrace, 21 MB) is ~112 MiB
VALUE_COST = 72  # bytes, the most one JSON value or XML-RPC <value> costs with its separator, over every shape
ESCAPE_COST = 64  # bytes more for a \u escape: it can make a one-character string cost 76 (bench/hostile_memory.py)
MAX_LINKS_COST = 48 * 2**20  # bytes the links of one HTML page may take (PyPI's largest: ~33 MB)
MAX_PARSE_SECONDS = 60.0  # of CPU-bound HTML parsing per page or listing: HTMLParser takes ~20 µs a tag
MAX_LISTING_DEPTH = 16  # the root listing needs 3 (object > projects array > entry object)
MAX_TOKEN_BYTES = 4 * 2**20  # the longest single JSON token or open HTML construct read
EVENT_BUFFER = 64 * 2**10  # bytes ijson parses per batch: a batch holds at most this many events
_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # a UTF-8 lead byte of a character past U+FFFF: 4 bytes a character in a str
_WIDE = re.compile(rb"[\xc4-\xef]")  # a lead byte of a character past U+00FF: 2 bytes a character


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def text_width(body: bytes | bytearray) -> int:
    """Bytes a character of `body` (UTF-8) takes once decoded to a Python str: 1, 2 or 4."""
    if body.isascii():
        return 1
    return 4 if _ASTRAL.search(body) else 2 if _WIDE.search(body) else 1


def json_cost(body: bytes | bytearray) -> int:
    """An upper bound of the bytes json.loads(body) allocates: the bytes, their text and every value."""
    values = 1 + sum(body.count(separator) for separator in (b"{", b"[", b",", b":"))
    return len(body) * (1 + text_width(body)) + values * VALUE_COST + body.count(b"\\u") * ESCAPE_COST


def load_json(body: bytes | bytearray, what: str, max_cost: int = MAX_PARSE_COST) -> object:
    """A whole JSON document (UTF-8), refused unparsed when json_cost says it could cost more than `max_cost`.
    A bytearray `body` is consumed: emptied once decoded, so that the bytes and their text are not held beside the
    document."""
    cost = json_cost(body)
    if cost > max_cost:
        raise InvalidInput(f"{what}: parsing it could take {cost >> 20} MiB, over the {max_cost >> 20} MiB limit")
    try:
        text = body.decode("utf-8")
        if isinstance(body, bytearray):
            body.clear()
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise InvalidInput(f"{what}: not valid JSON ({error})") from None


def load_xmlrpc(body: bytes | bytearray, what: str, max_cost: int = MAX_PARSE_COST) -> tuple[Any, ...]:
    """The params of an XML-RPC answer (xmlrpc.client.loads, builtin types); Fault as loads raises it, InvalidInput
    when it is malformed, carries a DTD or could cost more than `max_cost`."""
    cost = len(body) * 2 + (1 + body.count(b"<value")) * VALUE_COST
    if cost > max_cost:
        raise InvalidInput(f"{what}: parsing it could take {cost >> 20} MiB, over the {max_cost >> 20} MiB limit")
    parser, unmarshaller = xmlrpc.client.getparser(use_builtin_types=True)
    # The ExpatParser's pyexpat object (not in typeshed): a DTD is refused through its hooks.
    expat = parser._parser  # pyright: ignore[reportAttributeAccessIssue]

    def refuse_dtd(*_: object) -> None:
        raise InvalidInput(f"{what}: an XML-RPC answer has no DTD (entity expansion refused)")

    expat.StartDoctypeDeclHandler = refuse_dtd
    expat.EntityDeclHandler = refuse_dtd
    try:
        parser.feed(body)
        parser.close()
        return unmarshaller.close()
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError, IndexError) as error:
        if isinstance(error, InvalidInput):
            raise
        raise InvalidInput(f"{what}: malformed answer ({error})") from None


class _TokenGuard:
    """A stream that refuses to read on once MAX_TOKEN_BYTES went by without the parser reporting an event."""

    def __init__(self, body: Readable, where: str):
        self._body, self._where = body, where
        self.total = self.mark = 0

    def read(self, size: int = -1) -> bytes:
        if self.total - self.mark > MAX_TOKEN_BYTES:
            raise InvalidInput(f"{self._where}: a single JSON token is longer than {MAX_TOKEN_BYTES} bytes")
        chunk = self._body.read(size)
        self.total += len(chunk)
        return chunk


def json_events(body: Readable, where: str) -> Iterator[tuple[str, Any]]:
    """(event, value) of a streamed JSON document, as ijson.basic_parse gives them, with the bounds of the module doc:
    InvalidInput once nesting passes MAX_LISTING_DEPTH or one token MAX_TOKEN_BYTES."""
    guard = _TokenGuard(body, where)
    depth = 0
    try:
        for event, value in ijson.basic_parse(guard, buf_size=EVENT_BUFFER):
            guard.mark = guard.total
            if event in ("start_map", "start_array"):
                depth += 1
                if depth > MAX_LISTING_DEPTH:
                    raise InvalidInput(f"{where}: nested deeper than {MAX_LISTING_DEPTH} levels")
            elif event in ("end_map", "end_array"):
                depth -= 1
            yield event, value
    except (ijson.JSONError, UnicodeDecodeError) as error:  # a lone surrogate escape (`"\\udc00"`) is not UTF-8
        raise InvalidInput(f"{where}: not valid JSON ({str(error).splitlines()[0]})") from None


def feed_bounded(parser: HTMLParser, chunks: Iterable[str], where: str, *, close: bool = True) -> None:
    """Feed `chunks` to `parser` (then close it); InvalidInput once the text it holds back (an unfinished construct)
    grows past MAX_TOKEN_BYTES, before HTMLParser would buffer and rescan it chunk after chunk, or once parsing has
    taken MAX_PARSE_SECONDS."""
    give_up = time.monotonic() + MAX_PARSE_SECONDS
    for chunk in chunks:
        for start in range(0, len(chunk), EVENT_BUFFER):
            parser.feed(chunk[start : start + EVENT_BUFFER])
            if time.monotonic() > give_up:
                raise InvalidInput(f"{where}: parsing the HTML took over {MAX_PARSE_SECONDS:.0f} s")
            if len(parser.rawdata) > MAX_TOKEN_BYTES:
                raise InvalidInput(f"{where}: an HTML tag or comment is left open for over {MAX_TOKEN_BYTES} bytes")
    if close:
        parser.close()
