"""Compact, sorted maps keyed by normalized project name, for PyPI-sized listings, plans and mirror state.

A dict of PyPI's ~930,000 projects costs over 100 MB. `SortedTable` holds them as one sorted byte string of
`key<TAB>value<LF>` lines plus 4-byte line offsets: about 30 bytes a project for a name and a serial. It is built
by sorting runs of at most RUN_ENTRIES lines and merging them, so building never holds more than one run as Python
objects.
"""

from __future__ import annotations

import heapq
import io
import os
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from itertools import chain, islice

RUN_ENTRIES = 65_536
SPILL_WRITE = 2**20  # bytes a SpilledTable writes at a time
SPILL_READ = 2**16  # bytes it reads at a time while iterated: a save merges up to MAX_TABLES of them at once
_FIELD = b"\t"
_LINE = b"\n"
_KEY_BYTES = bytes(range(0x21, 0x7F))  # printable ASCII but the space: all of them sort after the field separator


class SortedTable:
    """Byte keys → byte values, sorted by key. Keys are printable ASCII without spaces; values hold no newline.

    `combine(a, b)` makes one value of two given for the same key, in no particular order; by default a key given
    twice is a ValueError.
    """

    def __init__(
        self, entries: Iterable[tuple[bytes, bytes]] = (), combine: Callable[[bytes, bytes], bytes] | None = None
    ):
        runs: list[bytes] = []
        run: list[bytes] = []
        for key, value in entries:
            run.append(_line(key, value))
            if len(run) >= RUN_ENTRIES:
                runs.append(b"".join(sorted(run)))
                run.clear()
        runs.append(b"".join(sorted(run)))
        del run
        # Sized up front and cut to length at the end: growing it would copy it, twice its size at a time.
        blob = bytearray(sum(map(len, runs)))
        offsets = array("I")  # 4 bytes a line: a table's byte string stays under 4 GiB (~80 million projects)
        end, previous = 0, b""
        for line in heapq.merge(*(io.BytesIO(r) for r in runs)):
            key, _, value = line[:-1].partition(_FIELD)
            if key == previous:
                if combine is None:
                    raise ValueError(f"{key.decode()!r} is given twice")
                end = offsets.pop()
                value = combine(self._value_at(blob, end), value)
            entry = key + _FIELD + value + _LINE
            offsets.append(end)
            blob[end : end + len(entry)] = entry
            end += len(entry)
            previous = key
        del blob[end:]
        self._blob = blob
        self._offsets = offsets

    @classmethod
    def from_sorted(cls, entries: Iterable[tuple[bytes, bytes]]) -> SortedTable:
        """A table of entries already in strictly ascending key order (ValueError otherwise), built without sorting:
        the only copy held is the table itself (sized exactly when `entries` is a list)."""
        table = cls()
        if isinstance(entries, list):
            table._blob = bytearray(sum(len(key) + len(value) + 2 for key, value in entries))
        blob, offsets, end, previous = table._blob, table._offsets, 0, b""
        for key, value in entries:
            if key <= previous:
                raise ValueError(f"{key.decode(errors='replace')!r} is out of order or given twice")
            line = _line(key, value)
            offsets.append(end)
            blob[end : end + len(line)] = line
            end += len(line)
            previous = key
        del blob[end:]
        return table

    def __len__(self) -> int:
        return len(self._offsets)

    def get(self, key: bytes) -> bytes | None:
        offsets = self._offsets
        # Outside the key range: no search. Tables made from changes in name order (a first full sync) cover
        # ranges that do not overlap, so a lookup skips all but one of them.
        if not offsets or key < self._key_at(offsets[0]) or key > self._key_at(offsets[-1]):
            return None
        index = bisect_left(offsets, key, key=self._key_at)
        if index < len(self._offsets) and self._key_at(self._offsets[index]) == key:
            return self._value_at(self._blob, self._offsets[index])
        return None

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order."""
        blob = self._blob
        ends = chain(islice(self._offsets, 1, None), (len(blob),))
        for start, end in zip(self._offsets, ends, strict=False):  # `ends` is one longer for an empty table
            key, _, value = blob[start : end - 1].partition(_FIELD)
            yield bytes(key), bytes(value)

    def _key_at(self, offset: int) -> bytearray:
        return self._blob[offset : self._blob.index(_FIELD, offset)]

    @staticmethod
    def _value_at(blob: bytearray, offset: int) -> bytes:
        return bytes(blob[blob.index(_FIELD, offset) + 1 : blob.index(_LINE, offset)])


class SpilledTable:
    """A SortedTable whose lines live in an unnamed temporary file, read with `pread`: in memory only its 4-byte line
    offsets and its first and last keys, so a table no lookup reaches costs no page of RSS. Immutable; reads from
    several threads at once are safe (no shared file position)."""

    def __init__(self, entries: Iterable[tuple[bytes, bytes]]):
        """From entries in strictly ascending key order (ValueError otherwise), written out as they come."""
        self._file = tempfile.TemporaryFile(prefix="pypi-cdn-table-")  # noqa: SIM115 - open as long as the table
        self._offsets = array("I")
        self._first = self._last = b""
        buffered: list[bytes] = []
        size = pending = 0
        for key, value in entries:
            if key <= self._last:
                raise ValueError(f"{key.decode(errors='replace')!r} is out of order or given twice")
            line = _line(key, value)
            self._offsets.append(size)
            self._first = self._first or key
            self._last = key
            buffered.append(line)
            size += len(line)
            pending += len(line)
            if pending >= SPILL_WRITE:
                self._file.write(b"".join(buffered))
                buffered.clear()
                pending = 0
        self._file.write(b"".join(buffered))
        self._file.flush()
        self._size = size

    def __len__(self) -> int:
        return len(self._offsets)

    def get(self, key: bytes) -> bytes | None:
        if not self._offsets or key < self._first or key > self._last:
            return None
        index = bisect_left(range(len(self._offsets)), key, key=lambda at: self._line_at(at)[0])
        if index < len(self._offsets):
            found, value = self._line_at(index)
            if found == key:
                return value
        return None

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order, read SPILL_READ bytes at a time."""
        descriptor, position, rest = self._file.fileno(), 0, b""
        while position < self._size:
            chunk = os.pread(descriptor, min(SPILL_READ, self._size - position), position)
            if not chunk:
                raise OSError(f"table file ended at {position:,} of {self._size:,} bytes")
            position += len(chunk)
            *lines, rest = (rest + chunk).split(_LINE)
            for line in lines:
                key, _, value = line.partition(_FIELD)
                yield key, value

    def _line_at(self, index: int) -> tuple[bytes, bytes]:
        start = self._offsets[index]
        end = self._offsets[index + 1] if index + 1 < len(self._offsets) else self._size
        key, _, value = os.pread(self._file.fileno(), end - start, start)[:-1].partition(_FIELD)
        return key, value


