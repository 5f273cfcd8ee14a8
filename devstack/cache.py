"""CloudFront's cache for the local edge: the distribution's cache-policy TTLs, Cache-Control as CloudFront reads it.

As the CloudFront Developer Guide describes expiration ("Manage how long content stays in the cache"):
- The TTL is the origin's `s-maxage`, else its `max-age`, clamped to the cache policy's [min, max] TTL; without
  either, the policy's default TTL. `no-store`, `no-cache` or `private` under a min TTL of 0: not cached.
- Once the TTL has passed, for `stale-while-revalidate` seconds the stale copy is served at once and refreshed from
  the origin in the background; later requests wait for the origin. When the origin fails (an exception or a 5xx),
  a copy within `stale-if-error` seconds of its expiry is served instead.
- 403/404 answers are cached for the distribution's error-caching TTL; `/status.json` has its own policy.
- An invalidation drops the objects under its paths (exact, or a prefix ending in `*`) that were cached before it
  took effect.
The key is the URI the viewer-request function rewrote the request to. Files under `/packages/` are immutable, so
caching them changes no freshness: they are passed through, as is any object over MAX_CACHED_BYTES.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from infra.cache_ttls import ERROR_CACHING_SECONDS, PAGES_TTLS, STATUS_TTLS, CacheTtls
from sync.layout import FILES_PREFIX, STATUS_KEY, edge_path

MAX_CACHED_BYTES = 8 * 1024 * 1024
IMMUTABLE_PREFIX = edge_path(FILES_PREFIX)
UNCACHED_DIRECTIVES = frozenset({"no-store", "no-cache", "private"})

log = logging.getLogger(__name__)


def policy_for(uri: str) -> CacheTtls:
    """The distribution's cache policy for a (rewritten) URI: the status has its own; the rest cached are pages."""
    return STATUS_TTLS if uri == f"/{STATUS_KEY}" else PAGES_TTLS


