"""The CDN's cache TTLs: declared by the cache policies in `infra/cdn.py` and modelled by the local edge.

No Pulumi import, so `devstack/` caches exactly as the distribution is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

YEAR = 365 * 24 * 3600
DAY = 24 * 3600
ERROR_CACHING_SECONDS = (
    10  # 403/404 answers are cached this long, so a page that does not exist yet is asked again soon
)


@dataclass(frozen=True)
class CacheTtls:
    """A cache policy's TTLs: the origin's max-age/s-maxage is clamped to [min, max]; without one, `default`."""

    min: int
    default: int
    max: int


FILES_TTLS = CacheTtls(min=DAY, default=YEAR, max=YEAR)  # /packages/*: immutable, a year at the edge
PAGES_TTLS = CacheTtls(min=0, default=60, max=300)  # /simple/* and the rest: refetched within 5 minutes at most
STATUS_TTLS = CacheTtls(min=0, default=10, max=30)  # the mirror's status: at most half a minute old at the edge
