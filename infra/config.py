"""The mirror's inputs: every `pypi-cdn:*` key, parsed and validated into one frozen dataclass, PypiMirrorArgs.

`parse_config` is pure (plain mapping in, PypiMirrorArgs out) so tests call it with dicts; `load_config` feeds it the
Pulumi config; `validated` checks args built in code (PypiMirror validates the args it is given). Defaults here
equal the ones declared in Pulumi.yaml (a test holds them together). A bad value raises ConfigError naming the key
before any resource is declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import pulumi

from infra.names import EMAIL, is_dns_name
from sync.invalidation import InvalidationMode
from sync.lambda_settings import DEFAULT_INLINE_THRESHOLD
from sync.models import InvalidInput, normalize_project_name

INSTANCE_TYPE = re.compile(r"\A[a-z][a-z0-9-]*\.[a-z0-9]+\Z")
# EventBridge Scheduler expressions: rate(<n> <unit>), cron(<6 fields>) or at(<timestamp>).
RATE = re.compile(r"\Arate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)\Z")
CRON = re.compile(r"\Acron\(\S+( \S+){5}\)\Z")
AT = re.compile(r"\Aat\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)\Z")
PRICE_CLASSES = ("PriceClass_100", "PriceClass_200", "PriceClass_All")
INVALIDATION_MODES = tuple(mode.value for mode in InvalidationMode)
MAX_REDIRECTORS = 8  # Route53 answers a multivalue query with at most 8 healthy records


def _input(default: Any, doc: str) -> Any:
    """A PypiMirrorArgs field: its default and its one-line description (the README's inputs table shows it)."""
    return field(default=default, metadata={"doc": doc})


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the key (`pypi-cdn:<key>`)."""


@dataclass(frozen=True)
class PypiMirrorArgs:
    """The inputs of `PypiMirror` (infra/stack.py), one per `pypi-cdn:*` config key; `validated` checks them.

    Each field's `doc` is the key's description in Pulumi.yaml (a test holds them equal); "empty" means None here.
    """

    domain: str | None = _input(
        None, "Name clients use (e.g. pypi.example.org). Empty = CloudFront's own domain only, no DNS, no redirectors."
    )
    zone_name: str | None = _input(
        None, "Route53 public hosted zone that holds domain and cdnHostname (looked up by name). Required with domain."
    )
    cdn_hostname: str | None = _input(
        None, "CloudFront's alias; the redirectors send /simple and /packages here. Empty = cdn.<domain>."
    )
    redirectors: int = _input(
        2, "Redirector instances, one per availability zone in turn (0-8). 0 = domain aliases straight to CloudFront."
    )
    redirector_instance_type: str = _input(
        "t4g.micro", "EC2 instance type of the redirectors (Graviton types get the arm64 AMI)."
    )
    upstream: str = _input("https://pypi.org", "The index the sync function mirrors (https only).")
    projects: tuple[str, ...] = _input((), "Allowlist of project names to mirror. Empty = the whole index.")
    sync_schedule: str = _input(
        "rate(1 minute)", "EventBridge Scheduler expression for the planner (rate(...), cron(...) or at(...))."
    )
    price_class: str = _input(
        "PriceClass_100", "CloudFront price class (PriceClass_100, PriceClass_200 or PriceClass_All)."
    )
    alarm_email: str | None = _input(
        None, "Address subscribed to the alarm topics (confirm the e-mail AWS sends). Empty = alarms without e-mail."
    )
    dynamic_origin: str = _input(
        "https://pypi.org", "Where the redirectors proxy every path that is not /simple, /packages or /health."
    )
    sync_contact: str | None = _input(
        None, "Contact (e-mail or URL) put in the sync's User-Agent, as PyPI asks of mirrors."
    )
    invalidation_mode: str = _input(
        InvalidationMode.TARGETED.value,
        "How changed pages leave the edge caches. targeted = one path per changed page, wildcard = /simple/*, "
        "ttl = wait for the short TTL.",
    )
    invalidation_monthly_budget_usd: int = _input(
        5, "Monthly spend on paid invalidation paths (beyond the free 1,000) before the sync falls back to the TTL."
    )
    lag_alarm_seconds: int = _input(
        600, "Alarm when the mirror lags upstream by more than this many seconds (metric pypi-cdn/MirrorLagSeconds)."
    )
    inline_sync_threshold: int = _input(
        DEFAULT_INLINE_THRESHOLD, "Changed projects the planner syncs itself; more are fanned out to the queue workers."
    )

    @property
    def redirector_architecture(self) -> str:
        """arm64 for Graviton instance families (t4g, m7g, c7gn, a1 ...), else x86_64."""
        family = self.redirector_instance_type.split(".", 1)[0]
        return "arm64" if family == "a1" or re.fullmatch(r"[a-z]+[0-9]+g[a-z]*", family) else "x86_64"


Parser = Callable[[str, object], object]


def _text(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"pypi-cdn:{key}: expected a string, got {value!r}")
    return value.strip()


def _optional_text(key: str, value: object) -> str | None:
    return _text(key, value) or None


def _integer(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"pypi-cdn:{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise ConfigError(f"pypi-cdn:{key}: expected an integer, got {value!r}")


def _string_list(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):  # Pulumi hands structured values over as JSON text
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            raise ConfigError(f"pypi-cdn:{key}: expected a list of strings (JSON array), got {value!r}") from None
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"pypi-cdn:{key}: expected a list of strings, got {value!r}")
    return tuple(value)


# Config key -> (PypiMirrorArgs field, parser). The keys are exactly Pulumi.yaml's.
KEYS: dict[str, tuple[str, Parser]] = {
    "domain": ("domain", _optional_text),
    "zoneName": ("zone_name", _optional_text),
    "cdnHostname": ("cdn_hostname", _optional_text),
    "redirectors": ("redirectors", _integer),
    "redirectorInstanceType": ("redirector_instance_type", _text),
    "upstream": ("upstream", _text),
    "projects": ("projects", _string_list),
    "syncSchedule": ("sync_schedule", _text),
    "priceClass": ("price_class", _text),
    "alarmEmail": ("alarm_email", _optional_text),
    "dynamicOrigin": ("dynamic_origin", _text),
    "syncContact": ("sync_contact", _optional_text),
    "invalidationMode": ("invalidation_mode", _text),
    "invalidationMonthlyBudgetUsd": ("invalidation_monthly_budget_usd", _integer),
    "lagAlarmSeconds": ("lag_alarm_seconds", _integer),
    "inlineSyncThreshold": ("inline_sync_threshold", _integer),
}


def parse_config(values: Mapping[str, object]) -> PypiMirrorArgs:
    """Validate `values` (config key -> raw value; absent or empty optional keys take the defaults)."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"pypi-cdn:{unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    raw: dict[str, Any] = {KEYS[key][0]: value for key, value in values.items()}  # parsed by `validated`
    return validated(PypiMirrorArgs(**raw))


def validated(args: PypiMirrorArgs) -> PypiMirrorArgs:
    """`args` type-checked, checked against every rule and completed (normalized allowlist, cdn.<domain>, no
    redirectors without a domain); ConfigError names the config key of the first bad value."""
    # Each key's parser returns its field's type; the table mixes types, hence Any.
    parsed: dict[str, Any] = {
        name: parse(key, value) for key, (name, parse) in KEYS.items() if (value := getattr(args, name)) is not None
    }
    config = replace(PypiMirrorArgs(), **parsed)
    _check(config)
    projects = tuple(dict.fromkeys(_project_name(name) for name in config.projects))
    if config.domain is None:
        return replace(config, projects=projects, redirectors=0)
    return replace(
        config,
        projects=projects,
        zone_name=(config.zone_name or "").rstrip("."),
        cdn_hostname=config.cdn_hostname or f"cdn.{config.domain}",
    )


def _check(config: PypiMirrorArgs) -> None:
    """Every rule that a single key or a pair of keys must satisfy."""
    _check_names(config)
    if not 0 <= config.redirectors <= MAX_REDIRECTORS:
        raise ConfigError(f"pypi-cdn:redirectors: {config.redirectors} is not between 0 and {MAX_REDIRECTORS}")
    if not INSTANCE_TYPE.match(config.redirector_instance_type):
        raise ConfigError(
            f"pypi-cdn:redirectorInstanceType: {config.redirector_instance_type!r} is not an EC2 instance type"
        )
    _check_origin("upstream", config.upstream, schemes=("https",))
    _check_origin("dynamicOrigin", config.dynamic_origin, schemes=("http", "https"))
    _check_schedule(config.sync_schedule)
    if config.price_class not in PRICE_CLASSES:
        raise ConfigError(f"pypi-cdn:priceClass: {config.price_class!r} is not one of {', '.join(PRICE_CLASSES)}")
    if config.alarm_email is not None and not EMAIL.match(config.alarm_email):
        raise ConfigError(f"pypi-cdn:alarmEmail: {config.alarm_email!r} is not an e-mail address")
    if config.sync_contact is not None and not config.sync_contact.isprintable():
        raise ConfigError("pypi-cdn:syncContact: must be printable text (it goes into the User-Agent)")
    if config.invalidation_mode not in INVALIDATION_MODES:
        raise ConfigError(
            f"pypi-cdn:invalidationMode: {config.invalidation_mode!r} is not one of {', '.join(INVALIDATION_MODES)}"
        )
    for key, number, minimum in (
        ("invalidationMonthlyBudgetUsd", config.invalidation_monthly_budget_usd, 0),
        ("lagAlarmSeconds", config.lag_alarm_seconds, 60),
        ("inlineSyncThreshold", config.inline_sync_threshold, 0),
    ):
        if number < minimum:
            raise ConfigError(f"pypi-cdn:{key}: {number} is below the minimum {minimum}")


def _check_names(config: PypiMirrorArgs) -> None:
    """domain, zoneName and cdnHostname: well-formed, and the names inside the zone."""
    if config.domain is None:
        for key, value in (("zoneName", config.zone_name), ("cdnHostname", config.cdn_hostname)):
            if value is not None:
                raise ConfigError(f"pypi-cdn:{key}: only meaningful with pypi-cdn:domain, which is not set")
        return
    _check_hostname("domain", config.domain)
    if config.zone_name is None:
        raise ConfigError("pypi-cdn:zoneName: required with a domain (the Route53 hosted zone holding it)")
    _check_hostname("zoneName", config.zone_name.rstrip("."))
    _check_in_zone("domain", config.domain, config.zone_name)
    if config.cdn_hostname is not None:
        _check_hostname("cdnHostname", config.cdn_hostname)
        _check_in_zone("cdnHostname", config.cdn_hostname, config.zone_name)
        if config.cdn_hostname == config.domain and config.redirectors:
            raise ConfigError(
                "pypi-cdn:cdnHostname: must differ from pypi-cdn:domain while redirectors answer for the domain"
            )


def _project_name(name: str) -> str:
    try:
        return normalize_project_name(name)
    except InvalidInput as error:
        raise ConfigError(f"pypi-cdn:projects: {error}") from None


def _check_schedule(expression: str) -> None:
    rate = RATE.match(expression)
    if not (rate or CRON.match(expression) or AT.match(expression)):
        raise ConfigError(f"pypi-cdn:syncSchedule: {expression!r} is not rate(<n> <unit>), cron(...) or at(...)")
    if rate and (rate["value"] == "1") == rate["unit"].endswith("s"):
        raise ConfigError(f"pypi-cdn:syncSchedule: {expression!r}: the unit is singular for 1 and plural otherwise")


def _check_hostname(key: str, value: str) -> None:
    if not is_dns_name(value):
        raise ConfigError(f"pypi-cdn:{key}: {value!r} is not a lower-case DNS name like pypi.example.org")


def _check_in_zone(key: str, name: str, zone: str) -> None:
    zone = zone.rstrip(".")
    if name != zone and not name.endswith(f".{zone}"):
        raise ConfigError(f"pypi-cdn:{key}: {name!r} is not inside the hosted zone {zone!r} (pypi-cdn:zoneName)")


def _check_origin(key: str, url: str, *, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"pypi-cdn:{key}: {url!r} is not a URL") from None
    if parts.scheme not in schemes or not parts.hostname or parts.username or parts.password:
        raise ConfigError(f"pypi-cdn:{key}: {url!r} must be a {' or '.join(schemes)} URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"pypi-cdn:{key}: {url!r} must not have a path, query or fragment")


def load_config() -> PypiMirrorArgs:
    """The stack's configuration from Pulumi (`pypi-cdn:*` keys), validated."""
    pulumi_config = pulumi.Config("pypi-cdn")
    raw: dict[str, object] = {}
    for key in KEYS:
        value = pulumi_config.get(key)
        if value is not None:
            raw[key] = value
    return parse_config(raw)
