"""The redirector's nginx.conf and cloud-init user-data, rendered from the templates beside this file.

No Pulumi here: the infra calls these inside `Output.apply`, the tests and the local stack call them directly. Every
value is validated before it reaches a config file or a shell script (ValueError naming the field), and the
user-data embeds the rendered nginx.conf, so there is one source for both.
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from infra.edge import EDGE_DIR
from infra.names import EMAIL, HOSTNAME

NGINX_TEMPLATE = EDGE_DIR / "nginx.conf.tmpl"
USER_DATA_TEMPLATE = EDGE_DIR / "user_data.sh.tmpl"
# Amazon's VPC resolver, reachable from every instance at this link-local address.
AMAZON_DNS = "169.254.169.253"
AMAZON_LINUX_CA_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"
# Where user-data keeps the certificate nginx reads: symlinks to a self-signed pair first, then to Let's Encrypt's.
TLS_DIR = "/etc/pki/pypi-cdn"

HOSTED_ZONE_ID = re.compile(r"\A[A-Z0-9]{1,32}\Z")
SAFE_PATH = re.compile(r"\A/[A-Za-z0-9._/+-]*\Z")
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class _Template(string.Template):
    """`@{name}` placeholders only, so nginx's and bash's `$` syntax passes through untouched."""

    delimiter = "@"
    # A string: string.Template compiles it on subclassing (typeshed only knows the compiled type).
    pattern = r"@(?:(?P<escaped>(?!))|\{(?P<braced>[a-z_]+)\}|(?P<named>(?!))|(?P<invalid>(?!)))"  # pyright: ignore[reportAssignmentType]


@dataclass(frozen=True)
class RedirectorSettings:
    """What the redirectors need to know; validated on construction."""

    domain: str  # the name the redirectors answer to (server_name), e.g. "pypi.example.org"
    cdn_hostname: str  # redirect target: https://<cdn_hostname>/simple/...
    dynamic_origin: str  # URL that non-static paths are proxied to, e.g. "https://pypi.org"
    hosted_zone_id: str  # Route53 zone holding `domain` (the instance role may change records there for DNS-01)
    acme_email: str | None = None  # Let's Encrypt account contact; None registers without one

    def __post_init__(self) -> None:
        _check_hostname("domain", self.domain)
        _check_hostname("cdn_hostname", self.cdn_hostname)
        _origin_parts("dynamic_origin", self.dynamic_origin)
        if not HOSTED_ZONE_ID.match(self.hosted_zone_id):
            raise ValueError(f"hosted_zone_id: {self.hosted_zone_id!r} is not a Route53 zone id like Z0123456789ABC")
        if self.acme_email is not None and not EMAIL.match(self.acme_email):
            raise ValueError(f"acme_email: {self.acme_email!r} is not an e-mail address")


def _check_hostname(field: str, value: str) -> None:
    if not HOSTNAME.match(value):
        raise ValueError(f"{field}: {value!r} is not a host name (letters, digits, '-' and '.')")


def _origin_parts(field: str, url: str) -> tuple[str, str, str]:
    """(scheme, host, host[:port]) of an http(s) origin URL that has nothing but a scheme, host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{field}: {url!r} is not a URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        raise ValueError(f"{field}: {url!r} must be an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{field}: {url!r} must not have a path, query or fragment")
    _check_hostname(field, host)
    return parts.scheme, host, host if port is None else f"{host}:{port}"


