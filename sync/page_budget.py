"""One memory budget for project pages, shared by every worker of a process.

Each answer is bounded on its own (sync.safe_parse: a parsed page may cost at most MAX_PARSE_COST, 136 MiB), but a
run fetches with `--workers` threads, so ten hostile pages at that bound at once would take over a gigabyte.
Before a page's body is read its worker reserves, from PAGE_MEMORY, the most that body and its parsing could cost
(`worst_page_cost` of its Content-Length; of the size limit when it sends none); once the body is in, the
reservation is fitted to the page's real bound (`page_cost`), and it is released when the page is parsed. The
budget's capacity is one page at the bound, so together the workers never hold more than the worst page does
alone. Real pages are small (PyPI's median is a few KB, reserving well under 1 MiB) and go side by side; a page
that may cost over ALONE_ABOVE (a body of over ~80 KB, or one without a Content-Length) waits to be read alone, and
keeps the whole budget while it is parsed when its real bound is that large too: two big parses side by side
interleave their objects in the allocator's arenas, so neither one's memory can be returned when it is done (ten
workers on 3 MiB HTML pages reached 482 MB that way, with room in the budget for two at a time). A reservation is
all-or-nothing and a worker holds at most one (growing one gives it back first, then waits for the whole), so no
two workers wait on each other; the wait is bounded (WAIT_SECONDS, then an UpstreamError for that project alone,
retried by the next run).

A budget only holds if freed memory leaves the process: glibc raises its mmap threshold each time a large buffer is
freed, after which page bodies and their text come from per-thread arenas that keep what they held, and ten
workers' RSS grew to 224 MB with the gate in place. The threshold is pinned at MMAP_THRESHOLD instead (mallopt,
where the C library has it), so a buffer that large is mapped and unmapped on its own: 144 MB (bench/README §7).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time

from sync.safe_parse import ESCAPE_COST, MAX_LINKS_COST, MAX_PARSE_COST, VALUE_COST, json_cost, text_width
from sync.transport import UpstreamError

HTML_LINK_FACTOR = 21  # the shortest link (`<a href=x>y</a>`, 15 bytes) keeps ~300 bytes: pages.LINK_COST
# json_cost's bound for a body of n bytes at its worst: n·(1 + 4) for the bytes and their text, a value per byte,
# an escape per two bytes; above the HTML bound (n·(1 + 4) + 21·n).
WORST_BYTE_COST = 5 + VALUE_COST + ESCAPE_COST // 2
MMAP_THRESHOLD = 2**20  # bytes: larger allocations are mmapped, so freeing one returns it to the OS
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
ALONE_ABOVE = 8 * 2**20  # bytes: a page that may cost more is read and parsed alone (module doc)
WAIT_SECONDS = 120.0  # a page at the bound parses in under 10 s (bench/hostile_memory.py); inside the request deadline


def page_cost(body: bytes | bytearray, *, json: bool) -> int:
    """An upper bound of the bytes a page costs while it is parsed, its body included."""
    if json:
        return json_cost(body)
    return len(body) * (1 + text_width(body)) + min(MAX_LINKS_COST, len(body) * HTML_LINK_FACTOR)


def worst_page_cost(length: int) -> int:
    """An upper bound of `page_cost` for any body of `length` bytes."""
    return VALUE_COST + max(length, 0) * WORST_BYTE_COST


class Reservation:
    """Bytes held from a MemoryBudget until released (also on leaving a `with` block)."""

    def __init__(self, budget: MemoryBudget, held: int):
        self._budget, self.held = budget, held

    def fit(self, cost: int, what: str) -> None:
        """Hold the share of `cost` from now on: less at once; more (a body that grew past its Content-Length, as a
        compressed one does) by giving all back first and waiting for the whole, so no holder ever waits."""
        cost = self._budget.share(cost)
        if cost > self.held:
            self.release()
            self.held = self._budget.reserve(cost, what).held
            return
        self._budget.give_back(self.held - cost)
        self.held = cost

    def release(self) -> None:
        self._budget.give_back(self.held)
        self.held = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class MemoryBudget:
    """Bytes that the pages being read and parsed may cost together."""

    def __init__(self, capacity: int, *, alone_above: int = ALONE_ABOVE, wait_seconds: float = WAIT_SECONDS):
        if capacity <= 0:
            raise ValueError(f"a memory budget needs a capacity above 0, got {capacity}")
        self.capacity, self.alone_above, self.wait_seconds = capacity, alone_above, wait_seconds
        self._free = capacity
        self._changed = threading.Condition()

    @property
    def free(self) -> int:
        with self._changed:
            return self._free

    def share(self, cost: int) -> int:
        """What a page that may cost `cost` bytes holds: that, or the whole budget past `alone_above`."""
        return self.capacity if cost > self.alone_above else max(cost, 0)

    def reserve(self, cost: int, what: str) -> Reservation:
        """Wait until the share of `cost` is free and hold it. UpstreamError naming `what` when it is not free
        within wait_seconds."""
        held = self.share(cost)
        started = time.monotonic()
        with self._changed:
            if not self._changed.wait_for(lambda: self._free >= held, timeout=self.wait_seconds):
                raise UpstreamError(
                    f"{what}: waited {time.monotonic() - started:.0f} s for {held >> 20} MiB of the page memory "
                    f"budget ({self.capacity >> 20} MiB, {self._free >> 20} MiB free); retried next run"
                )
            self._free -= held
        return Reservation(self, held)

    def give_back(self, amount: int) -> None:
        if amount <= 0:
            return
        with self._changed:
            self._free += amount
            self._changed.notify_all()


def pin_mmap_threshold() -> bool:
    """Pin the C library's mmap threshold at MMAP_THRESHOLD (module doc); whether it could be (glibc only)."""
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    return bool(mallopt is not None and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


pin_mmap_threshold()
PAGE_MEMORY = MemoryBudget(MAX_PARSE_COST)  # the process's budget: every UpstreamClient reads pages within it
