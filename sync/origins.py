"""Where the sync may connect: origins (scheme, host and port) that requests, redirects and file links may name,
and the addresses no connection may reach whatever DNS answers (link-local and cloud instance-metadata services)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# Never connected to, whatever the configuration: link-local (the EC2/ECS/GCP/Azure metadata services live there)
# and the metadata addresses outside it (AWS IPv6 IMDS, Alibaba Cloud, Oracle Cloud's legacy one).
FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "192.0.0.192/32")
)

Origin = tuple[str, str, int]  # (scheme, lower-case host, port)


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL; None for any other URL or a malformed port."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return None
    return parts.scheme, parts.hostname.lower(), port


def allowed_origins(hosts: Iterable[str]) -> frozenset[Origin]:
    """The origins that `hosts` allow: `host` (https:443 and http:80), `host:port` (both schemes on that port) or
    `scheme://host[:port]` (that one origin)."""
    origins: set[Origin] = set()
    for host in hosts:
        if "://" in host:
            origin = origin_of(host)
            if origin is None:
                raise ValueError(f"file host {host!r} is not an http(s) URL")
            origins.add(origin)
            continue
        parts = urlsplit("//" + host)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"file host {host!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"file host {host!r} names no host")
        name = parts.hostname.lower()
        origins.update((scheme, name, port or default) for scheme, default in DEFAULT_PORTS.items())
    return frozenset(origins)


def forbidden_address(address: str) -> bool:
    """Whether `address` (an IP address, as getpeername gives it) is link-local or a metadata service's."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in FORBIDDEN_NETWORKS)
