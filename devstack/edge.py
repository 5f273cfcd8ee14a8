"""A local stand-in for CloudFront: the deployed viewer-request function, run by node, in front of a bucket or folder
(`devstack/origins.py`).

Every request becomes a CloudFront Functions event and goes through the same `infra/edge/viewer_request.js` the
distribution runs (one long-lived node child, JSON lines over its stdin/stdout). The function either answers itself
(redirect, 404, 406) or names the object to serve; the edge then streams that object with its Content-Type,
Cache-Control and ETag, and `Vary: Accept` on negotiated pages. With `cache=True` it caches as the distribution does
(`devstack/cache.py`, keyed by the rewritten URI, `Age` and `X-Cache` on every answer) and serves CloudFront's
invalidation API at `cloudfront_endpoint_url` (`devstack/invalidations.py`) for the sync's boto3 client.
"""

from __future__ import annotations

import base64
import json
import logging
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from devstack.cache import CachedObject, EdgeCache, Lookup
from devstack.invalidations import COMPLETE_SECONDS, EFFECT_SECONDS, InvalidationApi, InvalidationLedger
from devstack.origins import EdgeObject, Origin
from infra.edge import VIEWER_REQUEST_JS
from sync.layout import PAGES_PREFIX

FUNCTION_RUNNER_JS = Path(__file__).resolve().with_name("function_runner.js")
NODE_HINT = "install Node.js 18 or newer (Debian/Ubuntu: apt-get install nodejs)"
COPY_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)

Event = dict[str, Any]


class EdgeError(RuntimeError):
    """The function could not run (node missing, crashed, hung or raised); the message says which and why."""


