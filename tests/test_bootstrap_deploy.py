"""The deploy role's permissions: scoped to the main stack's names, and within IAM's size limits."""

from __future__ import annotations

import json
from typing import Any

from bootstrap.access import state_access_policy
from bootstrap.deploy import deploy_policies

ACCOUNT = "123456789012"
REGION = "eu-west-1"
INLINE_POLICIES_LIMIT = 10_240  # IAM: characters of all inline policies of one role, whitespace excluded


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["Statement"]


def test_deploy_policies_are_scoped_and_fit_iam_limits() -> None:
    documents = deploy_policies(ACCOUNT, REGION, "pypi-cdn")
    scoped, unscoped = statements(documents[0]), statements(documents[1])
    for statement in scoped:
        assert "*" not in statement["Resource"], statement["Sid"]
        for resource in statement["Resource"]:
            assert (
                "pypi-cdn" in resource
                or f":{ACCOUNT}:" in resource
                or resource.startswith(
                    ("arn:aws:route53:::", f"arn:aws:ec2:{REGION}::image/", f"arn:aws:ssm:{REGION}::parameter/aws/")
                )
            ), resource
    by_sid = {statement["Sid"]: statement for statement in scoped}
    assert by_sid["Buckets"]["Resource"] == ["arn:aws:s3:::pypi-cdn*", "arn:aws:s3:::pypi-cdn*/*"]
    # The dashboard (named pypi-cdn-<stack>-<component>) and the distribution's additional metrics.
    assert by_sid["Dashboards"]["Resource"] == [f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/pypi-cdn*"]
    assert "cloudfront:CreateMonitoringSubscription" in by_sid["Distributions"]["Action"]
    assert by_sid["PassRoles"]["Condition"] == {
        "StringEquals": {
            "iam:PassedToService": ["lambda.amazonaws.com", "ec2.amazonaws.com", "scheduler.amazonaws.com"]
        }
    }
    assert [statement["Sid"] for statement in unscoped] == ["CallsWithoutResourceScope"]
    mutating = [
        action for action in unscoped[0]["Action"] if not action.split(":")[1].startswith(("Describe", "List", "Get"))
    ]
    assert mutating == ["acm:RequestCertificate"]
    every_action = [action for statement in scoped + unscoped for action in statement["Action"]]
    assert "*" not in every_action
    assert [action for action in every_action if action.endswith(":*")] == []
    size = sum(len(json.dumps(document, separators=(",", ":"))) for document in documents)
    assert size + len(json.dumps(state_access_policy("a" * 60, "k" * 80, deploy=True))) < INLINE_POLICIES_LIMIT
