"""The redirector for real: the rendered nginx.conf under nginx on 127.0.0.1, the rendered user-data under shellcheck.

nginx gets a throwaway certificate (which the client trusts, so TLS is verified) and a dynamic origin that can hang.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra.edge.render import TLS_DIR, RedirectorSettings, render_nginx_conf, render_user_data

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
SHELLCHECK = shutil.which("shellcheck")
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx-light)")
needs_shellcheck = pytest.mark.skipif(
    SHELLCHECK is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)

DOMAIN = "pypi.test"
CDN = "cdn.pypi.test"
HEALTH_BUDGET_S = 0.050
EC2_USER_DATA_MAX_BYTES = 16 * 1024
HANG_LIMIT_S = 20.0  # the hanging origin gives up after this, so nothing outlives a test for long


def settings(origin: str = "https://pypi.org", email: str | None = "ops@pypi.test") -> RedirectorSettings:
    return RedirectorSettings(
        domain=DOMAIN, cdn_hostname=CDN, dynamic_origin=origin, hosted_zone_id="Z0123456789ABC", acme_email=email
    )


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for pypi.test and 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(DOMAIN), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(cert=folder / "cert.pem", key=folder / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class DynamicOrigin(ThreadingHTTPServer):
    """Answers every path with what it received, except /hang, which holds the request until released."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OriginHandler)
        self.hanging = threading.Event()  # set once a /hang request has arrived
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _OriginHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        origin = cast(DynamicOrigin, self.server)
        if self.path.startswith("/hang"):
            origin.hanging.set()
            origin.release.wait(HANG_LIMIT_S)
        body = f"origin saw {self.path} host={self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dynamic_origin() -> Iterator[DynamicOrigin]:
    origin = DynamicOrigin()
    thread = threading.Thread(target=origin.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield origin
    origin.release.set()
    origin.shutdown()
    origin.server_close()
    thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    assert NGINX is not None
    return subprocess.run(
        [NGINX, "-t", "-p", str(prefix), "-e", str(prefix / "startup.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@dataclass
class Redirector:
    http_port: int
    https_port: int | None
    process: subprocess.Popen[str]

    def request(
        self, path: str, *, tls: bool = True, context: ssl.SSLContext | None = None, timeout: float = 5.0
    ) -> http.client.HTTPResponse:
        if tls:
            assert self.https_port is not None
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=context, timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response


def start_nginx(
    tmp_path: Path, origin_url: str, *, certificate: Certificate | None, cdn_url: str | None = None
) -> Redirector:
    """nginx in the foreground on free loopback ports (HTTPS only with a certificate), waited for (bounded)."""
    assert NGINX is not None
    last_error = ""
    for _ in range(3):  # a port taken between free_port() and nginx's bind is retried with new ports
        http_port = free_port()
        https_port = None if certificate is None else free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                settings(origin=origin_url),
                http_port=http_port,
                https_port=https_port,
                certificate=None if certificate is None else str(certificate.cert),
                certificate_key=None if certificate is None else str(certificate.key),
                listen_address="127.0.0.1",
                cdn_url=cdn_url,
                runtime_dir=str(tmp_path),
            )
        )
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
                return Redirector(http_port, https_port, process)
            except OSError:
                time.sleep(0.02)
        process.kill()
        _, last_error = process.communicate(timeout=5)
    raise AssertionError(f"nginx did not start: {last_error}")


def stop_nginx(running: Redirector) -> None:
    running.process.terminate()
    running.process.communicate(timeout=10)


@pytest.fixture
def redirector(
    tmp_path: Path, certificate: Certificate, dynamic_origin: DynamicOrigin
) -> Iterator[tuple[Redirector, ssl.SSLContext]]:
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    running = start_nginx(tmp_path, dynamic_origin.url, certificate=certificate)
    yield running, ssl.create_default_context(cafile=str(certificate.cert))
    stop_nginx(running)


@needs_nginx
def test_nginx_accepts_the_production_config(tmp_path: Path, certificate: Certificate) -> None:
    """Production's render (TLS origin, certificate, resolver), with only the file paths moved to this machine."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            settings(),
            certificate=str(certificate.cert),
            certificate_key=str(certificate.key),
            ca_bundle=str(certificate.cert),
            runtime_dir=str(tmp_path),
            http_port=free_port(),
            https_port=free_port(),
        )
    )
    checked = nginx_test(conf, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


@needs_nginx
def test_nginx_rejects_a_broken_config(tmp_path: Path, certificate: Certificate) -> None:
    """`nginx -t` is a real check: the same render pointing at a missing certificate fails it."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            settings(),
            certificate=str(tmp_path / "missing.pem"),
            certificate_key=str(certificate.key),
            ca_bundle=str(certificate.cert),
            runtime_dir=str(tmp_path),
        )
    )
    assert nginx_test(conf, tmp_path).returncode != 0


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        ("/simple/", 302, f"https://{CDN}/simple/"),
        ("/simple", 302, f"https://{CDN}/simple"),
        ("/simple/Six/?a=1&b=%20x", 302, f"https://{CDN}/simple/Six/?a=1&b=%20x"),
        ("/status.json", 302, f"https://{CDN}/status.json"),
        ("/packages/ab/cd/ef/six-1.17.0.tar.gz", 301, f"https://{CDN}/packages/ab/cd/ef/six-1.17.0.tar.gz"),
        ("/packages/ab/cd/ef/a%2Bb.whl?x=1", 301, f"https://{CDN}/packages/ab/cd/ef/a%2Bb.whl?x=1"),
    ],
)
def test_https_redirects_static_paths_to_the_cdn(
    redirector: tuple[Redirector, ssl.SSLContext], path: str, status: int, location: str
) -> None:
    running, context = redirector
    response = running.request(path, context=context)
    assert (response.status, response.getheader("Location")) == (status, location)


