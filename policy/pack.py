"""The rules of `policy.resource_rules` and `policy.stack_rules` as pulumi-policy policies, all mandatory."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy.resource_rules import RESOURCE_RULES
from policy.resources import DeclaredResource, ResourceRule, StackRule
from policy.stack_rules import STACK_RULES

PACK_NAME = "pypi-cdn-security"


def resource_policy(rule: ResourceRule) -> ResourceValidationPolicy:
    """A policy that reports each violation `rule.check` finds on one resource's inputs."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.check(args.resource_type, args.props):
            report_violation(message, None)

    return ResourceValidationPolicy(rule.name, rule.description, validate, EnforcementLevel.MANDATORY)


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    """A policy that reports each violation `rule.check` finds across the stack, on the offending resource."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [
            DeclaredResource(resource.resource_type, resource.name, resource.props, resource.urn)
            for resource in args.resources
        ]
        for violation in rule.check(resources):
            report_violation(violation.message, violation.urn or None)

    return StackValidationPolicy(rule.name, rule.description, validate, EnforcementLevel.MANDATORY)


POLICIES: list[Policy] = [
    *(resource_policy(rule) for rule in RESOURCE_RULES),
    *(stack_policy(rule) for rule in STACK_RULES),
]
