"""PEP 792 project status markers: read from either page format, and what a quarantine means for the mirror.

JSON pages carry a top-level `project-status: {"status": …, "reason"?: …}` (the PEP's prose says `state`; its
example, Warehouse and uv say `status`, which is what is read here); HTML pages carry
`<meta name="pypi:project-status">` and an optional `<meta name="pypi:project-status-reason">`. A quarantined
project offers no file: the mirror publishes its page with the status and no file, and deletes what it held once
that page is up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from sync.models import InvalidInput, ProjectPage, ProjectStatus
from sync.validate import UNSAFE_TEXT, encodable

PROJECT_STATUSES = frozenset({"active", "archived", "quarantined", "deprecated"})
STATUS_META = "pypi:project-status"
REASON_META = "pypi:project-status-reason"
MAX_REASON_LENGTH = 2_000  # characters; a reason is a sentence or two


def status_from_json(where: str, value: object) -> ProjectStatus | None:
    """The marker of a JSON page's `project-status` value (None when absent); InvalidInput when malformed."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: project-status {value!r:.80} is not an object")
    return _checked(where, value.get("status"), value.get("reason"))


def status_from_meta(where: str, meta: Mapping[str, str | None]) -> ProjectStatus | None:
    """The marker of an HTML page's `pypi:project-status[-reason]` meta contents (None without the status meta)."""
    if STATUS_META not in meta:
        if REASON_META in meta:
            raise InvalidInput(f"{where}: {REASON_META} without {STATUS_META}")
        return None
    return _checked(where, meta[STATUS_META], meta.get(REASON_META))


def _checked(where: str, status: object, reason: object) -> ProjectStatus:
    if not isinstance(status, str) or status not in PROJECT_STATUSES:
        known = ", ".join(sorted(PROJECT_STATUSES))
        raise InvalidInput(f"{where}: project status {status!r:.80} is not one of {known}")
    if reason is not None:
        if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH or not UNSAFE_TEXT.isdisjoint(reason):
            raise InvalidInput(
                f"{where}: project status reason {reason!r:.80} is not a string of at most {MAX_REASON_LENGTH} "
                "characters without control characters"
            )
        if not encodable(reason):
            raise InvalidInput(f"{where}: project status reason {reason!r:.80} is not valid Unicode")
    return ProjectStatus(status, reason or None)


def is_quarantined(page: ProjectPage) -> bool:
    return page.status is not None and page.status.quarantined


def withhold_quarantined(page: ProjectPage) -> ProjectPage:
    """The page as the mirror publishes it under a quarantine: the status, and neither files nor versions.

    PyPI already sends a quarantined project's page without files; an index that still lists some does not get them
    served. Publishing this page is what removes the project's files: what the previous page named and this one does
    not is deleted right after it is written (Mirror._delete_unnamed).
    """
    if not is_quarantined(page) or (not page.files and not page.versions):
        return page
    return dataclasses.replace(page, files=(), versions=())
