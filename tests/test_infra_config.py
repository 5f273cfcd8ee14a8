"""infra/config.py: defaults equal Pulumi.yaml's, the example parses, and each bad value is refused naming its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import KEYS, ConfigError, PypiMirrorArgs, parse_config

REPO_ROOT = Path(__file__).resolve().parent.parent
PULUMI_TYPES = {str: "string", int: "integer", tuple: "array"}


def pulumi_project() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())


def test_pulumi_yaml_declares_exactly_the_keys_with_types_defaults_and_descriptions() -> None:
    declared = {key: spec for key, spec in pulumi_project()["config"].items() if ":" not in key}
    assert list(declared) == list(KEYS)
    defaults = PypiMirrorArgs()
    for key, (field, _) in KEYS.items():
        spec = declared[key]
        assert spec["description"].strip(), key
        value = getattr(defaults, field)
        expected_type = PULUMI_TYPES[type(value) if value is not None else str]
        assert spec["type"] == expected_type, key
        # Pulumi's default, fed through our parser, is our default (empty strings mean "unset").
        assert getattr(parse_config({key: spec["default"]}), field) == getattr(parse_config({}), field), key


def test_pulumi_yaml_runtime_is_python_with_pyright() -> None:
    project = pulumi_project()
    assert project["name"] == "pypi-cdn"
    assert project["runtime"] == {
        "name": "python",
        "options": {"toolchain": "pip", "virtualenv": ".venv", "typechecker": "pyright"},
    }


def test_example_stack_config_parses() -> None:
    example = yaml.safe_load((REPO_ROOT / "Pulumi.example.yaml").read_text())["config"]
    assert example["aws:region"] == "eu-west-1"
    values = {key.removeprefix("pypi-cdn:"): value for key, value in example.items() if key.startswith("pypi-cdn:")}
    assert set(values) == set(KEYS)  # the example shows every key
    config = parse_config(values)
    assert config.domain == "pypi.example.org"
    assert config.cdn_hostname == "cdn.pypi.example.org"
    assert config.redirectors == 2
    assert config.projects == ("requests", "urllib3")


def test_defaults_without_a_domain_have_no_redirectors() -> None:
    config = parse_config({})
    assert config == dataclasses.replace(PypiMirrorArgs(), redirectors=0)
    assert config.upstream == "https://pypi.org"
    assert config.sync_schedule == "rate(1 minute)"
    assert config.cdn_hostname is None


def test_domain_derives_cdn_hostname_and_strips_the_zone_dot() -> None:
    config = parse_config({"domain": "pypi.example.org", "zoneName": "example.org."})
    assert config.cdn_hostname == "cdn.pypi.example.org"
    assert config.zone_name == "example.org"
    assert config.redirectors == 2


def test_pulumi_strings_are_coerced_like_the_cli_hands_them_over() -> None:
    config = parse_config(
        {
            "domain": "pypi.example.org",
            "zoneName": "example.org",
            "redirectors": "3",
            "projects": '["Django", "zope.interface", "django"]',
            "lagAlarmSeconds": "900",
        }
    )
    assert config.redirectors == 3
    assert config.projects == ("django", "zope-interface")  # normalized, duplicates dropped
    assert config.lag_alarm_seconds == 900


@pytest.mark.parametrize(
    ("instance_type", "architecture"),
    [
        ("t4g.micro", "arm64"),
        ("c7gn.large", "arm64"),
        ("a1.medium", "arm64"),
        ("t3.micro", "x86_64"),
        ("m7i.large", "x86_64"),
    ],
)
def test_redirector_architecture_follows_the_instance_family(instance_type: str, architecture: str) -> None:
    assert parse_config({"redirectorInstanceType": instance_type}).redirector_architecture == architecture


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"domain": "pypi.example.org"}, "zoneName"),
        ({"domain": "pypi.example.org", "zoneName": "example.com"}, "domain"),
        ({"domain": "Pypi.Example.org", "zoneName": "example.org"}, "domain"),
        ({"domain": "pypi.example.org", "zoneName": "example.org", "cdnHostname": "cdn.other.net"}, "cdnHostname"),
        ({"domain": "pypi.example.org", "zoneName": "example.org", "cdnHostname": "pypi.example.org"}, "cdnHostname"),
        ({"zoneName": "example.org"}, "zoneName"),
        ({"redirectors": 9}, "redirectors"),
        ({"redirectors": -1}, "redirectors"),
        ({"redirectors": "two"}, "redirectors"),
        ({"redirectors": True}, "redirectors"),
        ({"redirectorInstanceType": "t4g micro"}, "redirectorInstanceType"),
        ({"upstream": "http://pypi.org"}, "upstream"),
        ({"upstream": "https://pypi.org/simple/"}, "upstream"),
        ({"dynamicOrigin": "ftp://example.org"}, "dynamicOrigin"),
        ({"dynamicOrigin": "https://user:pw@example.org"}, "dynamicOrigin"),
        ({"projects": ["ok", "../../etc"]}, "projects"),
        ({"projects": "not json"}, "projects"),
        ({"projects": [1, 2]}, "projects"),
        ({"syncSchedule": "every minute"}, "syncSchedule"),
        ({"syncSchedule": "rate(1 minutes)"}, "syncSchedule"),
        ({"syncSchedule": "rate(5 minute)"}, "syncSchedule"),
        ({"priceClass": "PriceClass_50"}, "priceClass"),
        ({"alarmEmail": "not-an-address"}, "alarmEmail"),
        ({"syncContact": "ops\n@example.org"}, "syncContact"),
        ({"invalidationMode": "always"}, "invalidationMode"),
        ({"invalidationMonthlyBudgetUsd": -1}, "invalidationMonthlyBudgetUsd"),
        ({"lagAlarmSeconds": 10}, "lagAlarmSeconds"),
        ({"inlineSyncThreshold": -5}, "inlineSyncThreshold"),
        ({"redirector": 2}, "redirector"),
    ],
)
def test_bad_values_are_refused_naming_the_key(values: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^pypi-cdn:{key}: "):
        parse_config(values)


@pytest.mark.parametrize("schedule", ["rate(1 minute)", "rate(5 minutes)", "rate(2 hours)", "cron(0/5 * * * ? *)"])
def test_scheduler_expressions_are_accepted(schedule: str) -> None:
    assert parse_config({"syncSchedule": schedule}).sync_schedule == schedule


def test_config_is_frozen() -> None:
    config = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.redirectors = 5  # type: ignore[misc]
