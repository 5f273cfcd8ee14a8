"""A hostile upstream on loopback, issue 13's classes 2-6: names, memory, SSRF, serials, deadlines and signals.

Each case table below is counted by bench/faults_report.py. Scripted servers (stdlib http.server on 127.0.0.1) play
the upstream and the hosts it points at, and record every request, so a test can show that a refused target never
received one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import hostile_memory
from sync import cli, origins
from sync.layout import STATE_KEY
from sync.origins import allowed_origins, forbidden_address
from sync.state import MirrorState
from sync.storage import StorageError, open_storage
from sync.transport import DeadlineExceeded, UpstreamError
from sync.upstream import UpstreamClient
from tests.test_faults_upstream import FaultRig, synced_rig, use_fast_client
from tests.upstream.index import FakeIndex
from tests.upstream.server import JSON_TYPE, Fault, UpstreamServer

SHA = "ab" * 32
REPO = Path(__file__).resolve().parent.parent
MEMORY_BUDGET_MB = 150


# ------------------------------------------------------------------------------------------ scripted hosts
Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Host:
    """A scripted server: path -> handler, for GET and POST; `requests` lists (method, path) as they came."""

    routes: dict[str, Handler]
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def hosts(*tables: dict[str, Handler]) -> Iterator[list[Host]]:
    """One running Host per route table, each on its own port of 127.0.0.1."""
    servers, running = [], []
    for routes in tables:
        host = Host(routes)

        class Handle(BaseHTTPRequestHandler):
            def answer(self, host: Host = host) -> None:
                host.requests.append((self.command, self.path))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                host.routes.get(self.path.split("?")[0], lambda h: h.send_error(404))(self)

            do_GET = do_POST = answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        host.url = f"http://127.0.0.1:{server.server_address[1]}"
        servers.append(server)
        running.append(host)
    try:
        yield running
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(status: int, location: Callable[[], str]) -> Handler:
    return lambda handler: send(handler, status, Location=location())


def html_page(*links: str) -> Handler:
    body = ("<!DOCTYPE html><html><body>" + "".join(links) + "</body></html>").encode()
    return lambda handler: send(handler, 200, body, Content_Type="text/html")


def link(url: str, filename: str) -> str:
    return f'<a href="{url}#sha256={SHA}">{filename}</a>'


def client(url: str, **settings: object) -> UpstreamClient:
    return UpstreamClient(url, **{"retries": 0, "read_timeout": 5.0, **settings})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- class 2: names
NON_ASCII_NAMES = ["\u017fix", "\u0131dna", "\u212aelvin", "pa\u0441kaging"]  # long s, dotless i, Kelvin, Cyrillic


@pytest.mark.parametrize("name", NON_ASCII_NAMES, ids=ascii)
@pytest.mark.hostile_class(2)
def test_a_non_ascii_project_flag_is_a_usage_error_naming_it(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["mirror", "--upstream", "http://127.0.0.1:9", "--dest", str(tmp_path), "--project", name])
    assert code == cli.EXIT_USAGE
    assert f"projects: invalid project name {name!r}" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- class 5: serials
def feed_answer(rows: list[tuple[str, int]]) -> bytes:
    """A changelog_since_serial answer; serials past 32 bits go as <i8> (xmlrpc.client.dumps refuses them)."""
    placeholder = 1_234_567
    answer = xmlrpc.client.dumps(
        ([[name, "1.0", 1_700_000_000, "create", placeholder + i] for i, (name, _) in enumerate(rows)],),
        methodresponse=True,
    )
    for i, (_, serial) in enumerate(rows):
        answer = answer.replace(f"<int>{placeholder + i}</int>", f"<i8>{serial}</i8>")
    return answer.encode()


@pytest.fixture
def rig(upstream: UpstreamServer, fake_index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FaultRig:
    use_fast_client(monkeypatch)
    return synced_rig(upstream, fake_index, str(tmp_path / "mirror"))


@pytest.mark.hostile_class(5)
def test_a_feed_serial_past_2_63_is_refused_and_the_next_run_reads_the_state(rig: FaultRig) -> None:
    before = MirrorState.from_json(rig.storage.get_bytes(STATE_KEY)[0]).serial
    rig.upstream.override_path("/pypi", feed_answer([("tiny", 2**63), ("tiny", 2**70)]), "text/xml")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    logged = "\n".join(e.get("message", "") for e in outcome.events if e["level"] == "warning")
    assert str(2**63) in logged
    assert str(2**70) in logged
    rig.upstream.clear_overrides()
    assert rig.mirror().code == cli.EXIT_OK
    assert MirrorState.from_json(rig.storage.get_bytes(STATE_KEY)[0]).serial == before


@pytest.mark.hostile_class(5)
def test_a_serial_past_32_bits_is_saved_and_asked_for_on_the_next_run(rig: FaultRig) -> None:
    big = 2**40
    page = json.loads(rig.storage.get_bytes("simple/tiny/index.v1_json")[0])
    upstream_page = {"meta": {"api-version": "1.1", "_last-serial": big}, "name": "tiny", "files": []}
    upstream_page["files"] = [
        {"filename": f["filename"], "url": rig.upstream.url + "/packages/" + f["url"].split("packages/", 1)[1]}
        | {"hashes": f["hashes"], "size": f["size"]}
        for f in page["files"]
    ]
    rig.upstream.override_page("tiny", json.dumps(upstream_page).encode(), JSON_TYPE)
    rig.upstream.override_path("/pypi", feed_answer([("tiny", big)]), "text/xml")
    assert rig.mirror().code == cli.EXIT_OK
    assert MirrorState.from_json(rig.storage.get_bytes(STATE_KEY)[0]).serial == big
    rig.upstream.clear_overrides()
    rig.upstream.reset_log()
    outcome = rig.mirror()  # sends changelog_since_serial(2**40): xmlrpc.client.dumps alone raises OverflowError
    assert outcome.code == cli.EXIT_OK, outcome.stderr
    assert rig.upstream.count("/pypi", method="POST") >= 1


HOSTILE_SERIALS = {
    "page _last-serial 2**63": ({"_last-serial": 2**63}, "9223372036854775808 is not a serial"),
    "page _last-serial as a 30-digit string": ({"_last-serial": "9" * 30}, "is not a serial"),
    "page _last-serial negative": ({"_last-serial": -1}, "-1 is not a serial"),
}


@pytest.mark.parametrize(("meta", "complaint"), HOSTILE_SERIALS.values(), ids=HOSTILE_SERIALS.keys())
@pytest.mark.hostile_class(5)
def test_a_page_with_an_absurd_serial_is_refused_naming_it(rig: FaultRig, meta: dict, complaint: str) -> None:
    document = {"meta": {"api-version": "1.1", **meta}, "name": "tiny", "files": []}
    rig.upstream.override_page("tiny", json.dumps(document).encode(), JSON_TYPE)
    rig.index.add_file("tiny", "tiny-3.0.tar.gz", b"tiny 3.0", version="3.0")
    outcome = rig.mirror()
    assert outcome.code == cli.EXIT_PARTIAL
    assert complaint in outcome.failed_lines[0]
    state = MirrorState.from_json(rig.storage.get_bytes(STATE_KEY)[0])  # still readable
    assert all(s.serial is None or s.serial < 2**63 for _, s in state.projects.states())


@pytest.mark.hostile_class(5)
def test_a_serial_header_past_2_63_is_an_upstream_error() -> None:
    page = b"<!DOCTYPE html><html><body></body></html>"
    routes = {"/simple/demo/": lambda h: send(h, 200, page, Content_Type="text/html", X_PyPI_Last_Serial="9" * 25)}
    with hosts(routes) as (upstream,), pytest.raises(UpstreamError, match="X-PyPI-Last-Serial '9999"):
        client(upstream.url).get_project("demo")


@pytest.mark.hostile_class(5)
def test_a_state_with_an_absurd_serial_is_neither_read_nor_written(tmp_path: Path) -> None:
    header = {"format": 2, "serial": 2**63, "incomplete": False, "pending": {}, "projects": 0}
    with pytest.raises(StorageError, match=r"state\.json: unreadable mirror state \(9223372036854775808 is not a"):
        MirrorState.from_json(json.dumps(header).encode() + b"\n")
    storage = open_storage(str(tmp_path))
    with pytest.raises(ValueError, match="is not a serial"):
        MirrorState(serial=2**63).to_json()
    assert storage.get_bytes(STATE_KEY) is None


# ------------------------------------------------------------------------------------------------ class 4: SSRF
@pytest.mark.hostile_class(4)
def test_a_file_on_another_port_of_the_upstream_host_is_dropped() -> None:
    elsewhere: list[Host] = []
    routes: dict[str, Handler] = {}
    with hosts(routes, {}) as (upstream, other):
        elsewhere.append(other)
        routes["/simple/demo/"] = html_page(
            link(f"{upstream.url}/files/demo-1.0.tar.gz", "demo-1.0.tar.gz"),
            link(f"{other.url}/files/demo-1.1.tar.gz", "demo-1.1.tar.gz"),
        )
        page = client(upstream.url, file_hosts=["127.0.0.1"]).get_project("demo")
    assert [dist.filename for dist in page.files] == ["demo-1.0.tar.gz"]


REDIRECTS = {
    "page to another port": ("GET", "/simple/demo/", 302),
    "page to another port, 308": ("GET", "/simple/demo/", 308),
    "file to another port": ("GET", "/files/demo-1.0.tar.gz", 302),
    "XML-RPC POST, 307": ("POST", "/pypi", 307),
    "XML-RPC POST, 308": ("POST", "/pypi", 308),
}


@pytest.mark.parametrize(("method", "path", "status"), REDIRECTS.values(), ids=REDIRECTS.keys())
@pytest.mark.hostile_class(4)
def test_a_redirect_off_the_allowed_origins_is_not_followed(method: str, path: str, status: int) -> None:
    routes: dict[str, Handler] = {}
    with hosts(routes, {path: lambda h: send(h, 200, b"secret")}) as (upstream, other):
        routes[path] = redirect(status, lambda: other.url + path)
        mirror_client = client(upstream.url, file_hosts=["127.0.0.1"])

        def fetch() -> object:
            if method == "POST":
                return mirror_client.last_serial()
            if path.startswith("/simple/"):
                return mirror_client.get_project("demo")
            with mirror_client.open_file(upstream.url + path) as body:
                return body.read()

        with pytest.raises(UpstreamError, match=r"redirect|never redirected"):
            fetch()
    assert other.requests == []
    assert upstream.requests == [(method, path)]


@pytest.mark.hostile_class(4)
def test_a_redirect_within_the_origin_is_followed() -> None:
    routes: dict[str, Handler] = {}
    with hosts(routes) as (upstream,):
        routes["/files/a.tar.gz"] = redirect(302, lambda: "/files/b.tar.gz")
        routes["/files/b.tar.gz"] = lambda h: send(h, 200, b"bytes")
        with client(upstream.url).open_file(upstream.url + "/files/a.tar.gz") as body:
            assert body.read() == b"bytes"


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("169.254.169.254", True),  # EC2, ECS task, GCP, Azure metadata
        ("169.254.170.2", True),  # ECS task credentials
        ("fe80::1%eth0", True),
        ("fd00:ec2::254", True),  # EC2 IPv6 metadata
        ("::ffff:169.254.169.254", True),  # the same, IPv4-mapped
        ("100.100.100.200", True),  # Alibaba Cloud
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("151.101.0.223", False),
        ("2a04:4e42::223", False),
    ],
)
@pytest.mark.hostile_class(4)
def test_link_local_and_metadata_addresses_are_forbidden(address: str, forbidden: bool) -> None:
    assert forbidden_address(address) is forbidden


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost"])
@pytest.mark.hostile_class(4)
def test_a_forbidden_address_is_never_sent_a_request_whatever_the_host_name(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(origins, "FORBIDDEN_NETWORKS", (ipaddress.ip_network("127.0.0.0/8"),))
    with hosts({"/simple/demo/": html_page()}) as (upstream,):
        url = upstream.url.replace("127.0.0.1", name)
        with pytest.raises(UpstreamError, match=r"is at 127\.0\.0\.1, a link-local or instance-metadata address"):
            client(url, retries=2).get_project("demo")
    assert upstream.requests == []


@pytest.mark.hostile_class(4)
def test_file_hosts_name_origins() -> None:
    assert allowed_origins(["files.example", "mirror.example:8443", "http://raw.example:8080"]) == {
        ("https", "files.example", 443),
        ("http", "files.example", 80),
        ("https", "mirror.example", 8443),
        ("http", "mirror.example", 8443),
        ("http", "raw.example", 8080),
    }


# -------------------------------------------------------------------------------------------- class 6: deadlines
def trickle(status_line: bool) -> Handler:
    """Headers (or, without `status_line`, the status line itself) then a byte every 0.1 s, for up to a minute."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        try:
            if status_line:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 600\r\n\r\n")
            else:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(600):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    return answer


