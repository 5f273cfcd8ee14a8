"""The page memory budget: reservations shared by a process's workers (sync.page_budget)."""

from __future__ import annotations

import contextlib
import gzip
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sync.page_budget import PAGE_MEMORY, MemoryBudget, page_cost, worst_page_cost
from sync.transport import UpstreamError
from sync.upstream import UpstreamClient

MIB = 2**20


def test_small_pages_share_the_budget_and_give_it_back() -> None:
    budget = MemoryBudget(10 * MIB, alone_above=4 * MIB)
    with budget.reserve(3 * MIB, "a") as first, budget.reserve(3 * MIB, "b") as second:
        assert (first.held, second.held, budget.free) == (3 * MIB, 3 * MIB, 4 * MIB)
    assert budget.free == 10 * MIB


def test_a_page_past_alone_above_holds_the_whole_budget_until_fitted_to_its_share() -> None:
    budget = MemoryBudget(10 * MIB, alone_above=4 * MIB)
    reservation = budget.reserve(worst_page_cost(MIB), "big")
    assert budget.free == 0
    reservation.fit(MIB, "big")
    assert budget.free == 9 * MIB
    reservation.fit(5 * MIB, "big")  # grown past alone_above (a compressed body): the whole budget again
    assert budget.free == 0
    reservation.release()
    assert budget.free == 10 * MIB


def test_a_page_waits_for_the_pages_before_it_then_goes() -> None:
    budget = MemoryBudget(10 * MIB, alone_above=4 * MIB, wait_seconds=10)
    holder = budget.reserve(8 * MIB, "first")
    started = time.monotonic()
    threading.Timer(0.3, holder.release).start()
    with budget.reserve(8 * MIB, "second") as second:
        assert second.held == 10 * MIB
    assert 0.25 < time.monotonic() - started < 5


def test_a_page_that_cannot_get_its_share_in_time_is_an_upstream_error_naming_it() -> None:
    budget = MemoryBudget(10 * MIB, wait_seconds=0.2)
    with budget.reserve(20 * MIB, "first"), pytest.raises(UpstreamError, match=r"page of 'demo': waited 0 s"):
        budget.reserve(MIB, "page of 'demo'")
    assert budget.free == 10 * MIB


def test_the_worst_bound_covers_every_page_of_that_length() -> None:
    for body in (b"{}," * 1000, b'"\\u0100",' * 1000, b"<a href=x>y</a>" * 1000, "é".encode() * 3000):
        assert page_cost(body, json=body[:1] != b"<") <= worst_page_cost(len(body))


@contextlib.contextmanager
def _serve(body: bytes, *, length: bool, encoding: str | None = None) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            if encoding:
                self.send_header("Content-Encoding", encoding)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PAGE = b'{"meta": {"api-version": "1.1"}, "name": "demo", "files": []}'


@pytest.mark.parametrize("length", [True, False])
def test_workers_fetching_pages_at_once_leave_the_budget_whole(length: bool) -> None:
    with _serve(PAGE, length=length) as url, ThreadPoolExecutor(10) as pool:
        client = UpstreamClient(url, retries=0, max_connections=10)
        pages = list(pool.map(lambda _: client.get_project("demo"), range(40)))
        assert all(page is not None and page.name == "demo" for page in pages)
    assert PAGE_MEMORY.free == PAGE_MEMORY.capacity


def test_a_page_refused_after_its_body_is_read_gives_its_share_back() -> None:
    with _serve(b"{" * 5000, length=True) as url:
        client = UpstreamClient(url, retries=1, backoff=0)
        with pytest.raises(Exception, match="demo"):
            client.get_project("demo")
    assert PAGE_MEMORY.free == PAGE_MEMORY.capacity


def test_a_compressed_page_is_fitted_to_what_it_decompresses_to() -> None:
    budget = MemoryBudget(PAGE_MEMORY.capacity)
    with _serve(gzip.compress(PAGE), length=True, encoding="gzip") as url:
        page = UpstreamClient(url, retries=0, page_memory=budget).get_project("demo")
    assert page is not None
    assert page.name == "demo"
    assert budget.free == budget.capacity
