"""The mirror's private state, kept in the destination itself: upstream serials and ETags per project.

Stored as JSON Lines: a header object, then one `[name, serial, etag]` array per project in name order. Held in
memory as a `ProjectStates` table, so a mirror of all of PyPI (~930,000 projects) loads, changes and saves its state
in tens of MB; the rows a run changes go to temporary files (`SpilledTable`), so a first whole-index run does not
grow with the index.
"""

from __future__ import annotations

import heapq
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from itertools import islice
from typing import cast

from sync.layout import STATE_KEY, cache_control_for, content_type_for
from sync.listing import SortedTable, SpilledTable, encode_name
from sync.models import MAX_SERIAL
from sync.storage import ObjectNotFound, Storage, StorageError, put_chunks

STATE_FORMAT = 2
FOLD_AFTER_CHANGES = 16_384
MAX_TABLES = 64
_REMOVED = b""  # a table row that records a removal
SAVE_BATCH = 4096  # project lines joined into one chunk while saving
# A project line as this module writes it: a name without quote or backslash, a canonical serial (or null), an ASCII
# ETag without control characters or escapes but `\"` (or null). Such a line is checked by this pattern alone, and
# its `serial,etag` bytes are stored as they are; any other line goes through the JSON parser.
_CANONICAL_ROW = re.compile(rb'\["([!#-\[\]-~]+)",(null|0|[1-9][0-9]{0,18}),(null|"(?:[ !#-\[\]-~]|\\")*")\]\n?')


@dataclass(slots=True)
class ProjectState:
    serial: int | None  # upstream `_last-serial` of the published page
    etag: str | None  # upstream ETag of that page, sent back as If-None-Match


