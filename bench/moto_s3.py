"""moto's S3 for benchmarks of millions of objects: `python -m bench.moto_s3 PORT`, or `serve_in_thread()`.

`python -m moto.server` routes every request through moto's dispatcher, which looks up the service from the host and
path on each call, and werkzeug logs every request: at two million PUTs that overhead costs more CPU than S3's own
work. Here moto's S3 Flask app (its backends, responses and storage unchanged) is served directly on 127.0.0.1 by
werkzeug's threaded server, without request logging.

`serve_in_thread` serves it in this process (where a benchmark loads the backend) and makes two of moto's costs S3's,
for buckets of a million keys read many times:
- waitress keeps connections alive, as S3 does; werkzeug's server closes each one, so every request paid for a new
  connection and a new server thread;
- `ListObjectsV2` without a delimiter reads a page from a sorted index of the bucket's names (rebuilt when a key is
  added or removed) instead of copying and sorting the whole bucket for every page of 1,000 keys. Its pages, tokens
  and truncation are moto's own (tests/test_bench_moto_s3.py compares the two).
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moto.moto_server.werkzeug_app import create_backend_app
from moto.s3.models import FakeDeleteMarker, S3Backend
from moto.s3.utils import _VersionedKeyStore
from waitress.server import TcpWSGIServer, create_server
from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: a line per request is most of the server's CPU at this rate."""


class IndexedKeyStore(_VersionedKeyStore):
    """A bucket's keys that keep their names sorted, re-sorted only after a name is added or removed."""

    _sorted: list[str] | None = None

    def sorted_names(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(dict.keys(self))
        return self._sorted

    def __setitem__(self, key: str, value: Any) -> Any:
        self._forget(key)
        return super().__setitem__(key, value)

    def setlist(self, key: Any, list_: Any) -> Any:
        self._forget(key)
        return super().setlist(key, list_)

    def pop(self, key: str) -> None:  # type: ignore[override]
        self._sorted = None
        super().pop(key)

    def __delitem__(self, key: str) -> None:
        self._sorted = None
        super().__delitem__(key)

    def _forget(self, key: str) -> None:
        if not dict.__contains__(self, key):
            self._sorted = None


def index_bucket(backend: S3Backend, name: str) -> None:
    """Give bucket `name` an IndexedKeyStore, so `indexed_listing` serves its pages."""
    bucket = backend.get_bucket(name)
    indexed = IndexedKeyStore()
    for key, versions in dict.items(bucket.keys):
        dict.__setitem__(indexed, key, versions)
    bucket.keys = indexed


def indexed_listing(backend: S3Backend) -> None:
    """Make `backend.list_objects_v2` read indexed buckets' pages by bisection; others keep moto's listing."""
    moto_listing = backend.list_objects_v2

    def list_objects_v2(
        bucket: Any, *, prefix: str | None, delimiter: str | None, continuation_token: str | None,
        start_after: str | None, max_keys: int,
    ) -> Any:  # fmt: skip
        keys = bucket.keys
        if delimiter or not isinstance(keys, IndexedKeyStore):
            return moto_listing(
                bucket, prefix=prefix, delimiter=delimiter, continuation_token=continuation_token,
                start_after=start_after, max_keys=max_keys,
            )  # fmt: skip
        prefix = prefix or ""
        after = backend._pagination_tokens.get(continuation_token) if continuation_token else start_after
        names = keys.sorted_names()
        position = bisect_left(names, prefix)
        if after:
            position = max(position, bisect_right(names, after))
        page: list[Any] = []
        for name in names[position:]:
            if not name.startswith(prefix):
                break
            key = keys[name]
            if isinstance(key, FakeDeleteMarker):
                continue
            page.append(key)
            if len(page) > max_keys:
                break
        return backend._truncate_result(page, max_keys)

    backend.list_objects_v2 = list_objects_v2  # type: ignore[method-assign]


@contextmanager
def serve_in_thread(backend: S3Backend, threads: int) -> Iterator[str]:
    """moto's S3 app on 127.0.0.1 (a free port) with keep-alive and indexed listing, for the block: yields its URL."""
    indexed_listing(backend)
    server = create_server(create_backend_app("s3"), host="127.0.0.1", port=0, threads=threads, ident=None)
    assert isinstance(server, TcpWSGIServer)  # one TCP address: not a MultiSocketServer or a Unix socket
    port = server.getsockname()[1]  # numeric, as text
    thread = threading.Thread(target=server.run, name="moto-s3", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        thread.join(timeout=10)


def main() -> None:
    port = int(sys.argv[1])
    server = make_server("127.0.0.1", port, create_backend_app("s3"), threaded=True, request_handler=QuietHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
