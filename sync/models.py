"""The data the sync moves: a project's page as parsed from upstream, and the files it names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

SHA256_HEX = re.compile(r"\A[0-9a-f]{64}\Z")
# A project name as PEP 508 allows it (before normalisation): ASCII only. Without re.ASCII, IGNORECASE lets through
# letters that match an ASCII one case-insensitively (U+017F long s, U+0131 dotless i, U+212A Kelvin sign), and the
# first two stay non-ASCII once normalised.
PROJECT_NAME = re.compile(r"\A([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE | re.ASCII)
MAX_NAME_LENGTH = 200
MAX_SERIAL = 2**63  # serials are 0 <= s < MAX_SERIAL: what every store and the next run can read back


class InvalidInput(ValueError):
    """Upstream sent something the mirror refuses to store or publish; the message names it."""


def normalize_project_name(name: str) -> str:
    """PEP 503 normalised name, after checking that `name` is a valid project name at all."""
    if len(name) > MAX_NAME_LENGTH or not PROJECT_NAME.match(name):
        raise InvalidInput(f"invalid project name {name!r}")
    return canonicalize_name(name)


def check_serial(where: str, value: object) -> int:
    """`value` when it is a serial (an int, 0 <= value < 2**63); else InvalidInput "<where> <value> is not a serial"."""
    if type(value) is not int or not 0 <= value < MAX_SERIAL:
        raise InvalidInput(f"{where} {value!r:.40} is not a serial (an integer from 0 to 2**63 - 1)")
    return value


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
