"""A streaming HTTP reverse proxy in front of the moto S3 server: counts S3 requests and injects faults.

Counts are by operation: GET, PUT, HEAD, DELETE, POST, and LIST (a GET with `list-type`). Faults are armed with
`inject(method, key_regex, fault, times)`; `method` is an HTTP verb or "LIST", `key_regex` is searched in the
object key (path-style requests: /bucket/key). Bodies are relayed in chunks, never buffered whole.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

RELAY_CHUNK = 256 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}


@dataclass(frozen=True)
class Fault:
    """What the proxy does instead of (or on top of) relaying a request faithfully."""

    kind: str  # "error": answer with an S3 XML error; "corrupt": flip the body's first byte on the way;
    # "reset": drop the connection with a TCP RST, never forwarding; "lose_response": forward, then RST.
    status: int = 0
    code: str = ""
    message: str = ""

    @classmethod
    def error(cls, status: int, code: str, message: str) -> Fault:
        return cls("error", status, code, message)


SLOW_DOWN = Fault.error(503, "SlowDown", "Please reduce your request rate.")
INTERNAL_ERROR = Fault.error(500, "InternalError", "We encountered an internal error. Please try again.")
PRECONDITION_FAILED = Fault.error(412, "PreconditionFailed", "At least one of the pre-conditions did not hold")
BAD_DIGEST = Fault.error(400, "BadDigest", "The sha256 you specified did not match the calculated checksum.")
CORRUPT_BODY = Fault("corrupt")
RESET = Fault("reset")
LOSE_RESPONSE = Fault("lose_response")


@dataclass
class _Rule:
    method: str
    key: re.Pattern[str]
    fault: Fault
    remaining: int


@dataclass
class _State:
    upstream: tuple[str, int]
    counts: Counter[str] = field(default_factory=Counter)
    log: list[tuple[str, str]] = field(default_factory=list)  # (operation, key) of every request, in order
    rules: list[_Rule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, operation: str, key: str) -> Fault | None:
        """Count the request; returns the fault armed for it, if any (consuming one of its `times`)."""
        with self.lock:
            self.counts[operation] += 1
            self.log.append((operation, key))
            for rule in self.rules:
                if rule.remaining > 0 and rule.method == operation and rule.key.search(key):
                    rule.remaining -= 1
                    return rule.fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    @property
    def state(self) -> _State:
        return cast(_ProxyServer, self.server).state

    def setup(self) -> None:
        super().setup()
        host, port = self.state.upstream
        self.upstream = http.client.HTTPConnection(host, port, timeout=60)

    def finish(self) -> None:
        self.upstream.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read counts, not logs."""

    def do_GET(self) -> None:
        self._relay()

    do_PUT = do_HEAD = do_DELETE = do_POST = do_GET

    def _relay(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.split("/", 2)
        key = unquote(parts[2]) if len(parts) > 2 else ""
        listing = self.command == "GET" and "list-type" in parse_qs(url.query, keep_blank_values=True)
        fault = self.state.record("LIST" if listing else self.command, key)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._drop()  # boto3 sends Content-Length over plain HTTP; anything else is a test bug
            return
        length = int(self.headers.get("Content-Length") or 0)
        if fault is None or fault.kind == "corrupt":
            self._forward(length, corrupt=fault is not None)
        elif fault.kind == "error":
            self._drain(length)
            self._answer_error(fault)
        elif fault.kind == "reset":
            self._drain(length)
            self._drop()
        else:  # lose_response
            self._forward(length, corrupt=False, deliver=False)
            self._drop()

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(RELAY_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)

    def _drop(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to the client."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _answer_error(self, fault: Fault) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{fault.code}</Code>'
            f"<Message>{fault.message}</Message><RequestId>s3proxy</RequestId></Error>"
        ).encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, length: int, *, corrupt: bool, deliver: bool = True) -> None:
        try:
            self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    self.upstream.putheader(name, value)
            self.upstream.endheaders()
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(RELAY_CHUNK, remaining))
                if not chunk:
                    break
                if corrupt:
                    chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                    corrupt = False
                self.upstream.send(chunk)
                remaining -= len(chunk)
            response = self.upstream.getresponse()
        except (OSError, http.client.HTTPException):
            self.upstream.close()
            self._drop()
            return
        if deliver:
            self._deliver(response)
        else:
            response.read()
        if response.will_close:
            self.upstream.close()

    def _deliver(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        chunked = response.getheader("Content-Length") is None and self.command != "HEAD"
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := response.read(RELAY_CHUNK):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class S3Proxy:
    """The proxy on 127.0.0.1 (a free port) in front of `upstream_url`; use as a context manager."""

    def __init__(self, upstream_url: str):
        target = urlsplit(upstream_url)
        if target.hostname is None or target.port is None:
            raise ValueError(f"upstream URL needs a host and a port: {upstream_url!r}")
        self._state = _State((target.hostname, target.port))
        self._server = _ProxyServer(self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="s3proxy", daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def counts(self) -> Counter[str]:
        """Requests seen so far, by operation (GET, PUT, HEAD, DELETE, POST, LIST)."""
        with self._state.lock:
            return Counter(self._state.counts)

    @property
    def log(self) -> list[tuple[str, str]]:
        """(operation, key) of every request so far, in arrival order."""
        with self._state.lock:
            return list(self._state.log)

    def reset_counts(self) -> None:
        with self._state.lock:
            self._state.counts.clear()
            self._state.log.clear()

    def inject(self, method: str, key_regex: str, fault: Fault, times: int = 1) -> None:
        """Apply `fault` to the next `times` requests of `method` (or "LIST") whose key matches `key_regex`."""
        with self._state.lock:
            self._state.rules.append(_Rule(method.upper(), re.compile(key_regex), fault, times))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> S3Proxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
