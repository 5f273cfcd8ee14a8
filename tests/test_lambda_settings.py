"""HandlerSettings and the Lambda's environment: `to_env` is the exact inverse of `settings_from_env`."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.config import ConfigError, MirrorConfig
from sync.invalidation import EdgeSettings, InvalidationMode
from sync.lambda_settings import HandlerSettings, per_invocation_concurrency, settings_from_env

NAME = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,20}[A-Za-z0-9])?", fullmatch=True)
TEXT = st.text(min_size=1, max_size=30)  # read verbatim: any non-empty text is a value
SECONDS = st.floats(min_value=0, allow_nan=False)
# Pure functions, but the machine is shared: no timing checks (one example was seen at 1.1 s under load).
UNTIMED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
URL = st.sampled_from(["https://pypi.org", "http://127.0.0.1:8080", "https://mirror.example.org/pypi/"])


def test_settings_from_env_defaults_and_overrides():
    settings = settings_from_env({"PYPI_CDN_DEST": "s3://bucket", "PYPI_CDN_PROJECTS": "Foo_Bar, tiny,,"})
    assert settings.mirror.dest == "s3://bucket"
    assert settings.mirror.upstream == "https://pypi.org"
    assert settings.mirror.projects == ("foo-bar", "tiny")
    assert settings.queue_url is None
    assert settings.edge.mode is InvalidationMode.TARGETED
    assert settings.mirror.workers == 2  # 10 requests shared by the planner and 4 workers
    custom = settings_from_env(
        {
            "PYPI_CDN_DEST": "/tmp/m",
            "PYPI_CDN_INVALIDATION_MODE": "ttl",
            "PYPI_CDN_INVALIDATION_BUDGET_USD": "2.5",
            "PYPI_CDN_MAX_WORKERS": "1",
            "PYPI_CDN_UPSTREAM_CONCURRENCY": "10",
            "PYPI_CDN_INLINE_THRESHOLD": "0",
        }
    )
    assert (custom.edge.mode, custom.edge.monthly_path_allowance) == (InvalidationMode.TTL, 1500)
    assert custom.mirror.workers == 5
    assert custom.inline_threshold == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "PYPI_CDN_DEST: required"),
        ({"PYPI_CDN_INLINE_THRESHOLD": "many"}, "PYPI_CDN_INLINE_THRESHOLD: 'many' is not a whole number"),
        ({"PYPI_CDN_INVALIDATION_MODE": "purge"}, "PYPI_CDN_INVALIDATION_MODE: 'purge' is not one of"),
        ({"PYPI_CDN_INVALIDATION_BUDGET_USD": "-1"}, "PYPI_CDN_INVALIDATION_BUDGET_USD: -1.0 must be 0 or more"),
        ({"PYPI_CDN_MAX_WORKERS": "20"}, "PYPI_CDN_UPSTREAM_CONCURRENCY: 10 cannot give the planner and 20"),
        ({"PYPI_CDN_UPSTREAM": "ftp://x"}, "PYPI_CDN_UPSTREAM: 'ftp://x' is not an http"),
        ({"PYPI_CDN_PROJECTS": "ok,../bad"}, "PYPI_CDN_PROJECTS: invalid project name"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        settings_from_env({"PYPI_CDN_DEST": "s3://bucket", **env} if env else {})


def test_per_invocation_concurrency_keeps_the_global_budget():
    for budget, workers in ((10, 4), (10, 1), (32, 7), (10, 9)):
        each = per_invocation_concurrency(budget, workers)
        assert each >= 1
        assert each * (workers + 1) <= budget


@st.composite
def lambda_settings(draw: st.DrawFn) -> HandlerSettings:
    """Settings as a Lambda can have them: a mirror of the fields its environment carries, `workers` derived."""
    max_workers = draw(st.integers(1, 64))
    upstream_concurrency = draw(st.integers(max_workers + 1, 64 * (max_workers + 1)))
    mirror = MirrorConfig(
        dest=draw(st.from_regex(r"s3://[a-z0-9][a-z0-9.-]{2,20}(/[a-z]{1,8})?|/[a-z0-9/_-]{1,20}", fullmatch=True)),
        upstream=draw(URL),
        endpoint_url=draw(st.none() | st.just("http://127.0.0.1:9000")),
        projects=tuple(draw(st.lists(NAME, max_size=4))),
        contact=draw(st.none() | TEXT),
        workers=per_invocation_concurrency(upstream_concurrency, max_workers),
        lease_ttl=draw(st.floats(min_value=10, allow_nan=False)),
        public_url=draw(st.none() | st.sampled_from(["https://cdn.example.org", "http://127.0.0.1:8443/"])),
    )
    return HandlerSettings(
        mirror=mirror,
        queue_url=draw(st.none() | TEXT),
        distribution_id=draw(st.none() | TEXT),
        cloudfront_endpoint_url=draw(st.none() | TEXT),
        probe_url=draw(st.none() | TEXT),
        inline_threshold=draw(st.integers(min_value=0)),
        upstream_concurrency=upstream_concurrency,
        max_workers=max_workers,
        time_margin=draw(SECONDS),
        poll_interval=draw(SECONDS),
        planner_window=draw(SECONDS),
        edge=EdgeSettings(draw(st.sampled_from(InvalidationMode)), draw(SECONDS)),
    )


@UNTIMED
@given(lambda_settings())
def test_settings_survive_their_environment(settings: HandlerSettings) -> None:
    env = settings.to_env()
    assert all(isinstance(name, str) and isinstance(value, str) for name, value in env.items())
    assert settings_from_env(env) == settings


@UNTIMED
@given(
    st.fixed_dictionaries(
        {"PYPI_CDN_DEST": st.just("s3://bucket")},
        optional={
            "PYPI_CDN_PROJECTS": st.lists(NAME, max_size=3).map(", ".join),
            "PYPI_CDN_CONTACT": TEXT,
            "PYPI_CDN_INLINE_THRESHOLD": st.integers(0, 10**6).map(lambda n: f" {n:03d} "),
            "PYPI_CDN_POLL_INTERVAL": st.sampled_from(["0", "2.5", "1e1", " 7 "]),
            "PYPI_CDN_INVALIDATION_MODE": st.sampled_from([mode.value for mode in InvalidationMode]),
            "PYPI_CDN_INVALIDATION_BUDGET_USD": st.sampled_from(["", "0", "5", "0.005"]),
            "PYPI_CDN_QUEUE_URL": st.sampled_from(["", "https://sqs.eu-west-1.amazonaws.com/1/q"]),
        },
    )
)
def test_every_readable_environment_renders_back_to_the_same_settings(env: dict[str, str]) -> None:
    settings = settings_from_env(env)
    assert settings_from_env(settings.to_env()) == settings


def test_the_environment_spells_numbers_as_written_and_leaves_unset_values_out() -> None:
    settings = HandlerSettings(
        mirror=MirrorConfig(dest="s3://bucket", projects=("Foo_Bar",), workers=2, lease_ttl=300.0),
        queue_url="https://sqs.example/q",
        edge=EdgeSettings(InvalidationMode.TTL, 5),
    )
    assert settings.to_env() == {
        "PYPI_CDN_DEST": "s3://bucket",
        "PYPI_CDN_UPSTREAM": "https://pypi.org",
        "PYPI_CDN_PROJECTS": "foo-bar",
        "PYPI_CDN_LEASE_TTL": "300",
        "PYPI_CDN_QUEUE_URL": "https://sqs.example/q",
        "PYPI_CDN_INLINE_THRESHOLD": "50",
        "PYPI_CDN_UPSTREAM_CONCURRENCY": "10",
        "PYPI_CDN_MAX_WORKERS": "4",
        "PYPI_CDN_TIME_MARGIN": "10",
        "PYPI_CDN_POLL_INTERVAL": "10",
        "PYPI_CDN_PLANNER_WINDOW": "50",
        "PYPI_CDN_INVALIDATION_MODE": "ttl",
        "PYPI_CDN_INVALIDATION_BUDGET_USD": "5",
        "POWERTOOLS_SERVICE_NAME": "pypi-cdn-sync",
        "POWERTOOLS_METRICS_NAMESPACE": "pypi-cdn",
    }


@pytest.mark.parametrize(
    ("mirror", "lost"),
    [
        ({"workers": 10}, "mirror.workers"),  # the environment derives it from the concurrency budget
        ({"blocklist": ("evil",)}, "mirror.blocklist"),
        ({"keep_latest": 3, "file_attempts": 5}, "mirror.keep_latest, mirror.file_attempts"),
    ],
)
def test_settings_the_environment_cannot_carry_are_refused(mirror: dict[str, object], lost: str) -> None:
    carried = MirrorConfig(dest="s3://bucket", workers=2)
    settings = HandlerSettings(mirror=replace(carried, **mirror))
    with pytest.raises(ConfigError, match=f"^{lost}: not carried"):
        settings.to_env()