class ProjectStates(MutableMapping[str, ProjectState]):
    """Normalized name → ProjectState, compact: sorted tables of stored rows plus the changes since the last one.

    Every FOLD_AFTER_CHANGES changes become one more table, spilled to a temporary file (newest wins, an empty value
    marks a removal); saving merges the tables as it streams them out, so no step ever holds two copies of a
    PyPI-sized state. Only past MAX_TABLES are the tables merged into one (also spilled). Rows are kept as stored
    (`serial,etag` in JSON), so saving copies bytes rather than encoding them again.
    """

    def __init__(self, projects: Iterable[tuple[str, ProjectState]] = ()):
        self._tables: list[SortedTable | SpilledTable] = [
            SortedTable((encode_name(name), _encode(state)) for name, state in projects)
        ]
        self._changes: dict[str, ProjectState | None] = {}  # None: removed
        self._size = len(self._tables[0])

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[bytes, bytes]]) -> ProjectStates:
        """From (key, stored state) pairs in name order, as `rows()` gives them."""
        states = cls()
        states._tables = [SortedTable.from_sorted(rows)]
        states._size = len(states._tables[0])
        return states

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> ProjectState:
        # Safe beside one writer thread: the changes are read before the tables, and a fold adds their table before
        # it empties the changes, so whatever pair is read holds every change.
        changes = self._changes
        tables = self._tables
        found = changes.get(name) if name in changes else self._stored(tables, name)
        if found is None:
            raise KeyError(name)
        return found

    @staticmethod
    def _stored(tables: list[SortedTable | SpilledTable], name: str) -> ProjectState | None:
        if not name.isascii():
            return None
        key = name.encode("ascii")
        for table in reversed(tables):
            value = table.get(key)
            if value is not None:
                return _decode(value) if value else None
        return None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __setitem__(self, name: str, state: ProjectState) -> None:
        encode_name(name)
        self._size += name not in self
        self._changes[name] = state
        self._fold_if_due()

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._size -= 1
        self._changes[name] = None
        self._fold_if_due()

    def __iter__(self) -> Iterator[str]:
        for key, _ in self.rows():
            yield key.decode("ascii")

    def states(self) -> Iterator[tuple[str, ProjectState]]:
        """(name, state) in name order."""
        for key, value in self.rows():
            yield key.decode("ascii"), _decode(value)

    def rows(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, stored state) in name order: the tables and the changes merged as they are read."""
        tables = self._tables
        return _overlay(iter(tables[0]) if len(tables) == 1 else _newest(tables), self._sorted_changes())

    def _fold_if_due(self) -> None:
        if len(self._changes) < FOLD_AFTER_CHANGES:
            return
        self._tables = [*self._tables, SpilledTable(self._sorted_changes())]
        self._changes = {}
        if len(self._tables) > MAX_TABLES:
            self._tables = [SpilledTable(self.rows())]

    def _sorted_changes(self) -> list[tuple[bytes, bytes]]:
        return sorted(
            (encode_name(name), _REMOVED if state is None else _encode(state)) for name, state in self._changes.items()
        )


@dataclass
class MirrorState:
    """What the mirror holds, as of the last run that finished (or checkpointed)."""

    serial: int | None = None  # upstream change-feed serial everything up to which is mirrored
    projects: ProjectStates = field(default_factory=ProjectStates)  # normalized name -> state
    incomplete: bool = False  # a run started and did not finish: files may be stored without a page naming them
    pending: dict[str, int | None] = field(default_factory=dict)  # projects that failed: retried next run
    quarantined: set[str] = field(default_factory=set)  # PEP 792: published without files, left out of the root
    # Projects the last sync found gone upstream (404, or no file left), unconfirmed: the next sync that finds the
    # same removes them. Stored only when there are some, so a state without it reads as before (and older code
    # reads this one).
    missing: set[str] = field(default_factory=set)
    etag: str | None = field(default=None, compare=False)  # of the stored state this was loaded from (not stored)

    def __post_init__(self) -> None:
        if not isinstance(self.projects, ProjectStates):  # a plain mapping, as tests and tools build one
            self.projects = ProjectStates(cast(Mapping[str, ProjectState], self.projects).items())

    def json_lines(self) -> Iterator[bytes]:
        """The stored form: a header object, then `[name, serial, etag]` per project in name order. ValueError,
        before anything is written, on a serial the next run could not read back."""
        for serial in (self.serial, *self.pending.values()):
            _optional_int(serial)
        header: dict[str, object] = {
            "format": STATE_FORMAT,
            "serial": self.serial,
            "incomplete": self.incomplete,
            "pending": dict(sorted(self.pending.items())),
            "projects": len(self.projects),
        }
        if self.quarantined:  # only then: a state without any stays byte for byte what it was
            header["quarantined"] = sorted(self.quarantined)
        if self.missing:
            header["missing"] = sorted(self.missing)
        yield json.dumps(header, separators=(",", ":")).encode() + b"\n"
        rows = self.projects.rows()
        while batch := b"".join(b'["%s",%s]\n' % row for row in islice(rows, SAVE_BATCH)):
            yield batch

    def to_json(self) -> bytes:
        return b"".join(self.json_lines())

    @classmethod
    def from_json(cls, data: bytes) -> MirrorState:
        return cls.from_lines(io.BytesIO(data))

    @classmethod
    def from_lines(cls, lines: Iterable[bytes]) -> MirrorState:
        """Parse the stored form line by line; StorageError naming the state file if it is not one."""
        try:
            rows = iter(lines)
            header = json.loads(next(rows, b"null"))
            if not isinstance(header, dict) or header.get("format") != STATE_FORMAT:
                found = header.get("format") if isinstance(header, dict) else header
                raise ValueError(f"unknown format {found!r}")
            projects = ProjectStates.from_rows(map(_stored_row, rows))
            if len(projects) != header["projects"]:
                raise ValueError(f"{len(projects)} projects where the header says {header['projects']} (truncated?)")
            return cls(
                serial=_optional_int(header["serial"]),
                incomplete=bool(header["incomplete"]),
                pending={str(name): _optional_int(serial) for name, serial in header["pending"].items()},
                projects=projects,
                quarantined={str(name) for name in header.get("quarantined", ())},
                missing={encode_name(name).decode() for name in _names(header.get("missing", []))},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StorageError(f"{STATE_KEY}: unreadable mirror state ({error})") from None


def load_state(storage: Storage) -> MirrorState | None:
    """The stored state, read as it streams in, with the ETag of the version read (comparing it with the stored
    one's says whether another run saved meanwhile); None for a destination no run has finished on."""
    try:
        with storage.open(STATE_KEY) as stream:
            state = MirrorState.from_lines(stream)
            state.etag = stream.etag
            return state
    except ObjectNotFound:
        return None


def save_state(storage: Storage, state: MirrorState) -> None:
    put_chunks(
        storage,
        STATE_KEY,
        state.json_lines(),
        content_type=content_type_for(STATE_KEY),
        cache_control=cache_control_for(STATE_KEY),
    )


def _stored_row(line: bytes) -> tuple[bytes, bytes]:
    """(key, stored state) of one `[name, serial, etag]` line, checked in full."""
    canonical = _CANONICAL_ROW.fullmatch(line)
    if canonical is not None and (len(canonical[2]) < 19 or int(canonical[2]) < MAX_SERIAL):
        return canonical[1], line[canonical.start(2) : canonical.end(3)]
    row = json.loads(line)
    if not isinstance(row, list) or len(row) != 3 or not isinstance(row[0], str):
        raise ValueError(f"bad project row {row!r:.80}")
    name, serial, etag = row
    if etag is not None and not isinstance(etag, str):
        raise ValueError(f"bad ETag in project row {row!r:.80}")
    return encode_name(name), _encode(ProjectState(_optional_int(serial), etag))


def _names(value: object) -> list[str]:
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        return value
    raise ValueError(f"{value!r:.80} is not a list of names")


def _optional_int(value: object) -> int | None:
    """A stored serial: None, or an int with 0 <= value < 2**63 (what the next run reads back); else ValueError."""
    if value is None or (type(value) is int and 0 <= value < MAX_SERIAL):
        return value
    raise ValueError(f"{value!r:.40} is not a serial")


def _encode(state: ProjectState) -> bytes:
    """A ProjectState as stored: `serial,etag` in JSON (which escapes any tab or newline in the ETag)."""
    _optional_int(state.serial)
    return json.dumps([state.serial, state.etag], separators=(",", ":"))[1:-1].encode()


def _decode(value: bytes) -> ProjectState:
    serial, etag = json.loads(b"[%s]" % value)
    return ProjectState(serial, etag)


def _newest(tables: list[SortedTable | SpilledTable]) -> Iterator[tuple[bytes, bytes]]:
    """The rows of `tables` merged in key order, the newest table's row of each key (unless a removal)."""
    previous = None
    # Newest table first among equal keys; the first row of each key is the one that counts.
    for key, _, value in heapq.merge(*(_ranked(table, -rank) for rank, table in enumerate(tables))):
        if key != previous and value != _REMOVED:
            yield key, value
        previous = key


def _overlay(rows: Iterator[tuple[bytes, bytes]], changes: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    """`rows` (in key order, no removals) with `changes` (in key order, few) merged in: a change replaces the row of
    its key, a removal drops it."""
    return _merged(rows, changes) if changes else rows


def _merged(rows: Iterator[tuple[bytes, bytes]], changes: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    pending = iter(changes)
    change = next(pending, None)
    for row in rows:
        while change is not None and change[0] < row[0]:
            if change[1] != _REMOVED:
                yield change
            change = next(pending, None)
        if change is not None and change[0] == row[0]:
            if change[1] != _REMOVED:
                yield change
            change = next(pending, None)
        else:
            yield row
    while change is not None:
        if change[1] != _REMOVED:
            yield change
        change = next(pending, None)


def _ranked(table: SortedTable | SpilledTable, rank: int) -> Iterator[tuple[bytes, int, bytes]]:
    for key, value in table:
        yield key, rank, value
