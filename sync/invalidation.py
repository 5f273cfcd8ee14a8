"""Refresh changed /simple/ pages at the CloudFront edge within CloudFront's limits and a monthly budget.

CloudFront caches a page under the URI its viewer-request function rewrote it to (`/simple/<name>/index.html` or
`/index.v1_json`), so those are the paths invalidated. Limits: 3,000 paths in flight and 15 wildcard paths in flight
per distribution; 1,000 paths a month free, then $0.005 a path (a wildcard counts as one). The month's count lives in
the destination's private prefix and is updated with conditional writes, so concurrent workers share one budget.
Modes: `targeted` (exact paths; a wildcard when they do not fit; nothing when not even that fits), `wildcard`
(always `/simple/*`), `ttl` (never invalidate: pages expire by their Cache-Control).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sync.layout import (
    INVALIDATION_USAGE_KEY,
    ROOT_HTML_KEY,
    ROOT_JSON_KEY,
    cache_control_for,
    content_type_for,
    edge_path,
    page_keys,
)
from sync.progress import Reporter
from sync.retry import attempts
from sync.storage import PreconditionFailed, Storage, StorageError

FREE_PATHS_PER_MONTH = 1000
PRICE_PER_PATH_USD = 0.005
MAX_PATHS_IN_FLIGHT = 3000
MAX_WILDCARDS_IN_FLIGHT = 15
WILDCARD_PATH = "/simple/*"
ROOT_PATHS = (edge_path(ROOT_HTML_KEY), edge_path(ROOT_JSON_KEY))
IN_FLIGHT_WINDOW = timedelta(hours=1)  # invalidations finish in minutes; older ones are not read
USAGE_WRITE_ATTEMPTS = 8  # conditional-write retries when other workers update the count at the same moment
USAGE_WRITE_TIMEOUT = 30.0  # seconds those retries may take (they back off from 10 ms to at most 200 ms)


class InvalidationMode(StrEnum):
    TARGETED = "targeted"
    WILDCARD = "wildcard"
    TTL = "ttl"


@dataclass(frozen=True)
class EdgeSettings:
    mode: InvalidationMode = InvalidationMode.TARGETED
    monthly_budget_usd: float = 0.0  # spent on paths beyond the free 1,000 a month

    @property
    def monthly_path_allowance(self) -> int:
        return FREE_PATHS_PER_MONTH + math.floor(self.monthly_budget_usd / PRICE_PER_PATH_USD + 1e-9)


@dataclass(frozen=True)
class InFlight:
    """What the distribution has in progress: exact paths and wildcard paths."""

    paths: int = 0
    wildcards: int = 0


@dataclass(frozen=True)
class RefreshResult:
    paths: tuple[str, ...]  # what was invalidated; empty when the pages are left to their TTL
    invalidation_id: str | None = None
    reason: str = ""


def edge_paths(projects: Iterable[str], *, root: bool) -> list[str]:
    """The cache keys of the given projects' pages (normalized names), and of the root pages when `root`."""
    paths = [edge_path(key) for name in sorted(set(projects)) for key in reversed(page_keys(name))]
    return [*ROOT_PATHS, *paths] if root else paths


def choose_paths(
    paths: list[str], mode: InvalidationMode, *, in_flight: InFlight, paths_left: int
) -> tuple[tuple[str, ...], str]:
    """What to invalidate for `paths`, given what is in flight and the paths left in this month's budget; and why."""
    if not paths:
        return (), "nothing changed"
    if mode is InvalidationMode.TTL:
        return (), "ttl mode"
    room = MAX_PATHS_IN_FLIGHT - in_flight.paths
    if mode is InvalidationMode.TARGETED and len(paths) <= min(room, paths_left):
        return tuple(paths), "targeted"
    if paths_left < 1 or in_flight.wildcards >= MAX_WILDCARDS_IN_FLIGHT:
        why = "monthly budget spent" if paths_left < 1 else f"{in_flight.wildcards} wildcards in flight"
        return (), f"{why}: pages expire by TTL"
    if mode is InvalidationMode.WILDCARD:
        return (WILDCARD_PATH,), "wildcard mode"
    reason = "over the in-flight limit" if len(paths) > room else "over the monthly budget"
    return (WILDCARD_PATH,), f"{len(paths)} paths {reason}: wildcard"


