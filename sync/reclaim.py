"""Reclaiming orphans: `packages/` objects no page names, found by verify's sorted merge, deleted once old enough.

A shared object (sync/files.py) is never deleted by a sync; once no page names it, verify lists it as an orphan, and
`verify --reclaim-orphans` deletes it with its shared marker. Verify does not take the destination's lease: queue
workers (sync/roster.py) sync projects without it, so the lease cannot exclude every writer. Safety comes from age:
a sync writes the object when it stores it and rewrites the shared marker when it claims an object already stored,
and publishes the page naming it within the run. So an orphan is deleted only when both the object and its marker
(if any) were last written `min_age` before the verify's page pass began: any sync that claimed it since, or was
still to publish a page naming it when the pages were read, wrote one of the two later. `min_age` must exceed the
longest sync of one project plus the clock skew between this machine and the destination (MIN_AGE at least).

What remains: a sync that re-claims, in the milliseconds between the marker's HEAD and the DELETE, an object no page
has named for `min_age`. Verify then reports the page's link as missing.

`.metadata` and `.provenance` sidecars are `packages/` keys of their own: each is an orphan, judged the same way.
Deletions are bounded by `limit` per run; a dry run (the default) counts and lists what it would delete.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sync.layout import FILES_PREFIX, shared_marker_key
from sync.storage import ObjectInfo, Storage

MIN_AGE = 3600.0  # seconds: above a Lambda sync's 15 minutes and any sane clock skew
DEFAULT_LIMIT = 10_000  # deletions per run


@dataclass
class Reclaim:
    """How orphans are reclaimed: `delete` False is a dry run; `clock` gives the time (seconds since the epoch)."""

    min_age: float = 24 * 3600.0
    delete: bool = False
    limit: int = DEFAULT_LIMIT
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.min_age < MIN_AGE:
            raise ValueError(f"reclaim min age {self.min_age:.0f} s: expected at least {MIN_AGE:.0f} s")
        if self.limit < 0:
            raise ValueError(f"reclaim limit {self.limit}: expected 0 or more")

    def cutoff(self, pages_started: float) -> float:
        """Objects (and markers) last written before this may be reclaimed."""
        return pages_started - self.min_age

    @property
    def done(self) -> str:
        """The finding of an orphan reclaimed: "reclaimed", or "reclaimable" in a dry run."""
        return "reclaimed" if self.delete else "reclaimable"

    def totals(self, counts: Counter[str]) -> dict[str, int]:
        return {
            self.done: counts[self.done],
            f"{self.done}_bytes": counts[f"{self.done}_bytes"],
            "kept_young": counts["kept_young"],
            "kept_limit": counts["kept_limit"],
        }

    def orphan(self, storage: Storage, info: ObjectInfo, cutoff: float, counts: Counter[str]) -> str | None:
        """Reclaim the orphan `info` if old enough and `counts[self.done]` is below the limit: a line saying what was
        (or would be) reclaimed, which the caller counts as `self.done`; else None. Counts the bytes reclaimed,
        `kept_young` and `kept_limit`."""
        if not info.key.startswith(FILES_PREFIX):
            raise ValueError(f"{info.key}: reclaim deletes only {FILES_PREFIX} objects")
        if info.last_modified >= cutoff:
            counts["kept_young"] += 1
            return None
        if counts[self.done] >= self.limit:
            counts["kept_limit"] += 1
            return None
        marker = storage.head(shared_marker_key(info.key))
        if marker is not None and marker.last_modified >= cutoff:
            counts["kept_young"] += 1
            return None
        if self.delete:
            storage.delete(info.key)
            if marker is not None:
                storage.delete(shared_marker_key(info.key))
        counts[f"{self.done}_bytes"] += info.size
        return f"{info.key} ({info.size} bytes{', shared' if marker is not None else ''})"
