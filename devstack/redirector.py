"""A local redirector: real nginx on 127.0.0.1, configured from the same template the EC2 redirectors use."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from infra.edge.render import RedirectorSettings, render_nginx_conf

NGINX_HINT = "install nginx (Debian/Ubuntu: apt-get install nginx-light)"
START_SECONDS = 5.0
PORT_ATTEMPTS = 3  # a port taken between choosing it and nginx's bind is retried with another
LOCAL_ZONE_ID = "Z0LOCALSTACK0"  # certbot is not used locally; the template still wants a zone id
DEBIAN_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class RedirectorError(RuntimeError):
    """nginx is missing or would not start; the message says which and how to get it."""


def host_network() -> dict[str, str]:
    """This machine's DNS resolver and CA bundle, for nginx to reach an HTTPS origin (the template has AL2023's)."""
    network = {"ca_bundle": DEBIAN_CA_BUNDLE}
    resolv = Path("/etc/resolv.conf")
    lines = resolv.read_text().splitlines() if resolv.exists() else []
    nameservers = [line.split()[1] for line in lines if line.startswith("nameserver ") and len(line.split()) > 1]
    if nameservers:
        network["resolver"] = nameservers[0]
    return network


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Redirector:
    """A running nginx; `http_port` (and `https_port` when TLS is on) on 127.0.0.1."""

    http_port: int
    https_port: int | None
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=10)

    def __enter__(self) -> Redirector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_redirector(
    settings: RedirectorSettings,
    runtime_dir: Path,
    *,
    cdn_url: str | None = None,
    certificate: str | None = None,
    certificate_key: str | None = None,
    http_port: int | None = None,
    **network: str,
) -> Redirector:
    """Render the redirector's nginx.conf for loopback and run nginx in the foreground until `stop()`.

    Without a certificate everything is plain HTTP; with one, HTTPS listens on a second port. `network` passes
    `resolver` and `ca_bundle` on to the template, for a dynamic origin reached over HTTPS from this machine.
    """
    nginx = find_nginx()
    if nginx is None:
        raise RedirectorError(f"nginx is not installed: {NGINX_HINT}")
    if http_port and not port_is_free(http_port):
        raise RedirectorError(f"127.0.0.1:{http_port} is already in use (another local stack?): choose another port")
    pid_file = runtime_dir / "nginx.pid"  # where render_nginx_conf puts it for a runtime folder
    last_error, port = "", http_port
    for _ in range(PORT_ATTEMPTS):
        port = http_port or free_port()
        https_port = free_port() if certificate else None
        conf = runtime_dir / "nginx.conf"
        conf.write_text(
            render_nginx_conf(
                settings,
                http_port=port,
                https_port=https_port,
                certificate=certificate,
                certificate_key=certificate_key,
                listen_address="127.0.0.1",
                cdn_url=cdn_url,
                runtime_dir=str(runtime_dir),
                **network,
            )
        )
        pid_file.unlink(missing_ok=True)
        process = subprocess.Popen(  # noqa: S603 - our nginx config, our runtime folder
            [nginx, "-p", str(runtime_dir), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            if _serving(process, pid_file, port):
                return Redirector(port, https_port, process)
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        _, last_error = process.communicate(timeout=5)
        if http_port:
            break
    raise RedirectorError(f"nginx did not start: {last_error.strip() or f'no answer on 127.0.0.1:{port}'}")


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port` (so nginx can bind it)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serving(process: subprocess.Popen[str], pid_file: Path, port: int) -> bool:
    """Whether *this* nginx is up: alive, past binding its ports (it writes its pid file only after that), and
    answering its own /health on `port`. A connection alone proves nothing: nginx keeps retrying a taken port for
    seconds before it exits, while whatever holds the port accepts connections."""
    try:
        if process.poll() is not None or pid_file.read_text().strip() != str(process.pid):
            return False
    except FileNotFoundError:
        return False
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == HTTPStatus.OK and response.read() == b"ok\n"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
