"""Peak memory and time of the upstream client on hostile answers at the size limits, one process per case.

Run from the repository root: `.venv/bin/python bench/hostile_memory.py [CASE ...]`. Each case runs in a fresh Python
process (address space capped at 2 GiB, so an unbounded parser fails with MemoryError instead of taking the
machine): a local server streams the hostile answer (generated as it is sent, so the server's own memory stays
small) and the client fetches and parses it as a run would. The table gives what the client made of it, the
process's peak RSS (VmHWM, MiB, baseline of the imports included) and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sync.upstream import UpstreamClient  # noqa: E402

MIB = 2**20
ADDRESS_SPACE_LIMIT = 2 * 2**30
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
LISTING_HEAD = b'{"meta": {"api-version": "1.1"}, "projects": [{"name": "a", "x": '
PAGE_HEAD = b'{"meta": {"api-version": "1.1"}, "name": "demo", "files": [], "x": ['
SHA = "ab" * 32


def repeated(head: bytes, unit: bytes, total: int, tail: bytes = b"") -> Callable[[], Iterator[bytes]]:
    """A body of `head`, then `unit` repeated up to `total` bytes, then `tail`, in chunks of about 1 MiB."""

    def chunks() -> Iterator[bytes]:
        yield head
        block = unit * max(1, MIB // len(unit))
        for _ in range(max(0, total - len(head) - len(tail)) // len(block)):
            yield block
        yield tail

    return chunks


def realistic_page(files: int) -> Callable[[], Iterator[bytes]]:
    """A JSON page shaped like PyPI's largest (ddtrace: 46,724 files in 21 MB)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"meta": {"api-version": "1.1", "_last-serial": 1}, "name": "demo", "files": ['
        for number in range(files):
            name = f"demo-{number // 20}.{number % 20}-cp312-cp312-manylinux_2_17_x86_64.whl"
            entry = {
                "core-metadata": {"sha256": SHA},
                "filename": name,
                "hashes": {"sha256": SHA},
                "requires-python": ">=3.7",
                "size": 4_000_000 + number,
                "upload-time": "2024-10-15T19:29:36.041345Z",
                "url": f"/packages/{SHA[:2]}/{SHA[2:4]}/{SHA[4:]}/{name}",
                "yanked": False,
            }
            yield (b"," if number else b"") + json.dumps(entry).encode()
        yield b"]}"

    return chunks


def laughs() -> Iterator[bytes]:
    yield b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 1000 + b'">'
    for level in range(1, 8):
        yield f'<!ENTITY {"a" * (level + 1)} "{("&" + "a" * level + ";") * 10}">'.encode()
    yield b"]><methodResponse><params><param><value><string>&aaaaaaaa;</string></value></param></params>"
    yield b"</methodResponse>"


@dataclass(frozen=True)
class Case:
    kind: str  # page | listing | xmlrpc
    content_type: str
    body: Callable[[], Iterator[bytes]]
    workers: int = 1  # pages fetched at once by one client, as a run's workers do


