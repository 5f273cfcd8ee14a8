"""Helpers for tests of the upstream client: a fast-retrying client, a timer, and throwaway servers that answer each
path with a scripted handler (for behaviour the fake PyPI does not have)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sync.upstream import UpstreamClient


def client_for(server, **settings) -> UpstreamClient:
    settings = {"retries": 2, "backoff": 0.01, **settings}
    return UpstreamClient(server.url, **settings)


def elapsed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


Handler = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def scripted_server(routes: dict[str, Handler]) -> Iterator[str]:
    """A throwaway server on 127.0.0.1 answering each path with its handler function; yields its base URL."""

    class Handle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            routes.get(self.path.split("?")[0], lambda h: h.send_error(404))(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