def test_plain_http_moves_to_https_except_health(redirector: tuple[Redirector, ssl.SSLContext]) -> None:
    running, _ = redirector
    response = running.request("/simple/six/?q=1", tls=False)
    assert response.status == 301
    assert response.getheader("Location") == f"https://{DOMAIN}:{running.https_port}/simple/six/?q=1"
    assert running.request("/health", tls=False).status == 200


def test_other_paths_reach_the_dynamic_origin(
    redirector: tuple[Redirector, ssl.SSLContext], dynamic_origin: DynamicOrigin
) -> None:
    running, context = redirector
    connection = http.client.HTTPSConnection("127.0.0.1", running.https_port, context=context, timeout=5)
    connection.request("GET", "/pypi/six/json?x=1")
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    assert response.status == 200
    assert body == f"origin saw /pypi/six/json?x=1 host={dynamic_origin.url.removeprefix('http://')}"


def test_health_answers_fast_while_the_origin_hangs(
    redirector: tuple[Redirector, ssl.SSLContext], dynamic_origin: DynamicOrigin
) -> None:
    running, context = redirector
    stuck: list[int] = []
    hanging = threading.Thread(
        target=lambda: stuck.append(running.request("/hang", context=context, timeout=HANG_LIMIT_S).status),
        daemon=True,
    )
    hanging.start()
    assert dynamic_origin.hanging.wait(5), "the request never reached the origin"
    timings = []
    for _ in range(5):
        started = time.perf_counter()  # a fresh connection each time, TLS handshake included, as Route53 does
        response = running.request("/health", context=context, timeout=1)
        timings.append(time.perf_counter() - started)
        assert response.status == 200
    print(f"/health while the origin hangs: {[round(t * 1000, 1) for t in timings]} ms")
    assert max(timings) < HEALTH_BUDGET_S, f"/health took {max(timings) * 1000:.1f} ms"
    assert stuck == [], "the origin request finished although the origin hangs"
    dynamic_origin.release.set()
    hanging.join(timeout=5)
    assert stuck == [200]