@pytest.mark.parametrize("headers_done", [True, False], ids=["trickled body", "trickled headers"])
@pytest.mark.hostile_class(6)
def test_a_trickling_server_is_cut_off_at_the_deadline(headers_done: bool) -> None:
    with hosts({"/simple/demo/": trickle(headers_done)}) as (upstream,):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="within the 2 s deadline"):
            client(upstream.url, read_timeout=1.0, deadline=1.5).get_project("demo")
        assert time.monotonic() - start < 5  # 600 bytes at 10 a second would take a minute


@pytest.mark.hostile_class(6)
def test_a_trickling_file_is_cut_off_at_the_deadline() -> None:
    with hosts({"/files/demo-1.0.tar.gz": trickle(True)}) as (upstream,):
        start = time.monotonic()
        with (
            pytest.raises(DeadlineExceeded),
            client(upstream.url, read_timeout=1.0, deadline=1.0).open_file(
                upstream.url + "/files/demo-1.0.tar.gz"
            ) as body,
        ):
            body.read()
        assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, cli.EXIT_TERMINATED), (signal.SIGINT, cli.EXIT_INTERRUPTED)]
)
@pytest.mark.hostile_class(6)
def test_a_signal_stops_the_run_and_releases_the_lease(
    upstream: UpstreamServer, tmp_path: Path, signum: int, code: int
) -> None:
    upstream.inject(r"^/simple/tiny/", Fault.delay(2.0), times=1)
    dest = tmp_path / "mirror"
    command = [sys.executable, "-m", "sync", "mirror", "--upstream", upstream.url, "--dest", str(dest)]
    command += ["--project", "tiny", "--log-format", "json"]
    # SIGINT back to its default in the child: a suite started in the background (`make test &`) ignores it, and the
    # run, like Python, keeps an ignored SIGINT ignored.
    run = subprocess.Popen(
        command,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - no threads in the child yet
    )
    lease = dest / ".pypi-cdn" / "lease.json"
    give_up = time.monotonic() + 20
    while not lease.exists() and time.monotonic() < give_up and run.poll() is None:
        time.sleep(0.05)
    assert lease.exists(), "the run never took its lease"
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == code, stderr
    assert not lease.exists()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == cli.EXIT_OK, again.stderr  # not 5: nothing left to wait for


# -------------------------------------------------------------------------------------------- class 3: memory
MEMORY_CASES = list(hostile_memory.CASES)


@pytest.mark.parametrize("case", MEMORY_CASES)
@pytest.mark.hostile_class(3)
def test_hostile_answers_stay_within_the_memory_budget(case: str) -> None:
    figure = hostile_memory.measure(case, timeout=120)
    assert str(figure["outcome"]).startswith(("parsed", "refused")), figure
    assert float(figure["peak_mb"]) < MEMORY_BUDGET_MB, figure  # type: ignore[arg-type]
