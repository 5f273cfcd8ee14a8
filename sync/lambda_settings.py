"""The infra ↔ Lambda contract: the handlers' settings, the environment that carries them, the metrics they emit.

`settings_from_env` reads HandlerSettings from the Lambda's environment; `HandlerSettings.to_env`, its exact inverse,
renders the environment the Pulumi program (`infra/sync_function.py`) deploys. The defaults and the metric names the
alarms and the dashboard watch are defined here only. Every variable is optional except `PYPI_CDN_DEST`; a bad value
raises ConfigError naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from sync.config import DEFAULT_UPSTREAM, ConfigError, MirrorConfig
from sync.invalidation import EdgeSettings, InvalidationMode

DEFAULT_INLINE_THRESHOLD = 50  # planned projects up to which the planner syncs them itself instead of enqueueing
DEFAULT_UPSTREAM_CONCURRENCY = 10  # PyPI asks mirrors for at most 10 concurrent requests
DEFAULT_MAX_WORKERS = 4  # concurrent queue-worker invocations (the event source mapping's maximum concurrency)
DEFAULT_TIME_MARGIN = 10.0  # seconds left unused before the Lambda timeout, to checkpoint
DEFAULT_POLL_INTERVAL = 10.0  # seconds between planner passes within one invocation; 0: one pass per invocation
DEFAULT_PLANNER_WINDOW = 50.0  # seconds one invocation keeps polling: less than the schedule's one minute
DEFAULT_LEASE_TTL = 300.0  # renewed every third of it (sync/run.py): a killed planner's lease frees itself in 5 min
ENV_OF_FIELD = {  # the MirrorConfig fields the environment carries; the others keep their defaults
    "dest": "PYPI_CDN_DEST",
    "upstream": "PYPI_CDN_UPSTREAM",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "projects": "PYPI_CDN_PROJECTS",
    "contact": "PYPI_CDN_CONTACT",
    "lease_ttl": "PYPI_CDN_LEASE_TTL",
    "public_url": "PYPI_CDN_PUBLIC_URL",
}
# What the handlers report through Powertools (EMF): the `service` dimension, the namespace, the metrics.
SERVICE_NAME = "pypi-cdn-sync"
METRICS_NAMESPACE = "pypi-cdn"
LAG_METRIC = "MirrorLagSeconds"  # from the upstream change to the page published
EDGE_LAG_METRIC = "EdgeLagSeconds"  # from the upstream change to the CDN serving it (sync/edge_probe.py)
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME": SERVICE_NAME, "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE}


@dataclass(frozen=True)
class HandlerSettings:
    """What the planner and the worker need beyond the engine's MirrorConfig."""

    mirror: MirrorConfig
    queue_url: str | None = None  # SQS queue the planner fans out to; None: everything runs inline
    distribution_id: str | None = None  # CloudFront distribution refreshed after publishing; None: no refresh
    cloudfront_endpoint_url: str | None = None  # CloudFront API endpoint (a local edge); None: the mirror's endpoint
    probe_url: str | None = None  # the CDN's base URL, read back by the planner's EdgeProbe; None: no probe
    inline_threshold: int = DEFAULT_INLINE_THRESHOLD
    upstream_concurrency: int = DEFAULT_UPSTREAM_CONCURRENCY  # global politeness budget, all invocations together
    max_workers: int = DEFAULT_MAX_WORKERS
    time_margin: float = DEFAULT_TIME_MARGIN
    poll_interval: float = DEFAULT_POLL_INTERVAL
    planner_window: float = DEFAULT_PLANNER_WINDOW
    edge: EdgeSettings = field(default_factory=EdgeSettings)

    def __post_init__(self) -> None:
        if self.inline_threshold < 0:
            raise ConfigError(f"PYPI_CDN_INLINE_THRESHOLD: {self.inline_threshold} must be 0 or more")
        if self.max_workers < 1:
            raise ConfigError(f"PYPI_CDN_MAX_WORKERS: {self.max_workers} must be at least 1")
        if self.upstream_concurrency < self.max_workers + 1:
            raise ConfigError(
                f"PYPI_CDN_UPSTREAM_CONCURRENCY: {self.upstream_concurrency} cannot give the planner and "
                f"{self.max_workers} workers one request each (needs at least {self.max_workers + 1})"
            )
        for name, value in (
            ("PYPI_CDN_TIME_MARGIN", self.time_margin),
            ("PYPI_CDN_POLL_INTERVAL", self.poll_interval),
            ("PYPI_CDN_PLANNER_WINDOW", self.planner_window),
        ):
            if value < 0:
                raise ConfigError(f"{name}: {value} must be 0 or more")

    def to_env(self) -> dict[str, str]:
        """The Lambda's environment for these settings (None ones left out), with Powertools' service and namespace.

        `settings_from_env` reads it back as exactly these settings; settings it cannot carry (a MirrorConfig field
        outside ENV_OF_FIELD, or `mirror.workers` other than `per_invocation_concurrency`) raise ConfigError.
        """
        mirror = self.mirror
        values: dict[str, str | float | None] = {
            "PYPI_CDN_DEST": mirror.dest,
            "PYPI_CDN_UPSTREAM": mirror.upstream,
            "AWS_ENDPOINT_URL": mirror.endpoint_url,
            "PYPI_CDN_PROJECTS": ",".join(mirror.projects) or None,
            "PYPI_CDN_CONTACT": mirror.contact,
            "PYPI_CDN_LEASE_TTL": mirror.lease_ttl,
            "PYPI_CDN_PUBLIC_URL": mirror.public_url,
            "PYPI_CDN_QUEUE_URL": self.queue_url,
            "PYPI_CDN_DISTRIBUTION_ID": self.distribution_id,
            "AWS_ENDPOINT_URL_CLOUDFRONT": self.cloudfront_endpoint_url,
            "PYPI_CDN_PROBE_URL": self.probe_url,
            "PYPI_CDN_INLINE_THRESHOLD": self.inline_threshold,
            "PYPI_CDN_UPSTREAM_CONCURRENCY": self.upstream_concurrency,
            "PYPI_CDN_MAX_WORKERS": self.max_workers,
            "PYPI_CDN_TIME_MARGIN": self.time_margin,
            "PYPI_CDN_POLL_INTERVAL": self.poll_interval,
            "PYPI_CDN_PLANNER_WINDOW": self.planner_window,
            "PYPI_CDN_INVALIDATION_MODE": self.edge.mode.value,
            "PYPI_CDN_INVALIDATION_BUDGET_USD": self.edge.monthly_budget_usd,
        }
        env = {name: _env_text(value) for name, value in values.items() if value is not None} | POWERTOOLS_ENV
        read_back = settings_from_env(env)
        if read_back != self:
            lost = [
                f"mirror.{f.name}"
                for f in fields(mirror)
                if getattr(read_back.mirror, f.name) != getattr(mirror, f.name)
            ]
            lost += [
                f.name
                for f in fields(self)
                if f.name != "mirror" and getattr(read_back, f.name) != getattr(self, f.name)
            ]
            raise ConfigError(f"{', '.join(lost)}: not carried by the Lambda's environment as given")
        return env


