"""The mirror's settings: parsed once (flags over an optional TOML file over defaults) into a frozen dataclass."""

from __future__ import annotations

import tomllib
import types
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from sync.models import InvalidInput, normalize_project_name

DEFAULT_UPSTREAM = "https://pypi.org"
PYPI_FILE_HOST = "files.pythonhosted.org"


TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class ConfigError(ValueError):
    """A setting is invalid; the message names it."""


@dataclass(frozen=True)
class MirrorConfig:
    """Everything one mirror run needs to know."""

    dest: str
    upstream: str = DEFAULT_UPSTREAM
    endpoint_url: str | None = None
    projects: tuple[str, ...] = ()  # allowlist of normalized names; empty = the whole index
    blocklist: tuple[str, ...] = ()
    keep_latest: int | None = None  # releases kept per project
    platforms: tuple[str, ...] = ()  # fnmatch patterns over wheel platform tags; sdists always kept
    python_tags: tuple[str, ...] = ()  # fnmatch patterns over wheel interpreter tags
    max_file_size: int | None = None  # bytes
    workers: int = 10
    contact: str | None = None
    file_hosts: tuple[str, ...] = ()  # hosts besides the upstream's own that files may come from
    lease_ttl: float = 900.0
    file_attempts: int = 3  # downloads of one file before it is reported failed
    public_url: str | None = None  # the mirror's own https base URL (the CDN's): where pages point for provenance

    def __post_init__(self) -> None:
        if not self.dest:
            raise ConfigError("dest: a folder path or s3://bucket[/prefix] is required")
        parts = urlsplit(self.upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstream: {self.upstream!r} is not an http(s) URL")
        for name in ("projects", "blocklist"):
            try:
                normalized = tuple(normalize_project_name(p) for p in getattr(self, name))
            except InvalidInput as error:
                raise ConfigError(f"{name}: {error}") from None
            object.__setattr__(self, name, normalized)
        if self.workers < 1 or self.workers > 64:
            raise ConfigError(f"workers: {self.workers} is not between 1 and 64")
        for name in ("keep_latest", "max_file_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}: {value} must be a positive number")
        if self.lease_ttl < 10:
            raise ConfigError(f"lease_ttl: {self.lease_ttl} s is too short (minimum 10 s)")
        if self.file_attempts < 1:
            raise ConfigError(f"file_attempts: {self.file_attempts} must be at least 1")
        if self.public_url is not None:
            if not secure_origin(self.public_url):
                raise ConfigError(
                    f"public_url: {self.public_url!r} is not an https:// URL (http:// only on loopback) without "
                    "query or fragment"
                )
            object.__setattr__(self, "public_url", self.public_url.rstrip("/"))

    @property
    def allowed_file_hosts(self) -> tuple[str, ...]:
        """Hosts file URLs may point at: the upstream's, PyPI's file host for pypi.org, and any configured."""
        upstream_host = urlsplit(self.upstream).hostname or ""
        hosts = [upstream_host, *self.file_hosts]
        if upstream_host == "pypi.org":
            hosts.append(PYPI_FILE_HOST)
        return tuple(dict.fromkeys(hosts))


def secure_origin(url: str) -> bool:
    """Whether `url` is on a secure origin, as PEP 740 wants provenance URLs: https, or http on a loopback host
    (which the W3C's secure contexts count as potentially trustworthy); and has no query or fragment."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    return (
        (parts.scheme == "https" or (parts.scheme == "http" and loopback))
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


def load_config(config_file: Path | None, overrides: dict[str, Any]) -> MirrorConfig:
    """Merge a TOML file (its keys are MirrorConfig's field names) with the non-None overrides from flags."""
    known = {f.name for f in fields(MirrorConfig)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            values = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"--config {config_file}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"--config {config_file}: not valid TOML ({error})") from None
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"--config {config_file}: unknown setting(s) {', '.join(unknown)}")
        for name, value in values.items():
            _check_type(config_file, name, value)
    values.update({k: v for k, v in overrides.items() if v is not None and v != ()})
    for name in ("projects", "blocklist", "platforms", "python_tags", "file_hosts"):
        if name in values:
            values[name] = tuple(values[name])
    try:
        return MirrorConfig(**values)
    except TypeError as error:
        raise ConfigError(f"invalid configuration: {error}") from None


def _check_type(config_file: Path, name: str, value: object) -> None:
    """Refuse a TOML value whose type the field does not take (`projects = "requests"`, `workers = "4"`)."""
    expected = get_type_hints(MirrorConfig)[name]
    options = [
        o for o in (get_args(expected) if isinstance(expected, types.UnionType) else (expected,)) if o is not type(None)
    ]
    if not any(_accepts(option, value) for option in options):
        wanted = " or ".join(TYPE_NAMES.get(option, "a list of strings") for option in options)
        raise ConfigError(f"--config {config_file}: {name} = {value!r} must be {wanted}")


def _accepts(option: Any, value: object) -> bool:
    if isinstance(value, bool):  # TOML's true/false are no numbers here
        return option is bool
    if get_origin(option) is tuple:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if option is float:
        return isinstance(value, int | float)
    return isinstance(value, option)
