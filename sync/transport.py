"""HTTP to the upstream, bounded: retries (urllib3's Retry, Retry-After capped), a size limit on every body, a total
deadline on every request, redirects checked hop by hop, and never a connection to a link-local or instance-metadata
address.

- **Origins.** A request and every redirect hop must go to an allowed origin — scheme, host *and* port: the upstream's
  own, and each configured file host (`host` means https on 443 or http on 80; `host:port` and `scheme://host:port`
  name one port). A POST (XML-RPC) never follows a redirect at all.
- **Addresses.** Whatever the configuration and whatever DNS answers, the socket's peer address is checked right
  after it connects and before a byte is sent: link-local (169.254.0.0/16, fe80::/10, which hold the EC2, ECS, GCP and
  Azure metadata services) and the other clouds' metadata addresses are refused.
- **Retries.** Statuses and connection errors retry inside urllib3 (its Retry, below); a body broken mid-transfer is
  fetched again through `sync.retry.attempts`, paced as urllib3's backoff.
- **Deadline.** A watchdog shuts a request's socket once its deadline passes, so a server that trickles a byte just
  inside each read timeout cannot keep a run alive: the read timeout bounds one silence, the deadline the whole.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urljoin

import urllib3
from stamina import Attempt
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

from sync.origins import Origin, forbidden_address, origin_of
from sync.retry import Retryable, attempts

_T = TypeVar("_T")

MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 60.0  # seconds: a hostile Retry-After cannot stall a run for longer per retry
MAX_BACKOFF = 30.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
READ_CHUNK = 2**20
REQUEST_DEADLINE = 600.0  # seconds for one request (retries and redirects included) before its body size counts
MIN_TRANSFER_RATE = 256 * 2**10  # bytes a second: a body may take REQUEST_DEADLINE + its size at this rate


class UpstreamError(Exception):
    """The upstream is unreachable, gave up after retries or broke the protocol; the message names the URL."""


class ForbiddenAddress(UpstreamError):
    """A connection reached a link-local or instance-metadata address; nothing was sent."""


class DeadlineExceeded(UpstreamError):
    """A request took longer than its total deadline."""


class _Deadline:
    """Shuts the socket of the request in flight once `seconds` have passed (the watchdog's thread does it)."""

    def __init__(self, url: str, seconds: float):
        self.url, self.seconds = url, seconds
        self.expired = False
        self.due = time.monotonic() + seconds
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._watched = True
        _WATCHDOG.watch(self)

    def extend(self, seconds: float) -> None:
        """Allow `seconds` more (the body's size is known once the headers are in)."""
        with self._lock:
            if self.expired or not self._watched:
                return
            self.seconds += seconds
            self.due += seconds  # later only: the watchdog finds it when it looks again

    def attach(self, connection: HTTPConnection) -> None:
        """The connection the next exchange of this request goes over (retries and redirects attach anew)."""
        with self._lock:
            if self.expired:
                raise self.error()
            self._connection = connection

    def expire_if_due(self, now: float) -> bool:
        """Shut the socket if the deadline has passed (True), else leave it (False: extended meanwhile)."""
        with self._lock:
            if not self._watched:
                return True
            if now < self.due:
                return False
            self.expired, self._watched = True, False
            sock = self._connection.sock if self._connection is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read; the connection is then discarded
        return True

    def cancel(self) -> None:
        with self._lock:
            watched, self._watched = self._watched, False
        if watched:
            _WATCHDOG.forget(self)

    def error(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"{self.url}: no complete answer within the {self.seconds:.0f} s deadline")


class _Watchdog:
    """One daemon thread that expires the requests' deadlines as they fall due: a Timer thread per request cost more
    CPU than a small request itself. It holds only the requests in flight."""

    def __init__(self) -> None:
        self._watched: set[_Deadline] = set()
        self._changed = threading.Condition()
        self._next_look = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, deadline: _Deadline) -> None:
        with self._changed:
            self._watched.add(deadline)
            if self._thread is None or not self._thread.is_alive():  # first use, or a forked child
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            elif deadline.due < self._next_look:
                self._changed.notify()

    def forget(self, deadline: _Deadline) -> None:
        with self._changed:
            self._watched.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [deadline for deadline in self._watched if deadline.due <= now]
                self._next_look = min((deadline.due for deadline in self._watched), default=math.inf)
                if not due:
                    self._changed.wait(None if self._next_look == math.inf else self._next_look - now)
                    continue
            for deadline in due:  # outside the watchdog's lock: expiring takes the deadline's
                if deadline.expire_if_due(now):
                    self.forget(deadline)