def test_plain_http_mode_for_the_local_stack(tmp_path: Path, dynamic_origin: DynamicOrigin) -> None:
    """https_port=None: redirects straight to the given CDN URL over HTTP, no certificate needed."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    running = start_nginx(tmp_path, dynamic_origin.url, certificate=None, cdn_url="http://127.0.0.1:8702")
    try:
        response = running.request("/simple/six/?a=1", tls=False)
        assert (response.status, response.getheader("Location")) == (302, "http://127.0.0.1:8702/simple/six/?a=1")
        assert running.request("/health", tls=False).status == 200
        assert running.request("/stats/", tls=False).status == 200
    finally:
        stop_nginx(running)


@needs_shellcheck
@pytest.mark.parametrize("email", ["ops@pypi.test", None])
def test_user_data_passes_shellcheck(tmp_path: Path, email: str | None) -> None:
    assert SHELLCHECK is not None
    script = tmp_path / "user_data.sh"
    script.write_text(render_user_data(settings(email=email)))
    checked = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout


def test_user_data_embeds_the_rendered_nginx_conf() -> None:
    user_data = render_user_data(settings())
    embedded = re.search(r"<<'NGINX_CONF'\n(.*)\nNGINX_CONF\n", user_data, re.DOTALL)
    assert embedded is not None
    expected = render_nginx_conf(
        settings(), certificate=f"{TLS_DIR}/fullchain.pem", certificate_key=f"{TLS_DIR}/privkey.pem"
    )
    assert embedded.group(1) == expected.rstrip("\n")
    assert user_data.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in user_data
    assert "python3-certbot-dns-route53" in user_data
    assert len(user_data.encode()) <= EC2_USER_DATA_MAX_BYTES


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "pypi.example.org; evil"),
        ("domain", "pypi.example.org\nlisten 1"),
        ("domain", ""),
        ("cdn_hostname", "cdn example"),
        ("cdn_hostname", "-cdn.example.org"),
        ("dynamic_origin", "ftp://pypi.org"),
        ("dynamic_origin", "https://pypi.org/path"),
        ("dynamic_origin", "https://user@pypi.org"),
        ("dynamic_origin", "https://pypi.org?x=1"),
        ("dynamic_origin", "https://pypi.org:99999"),
        ("dynamic_origin", "pypi.org"),
        ("hosted_zone_id", "Z123'; rm -rf /"),
        ("acme_email", "ops'@example.org"),
        ("acme_email", "not-an-email"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: str) -> None:
    values = {
        "domain": DOMAIN,
        "cdn_hostname": CDN,
        "dynamic_origin": "https://pypi.org",
        "hosted_zone_id": "Z0123456789ABC",
        "acme_email": None,
    }
    with pytest.raises(ValueError, match=f"^{field}: "):
        RedirectorSettings(**{**values, field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("http_port", {"http_port": 0}),
        ("https_port", {"https_port": 70000}),
        ("listen_address", {"listen_address": "localhost"}),
        ("certificate", {"certificate": "/etc/x.pem; include /etc/shadow"}),
        ("certificate_key", {"certificate_key": "relative/key.pem"}),
        ("cdn_url", {"cdn_url": "http://127.0.0.1:8702/simple"}),
        ("resolver", {"resolver": "dns.example.org"}),
        ("runtime_dir", {"runtime_dir": "/tmp/a b"}),
        ("runtime_dir", {"runtime_dir": "/tmp/../etc"}),
    ],
)
def test_bad_render_arguments_name_the_argument(field: str, arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        render_nginx_conf(settings(), **arguments)  # type: ignore[arg-type]


def test_loopback_render_listens_only_on_loopback() -> None:
    conf = render_nginx_conf(settings(), http_port=8080, https_port=8443, listen_address="127.0.0.1")
    assert re.findall(r"^\s*listen (\S+)", conf, re.MULTILINE) == ["127.0.0.1:8080", "127.0.0.1:8443"]
    assert f"return 301 https://{DOMAIN}:8443$request_uri;" in conf
