"""The XML-RPC change feed, as bytes: the calls the client sends (changelog_since_serial, changelog_last_serial) and
what their answers mean. Sending them is the client's (`sync.upstream`); parsing an answer is bounded
(`sync.safe_parse.load_xmlrpc`)."""

from __future__ import annotations

import logging
import math
import xmlrpc.client
from typing import Any, NamedTuple

from sync.models import MAX_SERIAL, InvalidInput
from sync.safe_parse import load_xmlrpc

LOG = logging.getLogger(__name__)

CONTENT_TYPE = "text/xml"
NO_XMLRPC_STATUSES = frozenset({404, 405, 501})  # the upstream has no XML-RPC endpoint at all
METHOD_NOT_FOUND = -32601
CHANGELOG_PAGE_ROWS = 50_000  # PyPI's cap on one changelog_since_serial answer: a full answer means "ask again"
MAX_CHANGELOG_CALLS = 200

REMOVE_PROJECT = "remove project"  # Warehouse's journal action when a project is deleted


class ChangeEvent(NamedTuple):
    """One changelog row: the project (as upstream spells it), its serial, its Unix time, and whether it deleted
    the project (which confirms a 404 at once: `sync.plan`)."""

    name: str
    serial: int
    at: float
    removes_project: bool = False


class FeedError(Exception):
    """An answer that breaks the protocol (a fault, a malformed body); the message says which call."""


def request(method: str, *params: int) -> bytes:
    """An XML-RPC call of `method` with integer params; one past XML-RPC's 32 bits goes as <i8>, as Python's and
    PyPI's servers read it (xmlrpc.client.dumps refuses it, and a serial past 2**31 would stop every run)."""
    values = "".join(
        f"<param><value><{_int_tag(value)}>{value:d}</{_int_tag(value)}></value></param>" for value in params
    )
    return (
        f"<?xml version='1.0'?>\n<methodCall>\n<methodName>{method}</methodName>\n<params>{values}</params>\n"
        "</methodCall>\n"
    ).encode()


def _int_tag(value: int) -> str:
    return "int" if xmlrpc.client.MININT <= value <= xmlrpc.client.MAXINT else "i8"


def answer(body: bytearray, method: str) -> Any:
    """The one value an answer to `method` carries; None when the upstream does not know the method (so: no feed)."""
    try:
        params = load_xmlrpc(body, f"answer to {method}")
    except xmlrpc.client.Fault as fault:
        if fault.faultCode == METHOD_NOT_FOUND:
            return None
        raise FeedError(f"{method} failed: {fault.faultString}") from None
    except InvalidInput as error:
        raise FeedError(f"malformed answer to {method}: {error}") from None
    if len(params) != 1:
        raise FeedError(f"malformed answer to {method}: {len(params)} values, not 1")
    return params[0]


def changelog_events(rows: object, where: str) -> list[ChangeEvent]:
    """The events of a changelog_since_serial answer; a malformed row is skipped with one log line naming `where`."""
    if not isinstance(rows, list):
        raise FeedError(f"changelog_since_serial answered {type(rows).__name__}")
    return [event for row in rows if (event := _changelog_event(row, where)) is not None]


def _changelog_event(row: object, where: str) -> ChangeEvent | None:
    """The event of a [name, version, timestamp, action, serial] row; None (and one log line)
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
            return ChangeEvent(name, serial, float(timestamp), row[3] == REMOVE_PROJECT)
    LOG.warning("%s: skipping malformed changelog row %.200r", where, row)
    return None
