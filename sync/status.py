"""The mirror's public status: one small JSON object at `STATUS_KEY`, rewritten by every successful planner pass.

What PEP 381 mirrors published as `/last-modified`, and what a status page or a client checks:

    {"upstream": "https://pypi.org", "api_version": "1.4", "last_serial": 27000000, "projects": 3,
     "pending": 0, "last_check": "2026-12-01T23:50:10Z", "last_sync": "2026-12-01T23:50:10Z", "lag_seconds": 0}

`last_check` is when the pass finished; `last_sync` when a pass last finished with nothing left over (no project
pending or failed; projects handed to the queue count as dispatched); `lag_seconds` is the time between the two, an
upper bound on how far the mirror trails the upstream serial it reports. The per-project lag, measured when a page
is published, is the MirrorLagSeconds metric.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from sync.layout import STATUS_KEY, cache_control_for, content_type_for
from sync.render import API_VERSION
from sync.storage import Storage

STATUS_MAX_BYTES = 4096  # the previous status is read back; anything bigger is not one of ours


@dataclass(frozen=True)
class MirrorStatus:
    upstream: str
    api_version: str
    last_serial: int | None
    projects: int
    pending: int
    last_check: str  # ISO 8601, UTC, whole seconds
    last_sync: str | None  # None until a pass leaves nothing over
    lag_seconds: int | None  # last_check - last_sync; None while last_sync is

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def public_url(url: str) -> str:
    """`url` without credentials, query or fragment: the status is public, an upstream URL may carry a token."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def previous_sync(storage: Storage) -> datetime | None:
    """`last_sync` of the status in storage; None when there is none or it is not a status this code wrote."""
    found = storage.get_bytes(STATUS_KEY)
    if found is None or len(found[0]) > STATUS_MAX_BYTES:
        return None
    try:
        document = json.loads(found[0])
    except ValueError:
        return None
    return _parse_timestamp(document.get("last_sync")) if isinstance(document, dict) else None


def pass_status(
    *,
    upstream: str,
    last_serial: int | None,
    projects: int,
    pending: int,
    now: datetime,
    synced_before: datetime | None,
) -> MirrorStatus:
    """The status after a pass finishing at `now`; `pending` counts what it left over (pending or failed)."""
    now = now.replace(microsecond=0)
    last_sync = now if pending == 0 else synced_before
    return MirrorStatus(
        upstream=public_url(upstream),
        api_version=API_VERSION,
        last_serial=last_serial,
        projects=projects,
        pending=pending,
        last_check=_timestamp(now),
        last_sync=_timestamp(last_sync) if last_sync else None,
        lag_seconds=max(0, int((now - last_sync).total_seconds())) if last_sync else None,
    )


def write_status(storage: Storage, status: MirrorStatus) -> None:
    storage.put_bytes(
        STATUS_KEY,
        status.to_json(),
        content_type=content_type_for(STATUS_KEY),
        cache_control=cache_control_for(STATUS_KEY),
    )
