"""The destination's lease: one writer at a time, taken with conditional writes, so it works on S3 and on folders.

The lease is `.pypi-cdn/lease.json` ({owner, acquired_at, expires_at}). It is created with If-None-Match, taken
over once expired with If-Match on the etag read (two takers cannot both win), renewed with If-Match on its own
etag, and deleted on release only while it is still ours. A crashed run's lease simply expires after its ttl.
Expiry is judged by each run's clock: keep the ttl far above any clock skew between the machines involved.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from datetime import UTC, datetime
from types import TracebackType

from sync.layout import LEASE_KEY, cache_control_for, content_type_for
from sync.retry import attempts
from sync.storage import PreconditionFailed, Storage

ACQUIRE_ATTEMPTS = 4  # each lost race re-reads the lease; a live one then ends the attempt
RACE_WAIT, RACE_WAIT_MAX = 0.01, 0.1  # seconds between attempts: jittered, so racing takers spread out


class LeaseError(Exception):
    """Base of the lease's own errors."""


class LeaseHeld(LeaseError):
    """Another run holds a live lease on the destination."""


class LeaseLost(LeaseError):
    """Our lease was taken over (it had expired) or released: stop writing."""


class _LostRace(Exception):
    """The lease changed between our read and our conditional write: read it again."""


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _body(owner: str, acquired_at: float, expires_at: float) -> bytes:
    record = {"owner": owner, "acquired_at": _timestamp(acquired_at), "expires_at": _timestamp(expires_at)}
    return json.dumps(record, sort_keys=True).encode()


class Lease:
    """A lease we hold. Use as a context manager, or call release(); renew() well before `expires_at`."""

    def __init__(self, storage: Storage, key: str, *, owner: str, ttl: float, acquired_at: float, etag: str):
        self.storage = storage
        self.key = key
        self.owner = owner
        self.ttl = ttl
        self.acquired_at = acquired_at
        self.expires_at = acquired_at + ttl
        self._etag = etag
        self._released = False
        self._lock = threading.Lock()

    def renew(self) -> None:
        """Push the expiry to now + ttl. Raises LeaseLost when another run took the lease over."""
        with self._lock:
            if self._released:
                raise LeaseLost(f"lease on {self.storage.describe()} was already released")
            expires_at = time.time() + self.ttl
            body = _body(self.owner, self.acquired_at, expires_at)
            try:
                etag = _write(self.storage, self.key, body, if_match=self._etag)
            except PreconditionFailed:
                raise LeaseLost(
                    f"lease on {self.storage.describe()} was taken over by another run after it expired"
                ) from None
            self._etag, self.expires_at = etag, expires_at

    def release(self) -> bool:
        """Delete the lease if it is still ours; returns False when another run had already taken it over."""
        with self._lock:
            if self._released:
                return False
            self._released = True
            try:
                self.storage.delete(self.key, if_match=self._etag)
            except PreconditionFailed:
                return False
            return True

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _write(storage: Storage, key: str, body: bytes, *, if_match: str | None = None) -> str:
    """Write the lease conditionally; returns its etag.

    A retried request whose first attempt landed (the answer was lost) fails its condition against our own
    write: the stored bytes then equal `body`, and the write counts as won.
    """
    try:
        return storage.put_bytes(
            key,
            body,
            content_type=content_type_for(key),
            cache_control=cache_control_for(key),
            if_match=if_match,
            if_none_match=if_match is None,
        )
    except PreconditionFailed:
        found = storage.get_bytes(key)
        if found is not None and found[0] == body:
            return found[1]
        raise


def _held_message(storage: Storage, key: str, record: dict[str, str]) -> str:
    return (
        f"{storage.describe()} is leased by {record.get('owner', '?')!r} until {record.get('expires_at', '?')} "
        f"(another run is writing to it); if that run is dead, wait for the lease to expire "
        f"or delete {key} from the destination"
    )


def acquire(storage: Storage, *, owner: str, ttl: float, key: str = LEASE_KEY) -> Lease:
    """Take the lease at `key` (by default the destination's) for `ttl` seconds, or raise LeaseHeld naming who
    holds it and until when."""
    if ttl <= 0:
        raise ValueError(f"lease ttl must be positive, got {ttl}")
    try:
        with contextlib.suppress(_LostRace):
            for attempt in attempts(
                _LostRace, attempts=ACQUIRE_ATTEMPTS, wait_initial=RACE_WAIT, wait_max=RACE_WAIT_MAX
            ):
                with attempt:
                    return _take(storage, key, owner=owner, ttl=ttl)
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM while the write was landing: leave no lease behind
        _release_if_ours(storage, key, owner)
        raise
    raise LeaseHeld(f"{storage.describe()}: lost the race for the lease {ACQUIRE_ATTEMPTS} times; try again")


def _release_if_ours(storage: Storage, key: str, owner: str) -> None:
    """Delete the lease at `key` if `owner` holds it (and it did not change since read); best effort."""
    with contextlib.suppress(Exception):
        found = storage.get_bytes(key)
        if found is not None and json.loads(found[0]).get("owner") == owner:
            storage.delete(key, if_match=found[1])


def _take(storage: Storage, key: str, *, owner: str, ttl: float) -> Lease:
    """One attempt: create the lease, or take it over once expired; _LostRace when another run got in between."""
    now = time.time()
    body = _body(owner, now, now + ttl)
    try:
        return Lease(storage, key, owner=owner, ttl=ttl, acquired_at=now, etag=_write(storage, key, body))
    except PreconditionFailed:
        pass  # a lease exists: read it
    found = storage.get_bytes(key)
    if found is None:
        raise _LostRace  # released in between: create it again
    data, etag = found
    try:
        record = json.loads(data)
        expires_at = _seconds(record["expires_at"])
    except (ValueError, KeyError, TypeError):
        raise LeaseHeld(
            f"{storage.describe()} has an unreadable lease {key}; if no other run is active, delete it"
        ) from None
    if expires_at > now:
        raise LeaseHeld(_held_message(storage, key, record))
    try:
        etag = _write(storage, key, body, if_match=etag)
    except PreconditionFailed:
        raise _LostRace from None  # another run took the expired lease first: read theirs
    return Lease(storage, key, owner=owner, ttl=ttl, acquired_at=now, etag=etag)
