"""The mirror's private state, kept in the destination itself: upstream serials and ETags per project."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sync.storage import STATE_PREFIX, Storage, StorageError

STATE_KEY = STATE_PREFIX + "state.json"
STATE_FORMAT = 1


@dataclass
class ProjectState:
    serial: int | None  # upstream `_last-serial` of the published page
    etag: str | None  # upstream ETag of that page, sent back as If-None-Match


@dataclass
class MirrorState:
    """What the mirror holds, as of the last run that finished (or checkpointed)."""

    serial: int | None = None  # upstream change-feed serial everything up to which is mirrored
    projects: dict[str, ProjectState] = field(default_factory=dict)  # normalized name -> state
    incomplete: bool = False  # a run started and did not finish: files may be stored without a page naming them
    pending: dict[str, int | None] = field(default_factory=dict)  # projects that failed: retried next run

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "serial": self.serial,
                "incomplete": self.incomplete,
                "pending": dict(sorted(self.pending.items())),
                "projects": {name: [p.serial, p.etag] for name, p in sorted(self.projects.items())},
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> MirrorState:
        try:
            raw = json.loads(data)
            if raw.get("format") != STATE_FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            return cls(
                serial=raw["serial"],
                incomplete=bool(raw["incomplete"]),
                pending={str(name): serial for name, serial in raw["pending"].items()},
                projects={name: ProjectState(serial, etag) for name, (serial, etag) in raw["projects"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StorageError(f"{STATE_KEY}: unreadable mirror state ({error})") from None


def load_state(storage: Storage) -> MirrorState | None:
    """The stored state, or None for a destination no run has finished on."""
    found = storage.get_bytes(STATE_KEY)
    return None if found is None else MirrorState.from_json(found[0])


def save_state(storage: Storage, state: MirrorState) -> None:
    storage.put_bytes(STATE_KEY, state.to_json(), content_type="application/json", cache_control="no-store")