def per_invocation_concurrency(upstream_concurrency: int, max_workers: int) -> int:
    """Upstream requests one invocation may make at once, so the planner plus every worker stay within budget."""
    return max(1, upstream_concurrency // (max_workers + 1))


def settings_from_env(env: Mapping[str, str] = os.environ) -> HandlerSettings:
    """Read HandlerSettings from `env` (the Lambda's environment variables)."""
    dest = env.get("PYPI_CDN_DEST", "").strip()
    if not dest:
        raise ConfigError("PYPI_CDN_DEST: required (s3://bucket[/prefix] or a folder path)")
    upstream_concurrency = _int(env, "PYPI_CDN_UPSTREAM_CONCURRENCY", DEFAULT_UPSTREAM_CONCURRENCY)
    max_workers = _int(env, "PYPI_CDN_MAX_WORKERS", DEFAULT_MAX_WORKERS)
    projects = tuple(p.strip() for p in env.get("PYPI_CDN_PROJECTS", "").split(",") if p.strip())
    try:
        mirror = MirrorConfig(
            dest=dest,
            upstream=env.get("PYPI_CDN_UPSTREAM") or DEFAULT_UPSTREAM,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            projects=projects,
            contact=env.get("PYPI_CDN_CONTACT") or None,
            workers=per_invocation_concurrency(upstream_concurrency, max(max_workers, 1)),
            lease_ttl=_float(env, "PYPI_CDN_LEASE_TTL", DEFAULT_LEASE_TTL),
            public_url=env.get("PYPI_CDN_PUBLIC_URL") or None,
        )
    except ConfigError as error:  # name the variable, not the engine's field
        field_name, _, detail = str(error).partition(": ")
        raise ConfigError(f"{ENV_OF_FIELD.get(field_name, field_name)}: {detail}") from None
    mode_text = env.get("PYPI_CDN_INVALIDATION_MODE") or InvalidationMode.TARGETED.value
    try:
        mode = InvalidationMode(mode_text)
    except ValueError:
        choices = "|".join(m.value for m in InvalidationMode)
        raise ConfigError(f"PYPI_CDN_INVALIDATION_MODE: {mode_text!r} is not one of {choices}") from None
    budget = _float(env, "PYPI_CDN_INVALIDATION_BUDGET_USD", 0.0)
    if budget < 0:
        raise ConfigError(f"PYPI_CDN_INVALIDATION_BUDGET_USD: {budget} must be 0 or more")
    return HandlerSettings(
        mirror=mirror,
        queue_url=env.get("PYPI_CDN_QUEUE_URL") or None,
        distribution_id=env.get("PYPI_CDN_DISTRIBUTION_ID") or None,
        cloudfront_endpoint_url=env.get("AWS_ENDPOINT_URL_CLOUDFRONT") or None,
        probe_url=env.get("PYPI_CDN_PROBE_URL") or None,
        inline_threshold=_int(env, "PYPI_CDN_INLINE_THRESHOLD", DEFAULT_INLINE_THRESHOLD),
        upstream_concurrency=upstream_concurrency,
        max_workers=max_workers,
        time_margin=_float(env, "PYPI_CDN_TIME_MARGIN", DEFAULT_TIME_MARGIN),
        poll_interval=_float(env, "PYPI_CDN_POLL_INTERVAL", DEFAULT_POLL_INTERVAL),
        planner_window=_float(env, "PYPI_CDN_PLANNER_WINDOW", DEFAULT_PLANNER_WINDOW),
        edge=EdgeSettings(mode, budget),
    )


def _env_text(value: str | float) -> str:
    """A value as settings_from_env reads it: numbers in their shortest exact form (`300`, not `300.0`)."""
    return value if isinstance(value, str) else repr(value).removesuffix(".0")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a whole number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a number") from None