class ProjectListing(Mapping[str, int | None]):
    """Normalized name → serial (None when unknown), sorted by name; a name given twice keeps its higher serial."""

    def __init__(self, pairs: Iterable[tuple[str, int | None]] = ()):
        self._table = SortedTable(((encode_name(n), _serial_field(s)) for n, s in pairs), combine=_higher_serial)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, name: str) -> int | None:
        found = self._table.get(name.encode("ascii")) if name.isascii() else None
        if found is None:
            raise KeyError(name)
        return _serial_of(found)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.isascii() and self._table.get(name.encode("ascii")) is not None

    def __iter__(self) -> Iterator[str]:
        for key, _ in self._table:
            yield key.decode("ascii")

    def items(self) -> ItemsView[str, int | None]:
        return _ListingItems(self)

    def lines(self) -> Iterator[tuple[str, int | None]]:
        """(name, serial) in name order."""
        for key, value in self._table:
            yield key.decode("ascii"), _serial_of(value)


class _ListingItems(ItemsView[str, int | None]):
    """Items read in one pass over the table, not looked up one name at a time."""

    _mapping: ProjectListing

    def __iter__(self) -> Iterator[tuple[str, int | None]]:
        return self._mapping.lines()


def encode_name(name: str) -> bytes:
    """A normalized project name as a table key; ValueError for a string no table can hold as a key."""
    key = name.encode("ascii", errors="replace")
    # Lines sort as their keys only if no key byte sorts below the field separator: printable ASCII does not.
    if not key or key.translate(None, _KEY_BYTES) or not name.isascii():
        raise ValueError(f"{name[:80]!r} is not a normalized project name")
    return key


def _line(key: bytes, value: bytes) -> bytes:
    if not key or key.translate(None, _KEY_BYTES):
        raise ValueError(f"{key[:80].decode(errors='replace')!r} is not a normalized project name")
    if _LINE in value:
        raise ValueError(f"value {value[:80]!r} of {key.decode()!r} holds a newline")
    return key + _FIELD + value + _LINE


def _serial_field(serial: int | None) -> bytes:
    return b"" if serial is None else b"%d" % serial


def _serial_of(field: bytes) -> int | None:
    return int(field) if field else None


def _higher_serial(first: bytes, second: bytes) -> bytes:
    return max(first, second, key=lambda field: -1 if not field else int(field))