class ViewerRequestFunction:
    """The viewer-request function, run by one long-lived node process; thread-safe, one event at a time."""

    def __init__(self, script: Path = VIEWER_REQUEST_JS, *, node: str = "node", timeout: float = 5.0) -> None:
        self.script = script
        self.timeout = timeout
        self._lock = threading.Lock()
        # A file, not a pipe, so console.log can never block node; closed by close().
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            self._process = subprocess.Popen(  # noqa: S603 - node runs our own runner on our own function file
                [node, str(FUNCTION_RUNNER_JS), str(script)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr_file,
                text=True,
                encoding="utf-8",
            )
        except FileNotFoundError:
            self._stderr_file.close()
            raise EdgeError(f"cannot run the edge function: {node!r} not found; {NODE_HINT}") from None

    def __call__(self, event: Event) -> Event:
        """The function's answer to `event`: the (rewritten) request, or a response with a statusCode."""
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        with self._lock:
            try:
                process.stdin.write(json.dumps({"event": event}) + "\n")
                process.stdin.flush()
            except (BrokenPipeError, ValueError):
                raise EdgeError(f"the node process running {self.script} has exited: {self._stderr()}") from None
            ready, _, _ = select.select([process.stdout], [], [], self.timeout)
            if not ready:
                self.close()
                raise EdgeError(f"{self.script} did not answer within {self.timeout} s; node was stopped")
            line = process.stdout.readline()
        if not line:
            raise EdgeError(f"the node process running {self.script} has exited: {self._stderr()}")
        answer = json.loads(line)
        if "error" in answer:
            raise EdgeError(f"{self.script} raised: {answer['error']}")
        return answer["result"]

    def _stderr(self) -> str:
        """The end of what node wrote to stderr; stops node first."""
        self._stop()
        said = ""
        if not self._stderr_file.closed:
            self._stderr_file.seek(0)
            said = self._stderr_file.read().decode(errors="replace").strip()[-2000:]
        self.close()
        return said or f"exit status {self._process.returncode}"

    def _stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def close(self) -> None:
        """Stop the node process (idempotent)."""
        self._stop()
        for stream in (self._process.stdin, self._process.stdout, self._stderr_file):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> ViewerRequestFunction:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """CloudFront's shape for query strings and headers: first value in `value`, all of them in `multiValue`."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    shaped: dict[str, dict[str, Any]] = {}
    for name, values in grouped.items():
        shaped[name] = {"value": values[0]}
        if len(values) > 1:
            shaped[name]["multiValue"] = [{"value": value} for value in values]
    return shaped


def viewer_request_event(
    method: str, target: str, headers: Iterable[tuple[str, str]] = (), *, client_ip: str = "127.0.0.1"
) -> Event:
    """The CloudFront Functions viewer-request event for an HTTP request line target and its headers.

    As on CloudFront: the URI and query string keep the client's percent-encoding; header names are lower-case.
    """
    path, _, query = target.partition("?")
    query_pairs = [(name, value) for name, _, value in (item.partition("=") for item in query.split("&") if item)]
    return {
        "version": "1.0",
        "context": {"eventType": "viewer-request"},
        "viewer": {"ip": client_ip},
        "request": {
            "method": method,
            "uri": path,
            "querystring": _multi(query_pairs),
            "headers": _multi((name.lower(), value) for name, value in headers),
            "cookies": {},
        },
    }


class _EdgeRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def edge(self) -> _EdgeHTTPServer:
        return cast(_EdgeHTTPServer, self.server)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self, *, send_body: bool) -> None:
        event = viewer_request_event(self.command, self.path, self.headers.items(), client_ip=self.client_address[0])
        try:
            outcome = self.edge.function(event)
        except EdgeError as error:
            log.error("%s", error)
            self._send_text(HTTPStatus.BAD_GATEWAY, f"502 the edge function failed: {error}\n", send_body=send_body)
            return
        if "statusCode" in outcome:
            self._send_function_response(outcome, send_body=send_body)
            return
        uri = outcome["uri"]
        key = unquote(uri.lstrip("/"))
        cache = self.edge.cache
        if cache is not None and not cache.passes_through(uri):
            try:
                lookup = cache.get(uri)
            except Exception as error:  # the origin is boto3 or the file system: any failure is a 502, logged
                log.exception("origin failed for %s", key)
                self._send_text(HTTPStatus.BAD_GATEWAY, f"502 origin error: {error}\n", send_body=send_body)
                return
            if lookup is not None:
                self._send_cached(key, lookup, send_body=send_body)
                return
        try:
            found = self.edge.origin.fetch(key)
        except Exception as error:  # the origin is boto3 or the file system: any failure is a 502, logged
            log.exception("origin failed for %s", key)
            self._send_text(HTTPStatus.BAD_GATEWAY, f"502 origin error: {error}\n", send_body=send_body)
            return
        if found is None:
            self._send_text(HTTPStatus.NOT_FOUND, "404 Not Found\n", send_body=send_body)
            return
        with found.body:
            self._send_object(key, found, send_body=send_body)

    def _send_object(self, key: str, found: EdgeObject, *, send_body: bool) -> None:
        not_modified = found.etag is not None and self.headers.get("If-None-Match") == found.etag
        self.send_response(HTTPStatus.NOT_MODIFIED if not_modified else HTTPStatus.OK)
        self.send_header("Content-Type", found.content_type)
        if found.cache_control:
            self.send_header("Cache-Control", found.cache_control)
        if found.etag:
            self.send_header("ETag", found.etag)
        if key.startswith(PAGES_PREFIX):
            self.send_header("Vary", "Accept")
        if not not_modified:
            self.send_header("Content-Length", str(found.size))
        self.end_headers()
        if send_body and not not_modified:
            shutil.copyfileobj(found.body, self.wfile, COPY_CHUNK)

    def _send_cached(self, key: str, lookup: Lookup, *, send_body: bool) -> None:
        cached: CachedObject = lookup.cached
        not_modified = cached.etag is not None and self.headers.get("If-None-Match") == cached.etag
        self.send_response(HTTPStatus.NOT_MODIFIED if not_modified else cached.status)
        self.send_header("Content-Type", cached.content_type)
        for name, value in (("Cache-Control", cached.cache_control), ("ETag", cached.etag)):
            if value:
                self.send_header(name, value)
        if key.startswith(PAGES_PREFIX) and cached.status == HTTPStatus.OK:
            self.send_header("Vary", "Accept")
        self.send_header("Age", str(int(lookup.age)))
        self.send_header("X-Cache", f"{lookup.result} from cloudfront")
        if not not_modified:
            self.send_header("Content-Length", str(len(cached.body)))
        self.end_headers()
        if send_body and not not_modified:
            self.wfile.write(cached.body)

    def _send_function_response(self, response: Event, *, send_body: bool) -> None:
        body = response.get("body") or ""
        if isinstance(body, dict):
            data = body.get("data", "")
            payload = base64.b64decode(data) if body.get("encoding") == "base64" else data.encode()
        else:
            payload = str(body).encode()
        self.send_response(int(response["statusCode"]), response.get("statusDescription"))
        for name, header in (response.get("headers") or {}).items():
            for item in header.get("multiValue") or [header]:
                self.send_header(name, item["value"])
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if send_body:
            self.wfile.write(payload)

    def _send_text(self, status: HTTPStatus, text: str, *, send_body: bool) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if send_body:
            self.wfile.write(payload)


class _EdgeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], origin: Origin, function: ViewerRequestFunction, cache: EdgeCache | None
    ) -> None:
        super().__init__(address, _EdgeRequestHandler)
        self.origin = origin
        self.function = function
        self.cache = cache


class EdgeServer:
    """CloudFront on 127.0.0.1: `with EdgeServer(FolderOrigin("mirror")) as edge: ... edge.url ...`.

    Starts serving on construction, in a background thread; `close()` stops the server and the node process.
    `cache=True`: cache as CloudFront does and accept invalidations at `cloudfront_endpoint_url`, which take effect
    after `effect_seconds` and report Completed after `complete_seconds`; `clock` drives both (tests move it).
    """

    def __init__(
        self,
        origin: Origin,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        function: ViewerRequestFunction | None = None,
        cache: bool = False,
        effect_seconds: float = EFFECT_SECONDS,
        complete_seconds: float = COMPLETE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owns_function = function is None
        self.function = function or ViewerRequestFunction()
        self.cache = EdgeCache(lambda key: origin.fetch(unquote(key)), clock=clock) if cache else None
        self.invalidations = (
            InvalidationApi(
                InvalidationLedger(self.cache, effect_seconds=effect_seconds, complete_seconds=complete_seconds)
            )
            if self.cache is not None
            else None
        )
        try:
            self._server = _EdgeHTTPServer((host, port), origin, self.function, self.cache)
        except OSError as error:
            self.close()
            raise EdgeError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="edge", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cloudfront_endpoint_url(self) -> str | None:
        """Where a boto3 CloudFront client sends invalidations (`endpoint_url`); None without a cache."""
        return self.invalidations.endpoint_url if self.invalidations else None

    @property
    def distribution_id(self) -> str | None:
        return self.invalidations.distribution_id if self.invalidations else None

    def close(self) -> None:
        """Stop serving and the invalidation API, then stop node if this server started it."""
        invalidations = getattr(self, "invalidations", None)
        if invalidations is not None:
            invalidations.close()
        if hasattr(self, "_server"):
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
        if self._owns_function:
            self.function.close()

    def __enter__(self) -> EdgeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
