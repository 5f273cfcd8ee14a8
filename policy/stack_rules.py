"""The rules that need several resources at once (which bucket, which distribution), judged on the stack's
outputs: bucket guards present, origins reachable only via this distribution, IAM scoped to this stack, access logs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policy.documents import condition_values, document_violations, only_actions, service_principals, unscopable
from policy.resources import (
    BUCKET,
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    DISTRIBUTION,
    DNS_RECORD,
    IAM_POLICY_TYPES,
    IAM_ROLE,
    INSTANCE,
    LAMBDA_FUNCTION,
    LOG_DELIVERY_SOURCE,
    LOG_GROUP,
    ORIGIN_ACCESS_CONTROL,
    QUEUE,
    DeclaredResource,
    Props,
    StackRule,
    Violation,
    as_list,
    of_type,
)
from sync.layout import MIRROR_PREFIXES, STATUS_KEY

# Objects IAM may name in a bucket: under the mirror's prefixes (MIRROR_PREFIXES), and these single keys besides.
BUCKET_KEYS = (STATUS_KEY,)  # the mirror's public status, which the planner writes
CLOUDFRONT_SERVICE = "cloudfront.amazonaws.com"
# Services that write access logs into a bucket when its policy lets them.
LOG_DELIVERY_SERVICES = frozenset({"delivery.logs.amazonaws.com", "logging.s3.amazonaws.com"})
# Besides the bucket prefixes, IAM may name these resources when the stack itself declares them.
STACK_ARN_TYPES = frozenset({QUEUE, DISTRIBUTION, LAMBDA_FUNCTION, LOG_GROUP})
# Actions an instance calls about itself. Its role exists before the instance, so it cannot name the instance's ARN:
# IAM may name every instance of an account and region in which the stack runs instances, for these actions only.
INSTANCE_SELF_ACTIONS = frozenset({"ssm:UpdateInstanceInformation"})


def _identities(props: Props) -> set[str]:
    """What other resources use to refer to this one: its id, its name (`bucket`), its ARN."""
    return {str(props[key]) for key in ("id", "bucket", "arn") if props.get(key)}


def check_buckets_covered(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every bucket has its own public access block, default encryption and (TLS-only) bucket policy."""
    companions = {
        BUCKET_PUBLIC_ACCESS_BLOCK: "public access block",
        BUCKET_ENCRYPTION: "default encryption configuration",
        BUCKET_POLICY: "bucket policy (TLS only)",
    }
    attached = {
        companion: {str(resource.props.get("bucket")) for resource in of_type(resources, companion)}
        for companion in companions
    }
    violations = []
    for bucket in of_type(resources, BUCKET):
        identities = _identities(bucket.props)
        for companion, description in companions.items():
            if not identities & attached[companion]:
                violations.append(Violation(f"bucket {bucket.name!r} has no {description}", bucket.urn))
    return violations


def _bucket_policy_grant_problems(statements: list[Props], distribution_arns: set[str]) -> list[str]:
    problems = []
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        services = service_principals(statement)
        if services == {CLOUDFRONT_SERVICE}:
            source_arns = {
                arn
                for operator in ("StringEquals", "ArnEquals")
                for arn in condition_values(statement, operator, "AWS:SourceArn")
            }
            if not source_arns or not source_arns <= distribution_arns:
                problems.append(
                    f"statement {index}: CloudFront may read only for this stack's distribution "
                    f"(StringEquals AWS:SourceArn), found {sorted(source_arns)}"
                )
            if set(as_list(statement.get("Action"))) != {"s3:GetObject"}:
                problems.append(f"statement {index}: CloudFront needs s3:GetObject only")
        elif services and services <= LOG_DELIVERY_SERVICES:
            if set(as_list(statement.get("Action"))) != {"s3:PutObject"}:
                problems.append(f"statement {index}: log delivery needs s3:PutObject only")
        else:
            problems.append(
                f"statement {index}: allows {statement.get('Principal')!r}; a bucket of this stack "
                "grants only CloudFront (via this distribution's OAC) and log delivery"
            )
    return problems