def current_month(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


class EdgeRefresher:
    """Invalidate changed pages on one distribution, sharing the monthly path budget through `storage`."""

    def __init__(
        self,
        cloudfront: Any,  # a boto3 CloudFront client
        distribution_id: str,
        storage: Storage,
        *,
        settings: EdgeSettings,
        reporter: Reporter,
        month: Callable[[], str] = current_month,
    ):
        self.cloudfront = cloudfront
        self.distribution_id = distribution_id
        self.storage = storage
        self.settings = settings
        self.reporter = reporter
        self.month = month

    def refresh(self, projects: Iterable[str], *, root: bool = False) -> RefreshResult:
        """Invalidate the pages of `projects` (and the root pages); a failure is reported, never raised."""
        paths = edge_paths(projects, root=root)
        if not paths or self.settings.mode is InvalidationMode.TTL:
            return RefreshResult((), reason="ttl mode" if paths else "nothing changed")
        try:
            in_flight = self.in_flight()
            chosen, reason = self._reserve(paths, in_flight)
            if not chosen:
                self.reporter.event("edge_ttl_only", level="warning", paths=len(paths), reason=reason)
                return RefreshResult((), reason=reason)
            answer = self.cloudfront.create_invalidation(
                DistributionId=self.distribution_id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(chosen), "Items": list(chosen)},
                    "CallerReference": uuid.uuid4().hex,
                },
            )
        except (ClientError, BotoCoreError, StorageError) as error:
            self.reporter.event("edge_refresh_failed", level="warning", paths=len(paths), error=str(error))
            return RefreshResult((), reason=f"failed: {error}")
        invalidation_id = answer["Invalidation"]["Id"]
        self.reporter.event("edge_invalidated", paths=len(chosen), id=invalidation_id, reason=reason)
        return RefreshResult(chosen, invalidation_id, reason)

    def in_flight(self) -> InFlight:
        """Count the paths of this distribution's recent invalidations still in progress.

        CloudFront lists every invalidation ever made, newest first; only the last IN_FLIGHT_WINDOW is read.
        """
        paths = wildcards = 0
        since = datetime.now(UTC) - IN_FLIGHT_WINDOW
        pages = self.cloudfront.get_paginator("list_invalidations").paginate(DistributionId=self.distribution_id)
        for page in pages:
            recent = [s for s in page["InvalidationList"].get("Items", []) if s["CreateTime"] >= since]
            for summary in recent:
                if summary["Status"] != "InProgress":
                    continue
                detail = self.cloudfront.get_invalidation(DistributionId=self.distribution_id, Id=summary["Id"])
                items = detail["Invalidation"]["InvalidationBatch"]["Paths"].get("Items", [])
                wildcards += sum(1 for p in items if p.endswith("*"))
                paths += sum(1 for p in items if not p.endswith("*"))
            if not recent:
                break
        return InFlight(paths, wildcards)

    def paths_used(self) -> int:
        """Paths invalidated so far this month (by every worker)."""
        return self._read_usage()[0]

    def _reserve(self, paths: list[str], in_flight: InFlight) -> tuple[tuple[str, ...], str]:
        """Choose what to invalidate and count it against the month's budget, atomically against other workers."""
        tries = attempts(
            PreconditionFailed,
            attempts=USAGE_WRITE_ATTEMPTS,
            timeout=USAGE_WRITE_TIMEOUT,
            wait_initial=0.01,
            wait_max=0.2,
        )
        try:
            for attempt in tries:
                with attempt:
                    return self._reserve_once(paths, in_flight)
        except PreconditionFailed:
            pass
        raise StorageError(f"{INVALIDATION_USAGE_KEY}: still contended after {USAGE_WRITE_ATTEMPTS} attempts")

    def _reserve_once(self, paths: list[str], in_flight: InFlight) -> tuple[tuple[str, ...], str]:
        """One read, choice and conditional write of the count; PreconditionFailed when another worker wrote first."""
        used, etag = self._read_usage()
        paths_left = self.settings.monthly_path_allowance - used
        chosen, reason = choose_paths(paths, self.settings.mode, in_flight=in_flight, paths_left=paths_left)
        if chosen:
            self.storage.put_bytes(
                INVALIDATION_USAGE_KEY,
                json.dumps({"month": self.month(), "paths": used + len(chosen)}).encode(),
                content_type=content_type_for(INVALIDATION_USAGE_KEY),
                cache_control=cache_control_for(INVALIDATION_USAGE_KEY),
                if_match=etag,
                if_none_match=etag is None,
            )
        return chosen, reason

    def _read_usage(self) -> tuple[int, str | None]:
        """(paths used this month, etag of the usage object or None when absent)."""
        found = self.storage.get_bytes(INVALIDATION_USAGE_KEY)
        if found is None:
            return 0, None
        data, etag = found
        try:
            usage = json.loads(data)
            used = int(usage["paths"]) if usage["month"] == self.month() else 0
        except (ValueError, KeyError, TypeError) as error:  # fail closed: an unknown count could overspend
            raise StorageError(
                f"{INVALIDATION_USAGE_KEY}: unreadable invalidation count ({error}); delete it to reset"
            ) from None
        return used, etag