class OriginObject(Protocol):
    """What the origin returns (devstack.origins.EdgeObject): a stream of the bytes and the stored headers."""

    @property
    def body(self) -> BinaryIO: ...
    @property
    def size(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def cache_control(self) -> str | None: ...
    @property
    def etag(self) -> str | None: ...


@dataclass(frozen=True)
class Freshness:
    """How long a response stays fresh at the edge, and how long after that it may still be served stale."""

    ttl: float
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    cacheable: bool = True


def _directives(cache_control: str | None) -> dict[str, str]:
    """Cache-Control as {directive: value} (lower-case names, '' for directives without a value)."""
    found: dict[str, str] = {}
    for item in (cache_control or "").split(","):
        name, _, value = item.strip().partition("=")
        if name:
            found.setdefault(name.lower(), value.strip().strip('"'))
    return found


def _seconds(value: str | None) -> float | None:
    """A delta-seconds value, or None when absent or not a non-negative whole number."""
    return float(value) if value is not None and value.isdigit() else None


def freshness(cache_control: str | None, policy: CacheTtls) -> Freshness:
    """The edge's TTL and stale windows for an origin response with this Cache-Control, under `policy`."""
    directives = _directives(cache_control)
    if policy.min == 0 and UNCACHED_DIRECTIVES & directives.keys():
        return Freshness(0.0, cacheable=False)
    origin_ttl = _seconds(directives.get("s-maxage"))
    if origin_ttl is None:
        origin_ttl = _seconds(directives.get("max-age"))
    ttl = float(policy.default) if origin_ttl is None else min(max(origin_ttl, policy.min), policy.max)
    return Freshness(
        ttl,
        stale_while_revalidate=_seconds(directives.get("stale-while-revalidate")) or 0.0,
        stale_if_error=_seconds(directives.get("stale-if-error")) or 0.0,
    )


@dataclass(frozen=True)
class CachedObject:
    """A response as the edge keeps it: 200 with its object, or a cached 404."""

    status: int
    body: bytes
    content_type: str
    cache_control: str | None
    etag: str | None
    stored_at: float
    freshness: Freshness


@dataclass(frozen=True)
class Lookup:
    """What the cache answers: the object, how CloudFront would label it (X-Cache) and its age in seconds."""

    cached: CachedObject
    result: str  # Hit | RefreshHit | Miss | Error (a stale copy served because the origin failed)
    age: float


Fetch = Callable[[str], OriginObject | None]  # the origin: the object under a key (no leading slash), or None


class EdgeCache:
    """One edge location's cache over `fetch`; thread-safe; `clock` is seconds (monotonic) so tests can move it."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        policy: Callable[[str], CacheTtls] = policy_for,
        clock: Callable[[], float] = time.monotonic,
        max_object_bytes: int = MAX_CACHED_BYTES,
    ) -> None:
        self.fetch = fetch
        self.policy = policy
        self.clock = clock
        self.max_object_bytes = max_object_bytes
        self._objects: dict[str, CachedObject] = {}
        self._refreshing: set[str] = set()
        self._invalidations: list[tuple[float, tuple[str, ...]]] = []  # (takes effect at, paths), in creation order
        self._lock = threading.Lock()
        self.origin_fetches = 0

    def passes_through(self, uri: str) -> bool:
        return uri.startswith(IMMUTABLE_PREFIX)

    def get(self, uri: str) -> Lookup | None:
        """The response for `uri` (a rewritten URI); None when the object is too large to cache (stream it instead).

        Raises what the origin raised when there is no copy the stale windows allow serving.
        """
        now = self.clock()
        with self._lock:
            self._apply_invalidations(now)
            cached = self._objects.get(uri)
        if cached is not None:
            age = now - cached.stored_at
            if age < cached.freshness.ttl:
                return Lookup(cached, "Hit", age)
            if age < cached.freshness.ttl + cached.freshness.stale_while_revalidate:
                self._refresh_in_background(uri)
                return Lookup(cached, "RefreshHit", age)
        try:
            fresh = self._fetch(uri)
        except Exception:
            if cached is not None and now - cached.stored_at < cached.freshness.ttl + cached.freshness.stale_if_error:
                log.warning("origin failed for %s: serving the stale copy (stale-if-error)", uri, exc_info=True)
                return Lookup(cached, "Error", now - cached.stored_at)
            raise
        return None if fresh is None else Lookup(fresh, "Miss", 0.0)

    def invalidate(self, paths: Iterable[str], *, effective_at: float) -> None:
        """Drop the objects under `paths` cached before `effective_at` (clock seconds), once that moment comes."""
        with self._lock:
            self._invalidations.append((effective_at, tuple(paths)))

    def _apply_invalidations(self, now: float) -> None:
        due = [item for item in self._invalidations if item[0] <= now]
        if not due:
            return
        self._invalidations = [item for item in self._invalidations if item[0] > now]
        for effective_at, paths in due:
            exact = {p for p in paths if not p.endswith("*")}
            prefixes = tuple(p[:-1] for p in paths if p.endswith("*"))
            for uri in [u for u in self._objects if u in exact or u.startswith(prefixes)]:
                if self._objects[uri].stored_at < effective_at:
                    del self._objects[uri]

    def _fetch(self, uri: str) -> CachedObject | None:
        """Ask the origin and store what it answers; None when the object is too large to keep."""
        self.origin_fetches += 1
        stored_at = self.clock()
        found = self.fetch(uri.lstrip("/"))
        if found is None:
            cached = CachedObject(
                404,
                b"404 Not Found\n",
                "text/plain; charset=utf-8",
                None,
                None,
                stored_at,
                Freshness(float(ERROR_CACHING_SECONDS)),
            )
        else:
            with found.body:
                if found.size > self.max_object_bytes:
                    return None
                body = found.body.read()
            rules = freshness(found.cache_control, self.policy(uri))
            cached = CachedObject(200, body, found.content_type, found.cache_control, found.etag, stored_at, rules)
        if cached.freshness.cacheable:
            with self._lock:
                current = self._objects.get(uri)
                if current is None or current.stored_at <= stored_at:
                    self._objects[uri] = cached
        return cached

    def _refresh_in_background(self, uri: str) -> None:
        with self._lock:
            if uri in self._refreshing:
                return
            self._refreshing.add(uri)

        def refresh() -> None:
            try:
                self._fetch(uri)
            except Exception:  # the stale copy stays; the next request past the window retries
                log.warning("background refresh of %s failed", uri, exc_info=True)
            finally:
                with self._lock:
                    self._refreshing.discard(uri)

        threading.Thread(target=refresh, name=f"refresh {uri}", daemon=True).start()
