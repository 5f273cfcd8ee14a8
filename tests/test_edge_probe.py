"""The planner's edge probe: end-to-end lag from the upstream change to the CDN serving the page."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack.edge import EdgeServer
from devstack.origins import S3Origin
from sync import edge_probe
from sync.edge_probe import GIVE_UP_SECONDS, SAMPLE_PER_PASS, EdgeProbe, Probe, served_serial
from sync.lambda_settings import EDGE_LAG_METRIC, settings_from_env
from tests.test_handlers import Lambda, emf_values


class FakeCdn(ThreadingHTTPServer):
    """Serves /simple/<name>/ as JSON with the serial set in `serials` (404 for other names); records Accept."""

    daemon_threads = True

    def __init__(self) -> None:
        self.serials: dict[str, int] = {}
        self.accepts: list[str] = []
        self.broken: set[str] = set()

        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.accepts.append(self.headers.get("Accept", ""))
                name = self.path.removeprefix("/simple/").rstrip("/")
                if name in server.broken:
                    body = b"<html>not json</html>"
                elif name in server.serials:
                    body = json.dumps({"meta": {"api-version": "1.1", "_last-serial": server.serials[name]}}).encode()
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


@pytest.fixture
def cdn() -> Iterator[FakeCdn]:
    server = FakeCdn()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


def test_the_lag_is_reported_once_the_cdn_serves_the_change(cdn: FakeCdn) -> None:
    clock, lags = Clock(), []
    probe = EdgeProbe(cdn.url, lags.append, clock=clock)
    cdn.serials["demo"] = 41
    probe.track([Probe("demo", 42, clock.now)])  # read once now: the page from before the change
    clock.now += 10
    assert probe.check() == 0  # the CDN still serves the page from before the change
    assert probe.pending == 1
    cdn.serials["demo"] = 43
    clock.now += 10
    assert probe.check() == 1
    assert lags == [20.0]
    assert probe.pending == 0
    assert set(cdn.accepts) == {"application/vnd.pypi.simple.v1+json"}


def test_unreadable_pages_stay_pending_until_the_probe_gives_up(cdn: FakeCdn) -> None:
    clock, lags = Clock(), []
    probe = EdgeProbe(cdn.url, lags.append, clock=clock)
    cdn.broken.add("broken")
    probe.track([Probe("broken", 1, clock.now), Probe("missing", 1, clock.now)])
    clock.now += 30
    assert probe.check() == 0
    clock.now += GIVE_UP_SECONDS
    assert probe.check() == 2
    assert lags == [GIVE_UP_SECONDS, GIVE_UP_SECONDS]  # a ceiling, not silence


def test_an_unreachable_cdn_is_not_an_error() -> None:
    clock, lags = Clock(), []
    probe = EdgeProbe("http://127.0.0.1:9", lags.append, clock=clock)
    probe.track([Probe("demo", 1, clock.now)])
    assert probe.pending == 1
    clock.now += GIVE_UP_SECONDS
    assert probe.check() == 1
    assert lags == [GIVE_UP_SECONDS]


def test_a_tracked_page_is_read_at_once_so_the_edge_holds_the_old_page(cdn: FakeCdn) -> None:
    clock = Clock()
    probe = EdgeProbe(cdn.url, lambda seconds: None, clock=clock)
    cdn.serials["demo"] = 1
    probe.track([Probe("demo", 2, clock.now)])
    assert len(cdn.accepts) == 1


def test_a_pass_adds_a_bounded_sample() -> None:
    clock = Clock()
    probe = EdgeProbe("http://127.0.0.1:9", lambda seconds: None, clock=clock)
    probe.track(Probe(f"p{number}", 1, clock.now) for number in range(SAMPLE_PER_PASS * 3))
    assert probe.pending == SAMPLE_PER_PASS
    assert probe.track([Probe("p0", 2, clock.now)]) == []  # already pending: keeps its first (older) change
    assert probe.pending == SAMPLE_PER_PASS


def test_a_pending_total_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_probe, "MAX_PENDING", 7)
    clock = Clock()
    probe = EdgeProbe("http://127.0.0.1:9", lambda seconds: None, clock=clock)
    for start in range(0, 40, SAMPLE_PER_PASS):
        probe.track(Probe(f"p{number}", 1, clock.now) for number in range(start, start + SAMPLE_PER_PASS))
    assert probe.pending == 7


@pytest.mark.parametrize(
    ("body", "serial"),
    [
        (b'{"meta": {"_last-serial": 7}}', 7),
        (b'{"meta": {"_last-serial": true}}', None),
        (b'{"meta": {"_last-serial": "7"}}', None),
        (b'{"meta": {}}', None),
        (b"[1]", None),
        (b"<html>", None),
        (b"[" * 100_000, None),
    ],
)
def test_served_serial_reads_only_a_json_page(body: bytes, serial: int | None) -> None:
    assert served_serial(body) == serial


def test_the_probe_url_comes_from_the_environment() -> None:
    settings = settings_from_env({"PYPI_CDN_DEST": "s3://b", "PYPI_CDN_PROBE_URL": "https://cdn.example.org"})
    assert settings.probe_url == "https://cdn.example.org"
    assert settings_from_env({"PYPI_CDN_DEST": "s3://b"}).probe_url is None


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_the_planner_reports_when_the_edge_serves_a_change(monkeypatch, upstream, fake_index, s3_dest, capsys):
    """Through the real handlers: the pass that syncs a change tracks it, the next one reads it back at the edge."""
    origin = S3Origin(s3_dest.endpoint_url, s3_dest.bucket, prefix=s3_dest.prefix.rstrip("/") + "/")
    with EdgeServer(origin) as edge:
        aws = Lambda(monkeypatch, upstream, s3_dest, PYPI_CDN_PROBE_URL=edge.url)
        aws.plan()
        changed = datetime.now(UTC)
        monkeypatch.setattr(fake_index, "timestamp", lambda serial: changed)  # journal time: now, not the corpus's
        fake_index.add_file("tiny", "tiny-9.0.tar.gz", b"tiny nine", version="9.0")
        capsys.readouterr()
        assert aws.plan()["synced_inline"] == 1
        assert emf_values(capsys.readouterr().out, EDGE_LAG_METRIC) == []  # read before the sync; again next pass
        aws.plan()
        lags = emf_values(capsys.readouterr().out, EDGE_LAG_METRIC)
    assert len(lags) == 1
    assert 0 <= lags[0] <= time.time() - changed.timestamp() + 1  # served, not given up on (GIVE_UP_SECONDS)
