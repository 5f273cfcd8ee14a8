"""The lag clients see: after a change is handed off, read its page through the CDN until the CDN serves it.

MirrorLagSeconds stops at the bucket; what pip receives is decided later, in CloudFront's cache (TTL, invalidations,
stale-while-revalidate). The planner hands the probe up to SAMPLE_PER_PASS changed projects a pass *before* it syncs
them, and reads each once right away: the edge location then holds the page from before the change, as it
does for any page read there recently (a first read after the sync would be a cache miss, fresh, and measure nothing
but the bucket). On each later pass (every poll interval) it reads every pending page again through the distribution
as pip does (Accept: PEP 691 JSON), and once the page's `meta._last-serial` reaches the change's serial it reports
the seconds since the upstream change (EdgeLagSeconds). So the figure is end to end, read to within one poll
interval, as seen from the edge location nearest the Lambda. A probe still pending after GIVE_UP_SECONDS is reported
at that value, so an edge that never turns over shows as a ceiling rather than as silence. Pending probes live in
the container's memory: a cold start loses them (fewer samples, never a wrong one).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import urllib3

from sync.layout import JSON_PAGE

SAMPLE_PER_PASS = 5
MAX_PENDING = 50
GIVE_UP_SECONDS = 900.0
READ_TIMEOUT = urllib3.Timeout(connect=2.0, read=5.0)
MAX_PAGE_BYTES = 64 * 1024 * 1024  # PyPI's largest project pages are a few MB
READ_THREADS = 8


@dataclass(frozen=True)
class Probe:
    project: str  # normalized name
    serial: int  # the page carries the change once its _last-serial is at least this
    changed_at: float  # Unix time of the upstream change


def served_serial(body: bytes) -> int | None:
    """The `meta._last-serial` of a served JSON page; None when the body is not such a page."""
    try:
        serial = json.loads(body)["meta"]["_last-serial"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return serial if isinstance(serial, int) and not isinstance(serial, bool) else None


class EdgeProbe:
    """Pending probes against the CDN at `base_url`; `sink` gets the end-to-end lag of each one that turns over."""

    def __init__(
        self,
        base_url: str,
        sink: Callable[[float], None],
        *,
        clock: Callable[[], float] = time.time,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.sink = sink
        self.clock = clock
        self.http = http or urllib3.PoolManager(maxsize=READ_THREADS, retries=False, timeout=READ_TIMEOUT)
        self._pending: dict[str, Probe] = {}
        self._lock = threading.Lock()

    def track(self, probes: Iterable[Probe]) -> list[Probe]:
        """Add up to SAMPLE_PER_PASS of `probes` (a project already pending keeps its earlier, older change) and read
        them once; returns the ones added."""
        added: list[Probe] = []
        with self._lock:
            for probe in probes:
                if len(added) >= SAMPLE_PER_PASS or len(self._pending) >= MAX_PENDING:
                    break
                if probe.project not in self._pending:
                    self._pending[probe.project] = probe
                    added.append(probe)
        if added:
            self.check(added)
        return added

    @property
    def pending(self) -> int:
        return len(self._pending)

    def check(self, probes: list[Probe] | None = None) -> int:
        """Read every pending page (or `probes`) once; report and drop the ones served with their change; how many."""
        with self._lock:
            probes = list(self._pending.values()) if probes is None else probes
        if not probes:
            return 0
        with ThreadPoolExecutor(READ_THREADS, thread_name_prefix="edge-probe") as pool:
            served = list(pool.map(self._read_serial, probes))
        now = self.clock()
        done = 0
        for probe, serial in zip(probes, served, strict=True):
            lag = now - probe.changed_at
            if (serial is not None and serial >= probe.serial) or lag >= GIVE_UP_SECONDS:
                self.sink(max(0.0, min(lag, GIVE_UP_SECONDS)))
                with self._lock:
                    self._pending.pop(probe.project, None)
                done += 1
        return done

    def _read_serial(self, probe: Probe) -> int | None:
        """The serial the CDN serves for the project's page now; None when it cannot be read."""
        url = f"{self.base_url}/simple/{quote(probe.project)}/"
        try:
            response = self.http.request(
                "GET", url, headers={"Accept": JSON_PAGE}, preload_content=False, redirect=False
            )
            try:
                body = response.read(MAX_PAGE_BYTES + 1) if response.status == 200 else b""
            finally:
                response.release_conn()
        except urllib3.exceptions.HTTPError:
            return None
        return served_serial(body) if len(body) <= MAX_PAGE_BYTES else None
