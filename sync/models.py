"""The data the sync moves: a project's page as parsed from upstream, and the files it names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

MAX_NAME_LENGTH = 200
# A project name as PEP 508 allows it (before normalisation), of at most MAX_NAME_LENGTH characters: ASCII only
# (re.ASCII: no letter outside A-Z matches, such as U+017F long s or U+212A Kelvin sign).
_NAME = rf"[A-Za-z0-9](?:[A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 2}}}[A-Za-z0-9])?"
PROJECT_NAME = re.compile(_NAME, re.ASCII)
NAME_LINES = re.compile(rf"(?:{_NAME}\n)*{_NAME}", re.ASCII)  # names joined by newlines, for a batch
MAX_SERIAL = 2**63  # serials are 0 <= s < MAX_SERIAL: what every store and the next run can read back


class InvalidInput(ValueError):
    """Upstream sent something the mirror refuses to store or publish; the message names it."""


def normalize_project_name(name: str) -> str:
    """PEP 503 normalised name (packaging's canonicalize_name), after checking that `name` is a valid project name."""
    if not PROJECT_NAME.fullmatch(name):
        raise InvalidInput(f"invalid project name {name!r}")
    return canonicalize_name(name)


def normalize_project_names(names: list[str]) -> list[str]:
    """normalize_project_name of each name, checked and normalised as one newline-joined string when all are valid:
    a call per name costs ~1 µs, which is seconds for PyPI's million. Separators never reach a line's edge in a
    valid name, so canonicalize_name of the joined names is the joined canonical names."""
    joined = "\n".join(names)
    if names and joined.count("\n") == len(names) - 1 and NAME_LINES.fullmatch(joined):
        return canonicalize_name(joined).split("\n")
    return [normalize_project_name(name) for name in names]


@dataclass(frozen=True)
class DistFile:
    """One distribution file of a project, as the upstream page describes it."""

    filename: str
    url: str  # absolute upstream URL, fragment removed
    sha256: str  # lower-case hex
    key: str  # where the mirror stores it: "packages/…/<filename>"
    size: int | None = None  # PEP 700; None only when the upstream page did not say
    upload_time: str | None = None  # PEP 700 ISO 8601 string as upstream gave it
    requires_python: str | None = None
    yanked: bool | str = False  # PEP 592: False, True, or the reason
    metadata_sha256: str | None = None  # PEP 658/714 core metadata hash, when upstream serves `.metadata`
    has_metadata: bool = False  # upstream serves `<url>.metadata`
    provenance: str | None = None  # PEP 740 provenance URL (absolute) as the page gives it
    provenance_sha256: str | None = None  # sha256 of the provenance document the mirror stores beside the file

    @property
    def metadata_key(self) -> str:
        return self.key + ".metadata"

    @property
    def provenance_key(self) -> str:
        return self.key + ".provenance"


@dataclass(frozen=True)
class ProjectStatus:
    """PEP 792 project status marker: `status` is one of PROJECT_STATUSES; `reason` free text, when given."""

    status: str = "active"
    reason: str | None = None

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"


@dataclass(frozen=True)
class ProjectPage:
    """A project's simple page: the unit the mirror publishes atomically."""

    name: str  # the project's display name
    last_serial: int | None
    files: tuple[DistFile, ...]
    versions: tuple[str, ...] = ()
    etag: str | None = None  # upstream ETag of the page, reused on the next request
    status: ProjectStatus | None = None  # PEP 792; None when the page carries no marker
    normalized: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "normalized", normalize_project_name(self.name))
