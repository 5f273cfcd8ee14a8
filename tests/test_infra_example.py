"""examples/allowlist-mirror: another team's program using PypiMirror, run under Pulumi's mocks like the main one."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tests.infra_mocks import REPO_ROOT, run_stack
from tests.test_infra_stack import named, one, resources

EXAMPLE = REPO_ROOT / "examples" / "allowlist-mirror"


@functools.cache
def example(**config: str) -> dict[str, Any]:
    project = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())["name"]
    return run_stack(dict(config), stack="team", program_path=EXAMPLE / "__main__.py", project=project)


def test_the_example_is_its_own_pulumi_project_on_pypi_cdn_s_virtualenv() -> None:
    project = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
    assert project["name"] != "pypi-cdn"
    assert project["runtime"]["name"] == "python"
    assert (EXAMPLE / project["runtime"]["options"]["virtualenv"]).resolve() == (REPO_ROOT / ".venv").resolve()


def test_the_example_declares_one_allowlist_mirror_on_cloudfront_s_name() -> None:
    stack = example(alarmEmail="team@example.org")
    assert stack["error"] is None, stack["error"]
    assert stack["warnings"] == []
    components = [r for r in stack["resources"] if r["type"] == "pypi-cdn:index:PypiMirror"]
    assert [c["name"] for c in components] == ["team-mirror"]
    types = {r["type"] for r in stack["resources"]}
    for absent in ("aws:route53/record:Record", "aws:ec2/instance:Instance", "aws:acm/certificate:Certificate"):
        assert absent not in types
    for function in ("sync-planner", "sync-worker"):
        env = named(stack, "aws:lambda/function:Function", function)["environment"]["variables"]
        assert env["PYPI_CDN_PROJECTS"] == "requests,urllib3,idna,certifi,charset-normalizer"
        assert env["PYPI_CDN_INVALIDATION_MODE"] == "ttl"
    assert one(stack, "aws:scheduler/schedule:Schedule")["scheduleExpression"] == "rate(5 minutes)"
    subscription = one(stack, "aws:sns/topicSubscription:TopicSubscription")
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "team@example.org")
    assert one(stack, "aws:cloudwatch/dashboard:Dashboard")["dashboardName"] == "pypi-cdn-team-team-mirror"
    assert stack["outputs"] == {
        "indexUrl": "https://d111111abcdef8.cloudfront.net/simple/",
        "uvProjectConfig": (
            '[[tool.uv.index]]\nname = "pypi-cdn"\nurl = "https://d111111abcdef8.cloudfront.net/simple/"\n'
            "default = true\n"
        ),
        "statusUrl": "https://d111111abcdef8.cloudfront.net/status.json",
        "dashboardUrl": (
            "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/"
            "pypi-cdn-team-team-mirror"
        ),
    }


def test_without_the_optional_config_the_alarms_send_no_mail() -> None:
    stack = example()
    assert stack["error"] is None, stack["error"]
    assert resources(stack, "aws:sns/topicSubscription:TopicSubscription") == []


def test_bad_args_fail_naming_the_setting_before_any_resource(tmp_path: Path) -> None:
    program = tmp_path / "__main__.py"
    source = (EXAMPLE / "__main__.py").read_text()
    program.write_text(source.replace('sync_schedule="rate(5 minutes)"', 'sync_schedule="every minute"'))
    stack = run_stack({}, stack="team-bad", program_path=program, project="team-pypi-mirror")
    assert stack["error"] is not None
    assert stack["error"].startswith("RunError: pypi-cdn:syncSchedule: 'every minute' is not rate(<n> <unit>)")
    assert stack["resources"] == []