_WATCHDOG = _Watchdog()


_IN_FLIGHT = threading.local()  # .deadline: the _Deadline of this thread's request being sent


class _GuardedConnection(HTTPConnection):
    """Refuses forbidden peer addresses once connected, before sending; reports itself to the request's deadline."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        peer = sock.getpeername()[0]
        if forbidden_address(peer):
            sock.close()
            raise ForbiddenAddress(
                f"{self.host} is at {peer}, a link-local or instance-metadata address: never fetched"
            )
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline: _Deadline | None = getattr(_IN_FLIGHT, "deadline", None)
        if deadline is not None:
            deadline.attach(self)
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


# urllib3 types ConnectionCls as its connection protocols, which its own classes satisfy only by being the default.
class _GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _GuardedConnection  # pyright: ignore[reportAssignmentType]


class _GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection  # pyright: ignore[reportAssignmentType]


class _Retry(Retry):
    """urllib3's Retry, with Retry-After capped and every repeated request reported to the client's counter: urllib3
    sleeps for whatever Retry-After says (an hour, from a hostile upstream) and has no hook per retry."""

    def __init__(
        self,
        *args: Any,
        retry_after_cap: float = MAX_RETRY_AFTER,
        on_retry: Callable[[], None] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.retry_after_cap = retry_after_cap
        self.on_retry = on_retry

    def new(self, **kwargs: Any) -> _Retry:
        fresh = super().new(**kwargs)
        fresh.retry_after_cap, fresh.on_retry = self.retry_after_cap, self.on_retry
        return fresh

    def get_retry_after(self, response: urllib3.BaseHTTPResponse) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.retry_after_cap)

    def increment(self, *args: Any, **kwargs: Any) -> _Retry:
        fresh = super().increment(*args, **kwargs)  # MaxRetryError when exhausted: no further request
        if self.on_retry is not None:
            self.on_retry()
        return fresh


class Response:
    """A response being read: its status and headers, the URL it came from after redirects, and a body that raises
    UpstreamError past `limit` bytes or past the request's deadline."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, url: str, deadline: _Deadline, limit: int | None):
        self.raw, self.url, self.status, self.headers = raw, url, raw.status, raw.headers
        self._deadline, self._limit, self._total = deadline, limit, 0
        declared = raw.headers.get("Content-Length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            raise UpstreamError(f"{url}: body of {declared} bytes is over the {limit}-byte limit; not read")

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative); b"" at the end."""
        if size < 0:
            return bytes(self.read_all())
        try:
            chunk = self.raw.read(size)
        except HTTPError:
            if self._deadline.expired:
                raise self._deadline.error() from None
            raise
        if self._deadline.expired:
            raise self._deadline.error()
        self._total += len(chunk)
        if self._limit is not None and self._total > self._limit:
            raise UpstreamError(f"{self.url}: body is over the {self._limit}-byte limit; stopped reading")
        return chunk

    def read_all(self) -> bytearray:
        """The rest of the body in one buffer, grown in place (never two copies of it at once)."""
        body = bytearray()
        while chunk := self.read(READ_CHUNK):
            body += chunk
        return body


class Transport:
    """A bounded urllib3 pool for one upstream: `allowed` origins only, counted requests, the module doc's limits."""

    def __init__(
        self,
        allowed: frozenset[Origin],
        *,
        user_agent: str,
        max_connections: int,
        connect_timeout: float,
        read_timeout: float,
        retries: int,
        backoff: float,
        max_retry_after: float,
        deadline: float = REQUEST_DEADLINE,
    ):
        self.allowed = allowed
        self.user_agent = user_agent
        self.retries = retries
        self.backoff = backoff
        self.deadline = deadline
        self._requests = 0
        self._requests_lock = threading.Lock()
        self._retry = _Retry(
            total=None,
            connect=retries,
            read=retries,
            status=retries,
            other=retries,
            redirect=False,  # followed here, hop by hop, so that each hop's origin is checked
            backoff_factor=backoff,
            backoff_max=MAX_BACKOFF,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"POST"},  # POST is only XML-RPC, which reads
            respect_retry_after_header=True,
            raise_on_status=False,
            retry_after_cap=max_retry_after,
            on_retry=self.count_request,
        )
        self._pool = urllib3.PoolManager(
            maxsize=max_connections,
            block=True,
            retries=self._retry,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            headers={"User-Agent": user_agent},
        )
        self._pool.pool_classes_by_scheme = {"http": _GuardedHTTPConnectionPool, "https": _GuardedHTTPSConnectionPool}

    @property
    def requests_made(self) -> int:
        with self._requests_lock:
            return self._requests

    def count_request(self) -> None:
        with self._requests_lock:
            self._requests += 1

    def after_retries(self, status: int) -> str:
        return f" after {self.retries} retries" if status in RETRY_STATUSES else ""

    def check_origin(self, url: str, what: str) -> None:
        if origin_of(url) not in self.allowed:
            raise UpstreamError(f"{what} {url!r} is not on an allowed origin (scheme, host and port)")

    @contextmanager
    def response(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        body: bytes | None = None,
        decode_content: bool = True,
        limit: int | None = None,
        deadline: float | None = None,
    ) -> Iterator[Response]:
        """One request, retried by urllib3 on connection errors and RETRY_STATUSES; GET redirects followed to allowed
        origins only. Its deadline is `deadline` (default: the transport's) plus the declared body size at
        MIN_TRANSFER_RATE."""
        self.check_origin(url, "URL")
        timer = _Deadline(url, self.deadline if deadline is None else deadline)
        try:
            raw, final = self._follow(
                method, url=url, headers=headers, body=body, decode_content=decode_content, timer=timer
            )
            try:
                declared = raw.headers.get("Content-Length", "")
                if declared.isdigit():
                    timer.extend(int(declared) / MIN_TRANSFER_RATE)
                yield Response(raw, final, timer, limit)
            finally:
                timer.cancel()
                if raw.length_remaining != 0:  # unread body: the connection cannot be reused
                    raw.close()
                raw.release_conn()
        finally:
            timer.cancel()

    def _follow(
        self,
        method: str,
        *,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        decode_content: bool,
        timer: _Deadline,
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        for _ in range(MAX_REDIRECTS + 1):
            raw = self._send(method, url=url, headers=headers, body=body, decode_content=decode_content, timer=timer)
            location = raw.get_redirect_location()
            if not location:
                return raw, url
            raw.drain_conn()
            raw.release_conn()
            target = urljoin(url, location)
            if method != "GET":
                raise UpstreamError(f"{url}: answered HTTP {raw.status} to {target!r}; a {method} is never redirected")
            self.check_origin(target, f"{url}: redirect to")
            url = target
        raise UpstreamError(f"{url}: more than {MAX_REDIRECTS} redirects (a redirect loop?)")

    def _send(
        self,
        method: str,
        *,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        decode_content: bool,
        timer: _Deadline,
    ) -> urllib3.BaseHTTPResponse:
        self.count_request()
        _IN_FLIGHT.deadline = timer
        try:
            return self._pool.urlopen(
                method,
                url,
                body=body,
                headers={"User-Agent": self.user_agent, **headers},
                preload_content=False,
                decode_content=decode_content,
                retries=self._retry,
                redirect=False,
            )
        except MaxRetryError as error:
            if timer.expired:
                raise timer.error() from None
            raise UpstreamError(f"{url}: gave up after {self.retries} retries: {error.reason}") from None
        except HTTPError as error:
            if timer.expired:
                raise timer.error() from None
            raise UpstreamError(f"{url}: {error}") from None
        finally:
            _IN_FLIGHT.deadline = None

    def read_retrying(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        accepted: frozenset[int],
        read: Callable[[Response], _T],
        limit: int,
        body: bytes | None = None,
        deadline: float | None = None,
    ) -> _T:
        """`read(response)` of a response with a status in `accepted` (else UpstreamError); a transfer broken
        mid-body is tried again from the start, `retries` times (a deadline passed is not)."""
        tries = self.retries + 1
        try:
            for attempt in self.attempts(HTTPError, tries):
                with (
                    attempt,
                    self.response(method, url, headers, body=body, limit=limit, deadline=deadline) as response,
                ):
                    if response.status not in accepted:
                        raise UpstreamError(f"{url}: HTTP {response.status}{self.after_retries(response.status)}")
                    return read(response)
        except HTTPError as error:
            raise UpstreamError(f"{url}: transfer failed {tries} times: {error}") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def attempts(self, on: Retryable, tries: int) -> Iterator[Attempt]:
        """sync.retry.attempts paced as this transport's backoff: pauses from `backoff` doubling, never longer
        than the last one urllib3 would take for `tries` (jittered up to it: never shorter than before)."""
        longest = min(self.backoff * 2 ** max(tries - 2, 0), MAX_BACKOFF)
        return attempts(on, attempts=tries, wait_initial=self.backoff, wait_max=longest)