def check_origin_only_via_distribution(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Bucket policies let CloudFront read only on behalf of this stack's distributions, and no one else in."""
    distribution_arns = {
        str(resource.props["arn"]) for resource in of_type(resources, DISTRIBUTION) if resource.props.get("arn")
    }
    oac_ids = {
        str(resource.props["id"]) for resource in of_type(resources, ORIGIN_ACCESS_CONTROL) if resource.props.get("id")
    }
    violations = []
    for policy in of_type(resources, BUCKET_POLICY):
        problems = document_violations(
            policy.props.get("policy"),
            f"bucket policy {policy.name!r}",
            lambda statements: _bucket_policy_grant_problems(statements, distribution_arns),
        )
        violations += [Violation(problem, policy.urn) for problem in problems]
    for distribution in of_type(resources, DISTRIBUTION):
        for origin in as_list(distribution.props.get("origins")):
            control = origin.get("originAccessControlId")
            if control and str(control) not in oac_ids:
                violations.append(
                    Violation(
                        f"origin {origin.get('originId')!r} uses an origin access control this stack does not declare",
                        distribution.urn,
                    )
                )
    return violations


def _allowed_iam_resources(resources: Sequence[DeclaredResource]) -> tuple[set[str], tuple[str, ...]]:
    """Exact ARNs IAM may name, and the ARN prefixes under which it may name anything."""
    exact: set[str] = set()
    prefixes: list[str] = []
    zones = {str(record.props["zoneId"]) for record in of_type(resources, DNS_RECORD) if record.props.get("zoneId")}
    exact.update(f"arn:aws:route53:::hostedzone/{zone}" for zone in zones)
    if zones:
        exact.add("arn:aws:route53:::change/*")  # a change to one of those zones, named by an ID AWS returns
    for resource in resources:
        arn = resource.props.get("arn") if resource.type in STACK_ARN_TYPES | {BUCKET} else None
        if not arn:
            continue
        if resource.type == BUCKET:
            exact.add(str(arn))
            exact.update(f"{arn}/{key}" for key in BUCKET_KEYS)
            prefixes.extend(f"{arn}/{prefix}" for prefix in MIRROR_PREFIXES)
        elif resource.type == LOG_GROUP:
            exact.add(str(arn))
            prefixes.append(f"{arn}:")
        else:
            exact.update({str(arn), f"{arn}:*"})
    return exact, tuple(prefixes)


def _instance_arn_patterns(resources: Sequence[DeclaredResource]) -> set[str]:
    """`arn:<partition>:ec2:<region>:<account>:instance/*` for each account and region the stack has instances in."""
    return {
        ":".join(str(instance.props["arn"]).split(":")[:5]) + ":instance/*"
        for instance in of_type(resources, INSTANCE)
        if instance.props.get("arn")
    }


def _iam_documents(resource: DeclaredResource) -> list[tuple[str, Any]]:
    if resource.type in IAM_POLICY_TYPES:
        return [(f"policy {resource.name!r}", resource.props.get("policy"))]
    if resource.type == IAM_ROLE:
        return [
            (f"role {resource.name!r} inline policy {inline.get('name')!r}", inline.get("policy"))
            for inline in as_list(resource.props.get("inlinePolicies"))
        ]
    return []


def check_iam_resources_in_stack(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """IAM names only this stack's bucket prefixes, queues, distribution, functions, log groups and DNS zones,
    and, for the actions an instance calls about itself, the instances of the stack's accounts and regions."""
    exact, prefixes = _allowed_iam_resources(resources)
    instance_patterns = _instance_arn_patterns(resources)

    def in_stack(arn: str, statement: Props) -> bool:
        if arn in exact or arn.startswith(prefixes):
            return True
        return arn in instance_patterns and only_actions(statement, INSTANCE_SELF_ACTIONS)

    def judge(statements: list[Props]) -> list[str]:
        outside = [
            str(arn)
            for statement in statements
            if statement.get("Effect", "Allow") == "Allow" and not unscopable(statement)
            for arn in as_list(statement.get("Resource"))
            if not in_stack(str(arn), statement)
        ]
        return [f"resource {arn!r} is outside this stack's bucket prefixes, queues and distribution" for arn in outside]

    violations = []
    for resource in resources:
        for where, document in _iam_documents(resource):
            violations += [
                Violation(f"{where}: {problem}", resource.urn)
                for problem in document_violations(document, where, judge)
            ]
    return violations


def check_access_logs(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every distribution writes access logs: legacy `loggingConfig` or a v2 log delivery source for it."""
    delivered = {
        str(source.props.get("resourceArn"))
        for source in of_type(resources, LOG_DELIVERY_SOURCE)
        if source.props.get("logType") == "ACCESS_LOGS"
    }
    violations = []
    for distribution in of_type(resources, DISTRIBUTION):
        legacy = (distribution.props.get("loggingConfig") or {}).get("bucket")
        if not legacy and str(distribution.props.get("arn")) not in delivered:
            violations.append(
                Violation(
                    f"distribution {distribution.name!r} writes no access logs "
                    "(no loggingConfig.bucket, no ACCESS_LOGS delivery source)",
                    distribution.urn,
                )
            )
    return violations


STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "s3-bucket-guards-present",
        "every bucket has a public access block, encryption and TLS-only policy",
        check_buckets_covered,
    ),
    StackRule(
        "s3-origin-only-via-distribution",
        "buckets admit CloudFront only for this stack's distribution",
        check_origin_only_via_distribution,
    ),
    StackRule(
        "iam-resources-in-stack",
        "IAM names only this stack's bucket prefixes, queues and distribution",
        check_iam_resources_in_stack,
    ),
    StackRule("cloudfront-access-logs", "every distribution writes access logs", check_access_logs),
)