def _check_port(field: str, port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{field}: {port!r} is not a TCP port")
    return port


def _check_path(field: str, path: str) -> str:
    if not SAFE_PATH.match(path) or "/../" in f"{path}/":
        raise ValueError(f"{field}: {path!r} must be an absolute path of letters, digits and . _ / + -")
    return path


def _listen(field: str, address: str, port: int) -> str:
    _check_port(field, port)
    if not address:
        return str(port)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"listen_address: {address!r} is not an IP address") from None
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def render_nginx_conf(
    settings: RedirectorSettings,
    *,
    http_port: int = 80,
    https_port: int | None = 443,
    certificate: str | None = None,
    certificate_key: str | None = None,
    listen_address: str = "",
    cdn_url: str | None = None,
    resolver: str = AMAZON_DNS,
    ca_bundle: str = AMAZON_LINUX_CA_BUNDLE,
    runtime_dir: str | None = None,
) -> str:
    """The complete nginx.conf of a redirector.

    Defaults are production's (ports 80/443, Let's Encrypt's paths for `settings.domain`, Amazon's resolver and CA
    bundle, the distribution's log, pid and temp paths). `https_port=None` serves everything over plain HTTP (no
    certificate, no upgrade), `cdn_url` replaces `https://<cdn_hostname>` as the redirect target, and `runtime_dir`
    puts logs, pid and temp files under one writable folder: those three are for tests and the local stack.
    """
    origin_scheme, origin_hostname, origin_host = _origin_parts("dynamic_origin", settings.dynamic_origin)
    if cdn_url is None:
        cdn_url = f"https://{settings.cdn_hostname}"
    else:
        cdn_scheme, _, cdn_netloc = _origin_parts("cdn_url", cdn_url)
        cdn_url = f"{cdn_scheme}://{cdn_netloc}"
    try:
        resolver_ip = ipaddress.ip_address(resolver)
    except ValueError:
        raise ValueError(f"resolver: {resolver!r} is not an IP address") from None
    tls = ""
    if https_port is not None:
        live = f"/etc/letsencrypt/live/{settings.domain}"
        certificate = _check_path("certificate", certificate or f"{live}/fullchain.pem")
        certificate_key = _check_path("certificate_key", certificate_key or f"{live}/privkey.pem")
        tls = "\n".join(
            [
                f"        listen {_listen('https_port', listen_address, https_port)} ssl default_server;",
                f"        ssl_certificate {certificate};",
                f"        ssl_certificate_key {certificate_key};",
                "        ssl_protocols TLSv1.2 TLSv1.3;",
                "        ssl_session_cache shared:redirector_tls:10m;",
            ]
        )
    origin_tls = ""
    if origin_scheme == "https":
        origin_tls = "\n".join(
            [
                "            proxy_ssl_server_name on;",
                f"            proxy_ssl_name {origin_hostname};",
                "            proxy_ssl_verify on;",
                "            proxy_ssl_verify_depth 4;",
                f"            proxy_ssl_trusted_certificate {_check_path('ca_bundle', ca_bundle)};",
            ]
        )
    log_dir, pid, temp_paths = "/var/log/nginx", "", ""
    if runtime_dir is not None:
        log_dir = _check_path("runtime_dir", runtime_dir.rstrip("/") or "/")
        pid = f"pid {log_dir}/nginx.pid;"
        temp_paths = "\n".join(f"    {name}_temp_path {log_dir}/{name};" for name in TEMP_PATHS)
    return _Template(NGINX_TEMPLATE.read_text()).substitute(
        domain=settings.domain,
        http_listen=_listen("http_port", listen_address, http_port),
        tls=tls,
        upgrade_plain_http="0" if https_port is None else "1",
        https_port_suffix="" if https_port in (None, 443) else f":{https_port}",
        cdn_url=cdn_url,
        resolver=str(resolver_ip),
        dynamic_origin=f"{origin_scheme}://{origin_host}",
        origin_host=origin_host,
        origin_tls=origin_tls,
        log_dir=log_dir,
        pid=pid,
        temp_paths=temp_paths,
    )


def render_user_data(settings: RedirectorSettings) -> str:
    """The bash script cloud-init runs once on an Amazon Linux 2023 redirector, with its nginx.conf embedded."""
    nginx_conf = render_nginx_conf(
        settings, certificate=f"{TLS_DIR}/fullchain.pem", certificate_key=f"{TLS_DIR}/privkey.pem"
    )
    return _Template(USER_DATA_TEMPLATE.read_text()).substitute(
        domain=settings.domain,
        acme_email=settings.acme_email or "",
        tls_dir=TLS_DIR,
        nginx_conf=nginx_conf.rstrip("\n"),
    )