XML_HEAD = b"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
XML_TAIL = b"</data></array></value></param></params></methodResponse>"
CASES = {
    "listing: 40 KB of nested arrays": Case(
        "listing", JSON_TYPE, lambda: iter([LISTING_HEAD + b"[" * 20_000 + b"]" * 20_000 + b"}]}"])
    ),
    "listing: one 256 MiB string": Case("listing", JSON_TYPE, repeated(LISTING_HEAD + b'"', b"a", 256 * MIB)),
    "listing: HTML, a 256 MiB open comment": Case("listing", "text/html", repeated(b"<html><!--", b"x", 256 * MIB)),
    "JSON page: 64 MiB of empty objects": Case("page", JSON_TYPE, repeated(PAGE_HEAD, b"{},", 64 * MIB - 1, b"0]}")),
    "JSON page: 950,000 empty objects (at the cost cap)": Case(
        "page", JSON_TYPE, repeated(PAGE_HEAD, b"{},", 2_850_000, b"0]}")
    ),
    "JSON page: 600,000 one-key objects (at the cost cap)": Case(
        "page", JSON_TYPE, repeated(PAGE_HEAD, b'{"a":0},', 4_800_000, b"0]}")
    ),
    "JSON page: 880,000 \\u0100 strings (at the cost cap)": Case(
        "page", JSON_TYPE, repeated(PAGE_HEAD, b'"\\u0100",', 8_000_000, b"0]}")
    ),
    "JSON page: 60 MiB string, one emoji": Case(
        "page", JSON_TYPE, repeated(PAGE_HEAD + b'"', b"a", 60 * MIB, '\U0001f600"]}'.encode())
    ),
    "JSON page: PyPI's largest (ddtrace-sized)": Case("page", JSON_TYPE, realistic_page(46_724)),
    "10 workers at once: JSON pages of 600,000 one-key objects": Case(
        "page", JSON_TYPE, repeated(PAGE_HEAD, b'{"a":0},', 4_800_000, b"0]}"), workers=10
    ),
    "10 workers at once: HTML pages of 3 MiB of minimal links": Case(
        "page", "text/html", repeated(b"<html>", b"<a href=x>y</a>", 3 * MIB, b"</html>"), workers=10
    ),
    "HTML page: a 64 MiB open comment": Case("page", "text/html", repeated(b"<html><!--", b"x", 64 * MIB)),
    "HTML page: 64 MiB of minimal links": Case("page", "text/html", repeated(b"<html>", b"<a href=x>y</a>", 64 * MIB)),
    "XML-RPC: billion laughs": Case("xmlrpc", "text/xml", laughs),
    "XML-RPC: 64 MiB of empty structs": Case(
        "xmlrpc", "text/xml", repeated(XML_HEAD, b"<value><struct></struct></value>", 64 * MIB, XML_TAIL)
    ),
}


def serve(case: Case) -> str:
    """Start a server answering every request with the case's body; its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))  # an unread request body resets the socket
            self.send_response(200)
            self.send_header("Content-Type", case.content_type)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in case.body():
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client stopped reading: what a bounded parser does

        do_GET = do_POST = answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def run_case(name: str) -> dict[str, object]:
    """Run one case in this process: what the client did, peak RSS (MB) and seconds."""
    case = CASES[name]
    client = UpstreamClient(serve(case), retries=0, read_timeout=30, max_connections=case.workers)
    start = time.monotonic()
    try:
        if case.kind == "page" and case.workers > 1:
            with ThreadPoolExecutor(case.workers) as pool:
                pages = list(pool.map(lambda _: client.get_project("demo"), range(case.workers)))
            outcome = f"parsed {len(pages)} pages: {sum(len(page.files) for page in pages if page)} files"
        elif case.kind == "page":
            page = client.get_project("demo")
            outcome = f"parsed: {len(page.files) if page else 0} files"
        elif case.kind == "listing":
            outcome = f"parsed: {len(client.list_projects())} projects"
        else:
            outcome = f"parsed: {client.last_serial()!r:.40}"
    except MemoryError:
        outcome = "MemoryError"
    except Exception as error:
        outcome = f"refused: {type(error).__name__}: {str(error).replace(client.base_url, '…')[:120]}"
    seconds = time.monotonic() - start
    peak = peak_rss_mb()
    return {"case": name, "outcome": outcome, "peak_mb": round(peak, 1), "seconds": round(seconds, 2)}


def peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM): getrusage in a child starts from its parent's."""
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def measure(name: str, timeout: float = 300) -> dict[str, object]:
    """Run one case in a fresh process; its run_case result."""
    result = subprocess.run(
        [sys.executable, __file__, "--one", name],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        preexec_fn=_limit_address_space,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return {"case": name, "outcome": f"crashed ({result.returncode}): {result.stderr[-200:]}", "peak_mb": 0}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one)))
        return
    print("| case | outcome | peak RSS MB | seconds |")
    print("| --- | --- | ---: | ---: |")
    for name in args.cases or CASES:
        figure = measure(name)
        print(f"| {name} | {figure['outcome']} | {figure['peak_mb']} | {figure.get('seconds', '')} |", flush=True)


if __name__ == "__main__":
    main()
