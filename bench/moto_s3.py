"""moto's S3 alone, for benchmarks that write millions of objects: `python -m bench.moto_s3 PORT`.

`python -m moto.server` routes every request through moto's dispatcher, which looks up the service from the host and
path on each call, and werkzeug logs every request: at two million PUTs that overhead costs more CPU than S3's own
work. Here moto's S3 Flask app (its backends, responses and storage unchanged) is served directly on 127.0.0.1 by
werkzeug's threaded server, without request logging.
"""

from __future__ import annotations

import sys

from moto.server import create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """No access log: a line per request is most of the server's CPU at this rate."""


def main() -> None:
    port = int(sys.argv[1])
    server = make_server("127.0.0.1", port, create_backend_app("s3"), threaded=True, request_handler=QuietHandler)
    server.serve_forever()


if __name__ == "__main__":
    main()
