"""Checks on single values upstream sends — file names, hashes, storage keys, serials and free text — each returning
the value when it is safe to store and publish, else raising InvalidInput naming where it came from and what it was.
Project names are checked where they are normalised: `sync.models.normalize_project_name`."""

from __future__ import annotations

import re

from sync.layout import FILES_PREFIX
from sync.models import MAX_SERIAL, InvalidInput

SHA256_HEX = re.compile(r"\A[0-9a-f]{64}\Z")
MAX_FILENAME_LENGTH = 255
MAX_KEY_BYTES = 900  # S3 allows 1024 for the whole key: room for a destination prefix and ".metadata"
UNSAFE_CHARACTERS = frozenset({"/", "\\", "\x7f", *map(chr, range(32))})
UNSAFE_TEXT = frozenset(map(chr, range(32))) - {"\t", "\n", "\r"} | {"\x7f"}
SERIAL_DIGITS = len(str(MAX_SERIAL))
_FILES_ROOT = FILES_PREFIX.rstrip("/")


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
    elif not encodable(filename):
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
        or segments[0] != _FILES_ROOT
        or segments[-1] != filename
        or any(not s or s in (".", "..") or not UNSAFE_CHARACTERS.isdisjoint(s) for s in segments)
        or not encodable(key)
        or len(key.encode()) > MAX_KEY_BYTES
    ):
        raise InvalidInput(f"{project}: file {filename!r}: storage path {key!r} is not a safe {FILES_PREFIX}… path")
    return key


def check_serial(where: str, value: object) -> int:
    """`value` when it is a serial (an int, 0 <= value < 2**63); else InvalidInput "<where> <value> is not a serial"."""
    if type(value) is not int or not 0 <= value < MAX_SERIAL:
        raise InvalidInput(f"{where} {value!r:.40} is not a serial (an integer from 0 to 2**63 - 1)")
    return value


def check_page_serial(where: str, value: object) -> int | None:
    """A `_last-serial`: a serial, its decimal string (as bandersnatch mirrors write it), or None when absent."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= SERIAL_DIGITS:
        value = int(value)
    if value is None:
        return None
    return check_serial(f"{where}: _last-serial", value)


def check_text(where: str, field: str, value: object) -> str | None:
    """`value` when it is None or a string without control characters (tab and newlines allowed) or lone surrogates."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {field} {value!r} is not a string")
    if not UNSAFE_TEXT.isdisjoint(value) or not encodable(value):
        raise InvalidInput(f"{where}: {field} {value!r} contains control characters or invalid Unicode")
    return value


def encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (no lone surrogates, as a JSON "\\ud800" escape gives)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
