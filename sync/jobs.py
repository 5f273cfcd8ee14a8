"""A sync's unit of work and what came of it: a `ProjectJob` (also the queue message body), its `ProjectResult`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

from sync.models import InvalidInput, normalize_project_name
from sync.state import ProjectState


class JobError(ValueError):
    """A queue message is not a project job; the message names it."""


@dataclass(frozen=True)
class ProjectJob:
    """One project to sync, with what the mirror's state knows of it."""

    project: str  # normalized name
    serial: int | None = None  # lowest upstream serial its page may have
    changed_at: float | None = None  # Unix time of the upstream change, for the lag metric and the edge probe
    confirm_removal: bool = False  # upstream saying the project is gone is believed (listing, feed or last sync agree)
    known: ProjectState | None = None  # what the state records (serial, upstream ETag): a floor and If-None-Match
    fresh: bool = False  # the mirror is known not to hold the project: there is no published page to read
    retry: bool = False  # it failed in an earlier run, which may have stored some of its files

    def to_message(self) -> str:
        body: dict[str, object] = {"project": self.project, "serial": self.serial, "changed_at": self.changed_at}
        body["confirm_removal"] = self.confirm_removal
        if self.known is not None:
            body["known"] = [self.known.serial, self.known.etag]
        if self.fresh:
            body["fresh"] = True
        if self.retry:
            body["retry"] = True
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: str) -> ProjectJob:
        """Parse a message body; every field but `project` is optional, so older messages still parse."""
        try:
            raw = json.loads(body)
            project = normalize_project_name(raw["project"])
            serial, changed_at = raw.get("serial"), raw.get("changed_at")
            if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool)):
                raise TypeError(f"serial {serial!r} is not an integer")
            if changed_at is not None and (not isinstance(changed_at, int | float) or isinstance(changed_at, bool)):
                raise TypeError(f"changed_at {changed_at!r} is not a number")
            flags = {name: raw.get(name, False) for name in ("confirm_removal", "fresh", "retry")}
            for name, value in flags.items():
                if not isinstance(value, bool):
                    raise TypeError(f"{name} {value!r} is not a boolean")
            known = _known(raw.get("known"))
        except (ValueError, KeyError, TypeError, AttributeError, InvalidInput) as error:
            raise JobError(f"queue message {body[:200]!r} is not a project job: {error}") from None
        return cls(project, serial, changed_at, known=known, **flags)


def _known(value: object) -> ProjectState | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise TypeError(f"known {value!r:.80} is not [serial, etag]")
    serial, etag = value
    if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool)):
        raise TypeError(f"known serial {serial!r} is not an integer")
    if etag is not None and not isinstance(etag, str):
        raise TypeError(f"known etag {etag!r:.80} is not a string")
    return ProjectState(serial, etag)


class Outcome(StrEnum):
    UNCHANGED = "unchanged"
    UPDATED = "updated"
    REMOVED = "removed"
    REMOVAL_UNCONFIRMED = "removal_unconfirmed"  # upstream says gone (or no files): the old page stays, asked again
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(slots=True)
class ProjectResult:
    name: str
    outcome: Outcome
    serial: int | None = None
    etag: str | None = None
    files_stored: int = 0
    bytes_stored: int = 0
    files_deleted: int = 0
    pages_written: int = 0
    quarantined: bool = False  # the published page is a PEP 792 quarantine: no files, left out of the root listing
    errors: list[str] = field(default_factory=list)
