"""The stack security rules, each called on a compliant stack and on one that breaks it."""

from __future__ import annotations

import pytest

from policy.resources import (
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    DISTRIBUTION,
    DNS_RECORD,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    INSTANCE,
    LAMBDA_FUNCTION,
    LOG_DELIVERY_SOURCE,
    LOG_GROUP,
    ORIGIN_ACCESS_CONTROL,
    QUEUE,
    DeclaredResource,
    StackRule,
    Violation,
)
from policy.stack_rules import (
    STACK_RULES,
    check_access_logs,
    check_buckets_covered,
    check_iam_resources_in_stack,
    check_origin_only_via_distribution,
)
from tests.policy_inputs import (
    ACCOUNT,
    BUCKET_ARN,
    DISTRIBUTION_ARN,
    FUNCTION_ARN,
    LOG_GROUP_ARN,
    LOGS_BUCKET_ARN,
    QUEUE_ARN,
    cloudfront_read,
    distribution,
    document,
    tls_deny,
)

# --- stack rules ---------------------------------------------------------------------------------------------


def compliant_stack() -> list[DeclaredResource]:
    """A stack shaped like pypi-cdn's: origin + logs buckets, distribution with OAC, queue, sync function."""
    origin_policy = document(tls_deny(), cloudfront_read())
    logs_policy = document(
        tls_deny(LOGS_BUCKET_ARN),
        {
            "Effect": "Allow",
            "Principal": {"Service": "delivery.logs.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"{LOGS_BUCKET_ARN}/*",
        },
    )
    sync_policy = document(
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [
                f"{BUCKET_ARN}/simple/*",
                f"{BUCKET_ARN}/packages/*",
                f"{BUCKET_ARN}/.pypi-cdn/*",
                f"{BUCKET_ARN}/status.json",
            ],
        },
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET_ARN},
        {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": QUEUE_ARN},
        {"Effect": "Allow", "Action": "cloudfront:CreateInvalidation", "Resource": DISTRIBUTION_ARN},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": f"{LOG_GROUP_ARN}:*"},
    )
    resources = [
        (
            "aws:s3/bucket:Bucket",
            "origin",
            {"id": "pypi-cdn-origin-1a2b3c", "bucket": "pypi-cdn-origin-1a2b3c", "arn": BUCKET_ARN},
        ),
        (
            "aws:s3/bucket:Bucket",
            "logs",
            {"id": "pypi-cdn-logs-4d5e6f", "bucket": "pypi-cdn-logs-4d5e6f", "arn": LOGS_BUCKET_ARN},
        ),
        (DISTRIBUTION, "cdn", distribution()),
        (ORIGIN_ACCESS_CONTROL, "oac", {"id": "oac-id", "signingBehavior": "always", "signingProtocol": "sigv4"}),
        (QUEUE, "work", {"arn": QUEUE_ARN, "sqsManagedSseEnabled": True}),
        (LAMBDA_FUNCTION, "sync", {"arn": FUNCTION_ARN}),
        (LOG_GROUP, "sync-logs", {"arn": LOG_GROUP_ARN}),
        (IAM_ROLE_POLICY, "sync", {"policy": sync_policy}),
        (BUCKET_POLICY, "origin", {"bucket": "pypi-cdn-origin-1a2b3c", "policy": origin_policy}),
        (BUCKET_POLICY, "logs", {"bucket": "pypi-cdn-logs-4d5e6f", "policy": logs_policy}),
    ]
    for bucket in ("pypi-cdn-origin-1a2b3c", "pypi-cdn-logs-4d5e6f"):
        resources += [
            (BUCKET_PUBLIC_ACCESS_BLOCK, bucket, {"bucket": bucket}),
            (BUCKET_ENCRYPTION, bucket, {"bucket": bucket}),
        ]
    return [DeclaredResource(kind, name, props, urn=f"urn:{kind}::{name}") for kind, name, props in resources]


def replace_props(stack: list[DeclaredResource], kind: str, name: str, **props: object) -> list[DeclaredResource]:
    return [
        DeclaredResource(r.type, r.name, {**r.props, **props}, r.urn) if (r.type, r.name) == (kind, name) else r
        for r in stack
    ]


def without(stack: list[DeclaredResource], kind: str, name: str) -> list[DeclaredResource]:
    return [r for r in stack if (r.type, r.name) != (kind, name)]


@pytest.mark.parametrize("rule", STACK_RULES, ids=lambda rule: rule.name)
def test_compliant_stack_passes_every_stack_rule(rule: StackRule) -> None:
    assert rule.check(compliant_stack()) == []


def test_bucket_without_its_guards_fails() -> None:
    stack = without(
        without(compliant_stack(), BUCKET_PUBLIC_ACCESS_BLOCK, "pypi-cdn-logs-4d5e6f"),
        BUCKET_POLICY,
        "origin",
    )
    assert check_buckets_covered(stack) == [
        Violation("bucket 'origin' has no bucket policy (TLS only)", "urn:aws:s3/bucket:Bucket::origin"),
        Violation("bucket 'logs' has no public access block", "urn:aws:s3/bucket:Bucket::logs"),
    ]


def test_bucket_policy_for_another_distribution_or_principal_fails() -> None:
    other = f"arn:aws:cloudfront::{ACCOUNT}:distribution/EOTHER"
    stack = replace_props(
        compliant_stack(),
        BUCKET_POLICY,
        "origin",
        policy=document(
            tls_deny(),
            cloudfront_read(other),
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": "s3:GetObject",
                "Resource": f"{BUCKET_ARN}/*",
            },
            {**cloudfront_read(), "Condition": {}},
        ),
    )
    messages = [violation.message for violation in check_origin_only_via_distribution(stack)]
    assert messages == [
        f"statement 1: CloudFront may read only for this stack's distribution (StringEquals AWS:SourceArn), "
        f"found ['{other}']",
        "statement 2: allows {'AWS': 'arn:aws:iam::999999999999:root'}; a bucket of this stack grants only "
        "CloudFront (via this distribution's OAC) and log delivery",
        "statement 3: CloudFront may read only for this stack's distribution (StringEquals AWS:SourceArn), found []",
    ]


def test_cloudfront_granted_more_than_reads_or_foreign_oac_fails() -> None:
    read_write = {**cloudfront_read(), "Action": ["s3:GetObject", "s3:PutObject"]}
    stack = replace_props(compliant_stack(), BUCKET_POLICY, "origin", policy=document(tls_deny(), read_write))
    stack = replace_props(
        stack, DISTRIBUTION, "cdn", origins=[{"originId": "origin", "originAccessControlId": "someone-elses"}]
    )
    assert [violation.message for violation in check_origin_only_via_distribution(stack)] == [
        "statement 1: CloudFront needs s3:GetObject only",
        "origin 'origin' uses an origin access control this stack does not declare",
    ]


def test_iam_resources_outside_the_stack_fail() -> None:
    policy = document(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [f"{BUCKET_ARN}/*", f"{BUCKET_ARN}/simple/x"]},
        {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{BUCKET_ARN}/status.json*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::someone-else/simple/*"},
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": f"arn:aws:sqs:eu-west-1:{ACCOUNT}:other"},
    )
    stack = replace_props(compliant_stack(), IAM_ROLE_POLICY, "sync", policy=policy)
    assert [violation.message for violation in check_iam_resources_in_stack(stack)] == [
        f"policy 'sync': resource '{BUCKET_ARN}/*' is outside this stack's bucket prefixes, queues and distribution",
        f"policy 'sync': resource '{BUCKET_ARN}/status.json*' is outside this stack's bucket prefixes, queues and "
        "distribution",
        "policy 'sync': resource 'arn:aws:s3:::someone-else/simple/*' is outside this stack's bucket prefixes, "
        "queues and distribution",
        f"policy 'sync': resource 'arn:aws:sqs:eu-west-1:{ACCOUNT}:other' is outside this stack's bucket "
        "prefixes, queues and distribution",
    ]


def test_iam_may_name_the_dns_zone_the_stack_writes_records_in() -> None:
    certbot = document(
        {"Effect": "Allow", "Action": "route53:ListHostedZones", "Resource": "*"},
        {"Effect": "Allow", "Action": "route53:GetChange", "Resource": "arn:aws:route53:::change/*"},
        {
            "Effect": "Allow",
            "Action": "route53:ChangeResourceRecordSets",
            "Resource": "arn:aws:route53:::hostedzone/Z1",
        },
    )
    stack = [*compliant_stack(), DeclaredResource(IAM_ROLE_POLICY, "certbot", {"policy": certbot})]
    record = DeclaredResource(DNS_RECORD, "mirror", {"zoneId": "Z1", "name": "pypi.example.org"})
    assert check_iam_resources_in_stack([*stack, record]) == []
    assert [violation.message for violation in check_iam_resources_in_stack(stack)] == [
        "policy 'certbot': resource 'arn:aws:route53:::change/*' is outside this stack's bucket prefixes, queues "
        "and distribution",
        "policy 'certbot': resource 'arn:aws:route53:::hostedzone/Z1' is outside this stack's bucket prefixes, "
        "queues and distribution",
    ]


def test_instances_may_register_themselves_in_the_stack_s_account_and_region_only() -> None:
    instance = DeclaredResource(INSTANCE, "redirector", {"arn": f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0a"})
    instances = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/*"

    def role_policy(*statements: dict) -> DeclaredResource:
        return DeclaredResource(IAM_ROLE_POLICY, "ssm", {"policy": document(*statements)})

    register = {"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": instances}
    assert check_iam_resources_in_stack([*compliant_stack(), instance, role_policy(register)]) == []
    outside = f"policy 'ssm': resource '{instances}' is outside this stack's bucket prefixes, queues and distribution"
    # No instance in the stack; another action on the instances; another region.
    assert [v.message for v in check_iam_resources_in_stack([*compliant_stack(), role_policy(register)])] == [outside]
    stop = {**register, "Action": ["ssm:UpdateInstanceInformation", "ec2:StopInstances"]}
    assert [v.message for v in check_iam_resources_in_stack([instance, role_policy(stop)])] == [outside]
    elsewhere = {**register, "Resource": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/*"}
    assert [v.message for v in check_iam_resources_in_stack([instance, role_policy(elsewhere)])] == [
        outside.replace("eu-west-1", "us-east-1")
    ]


def test_inline_role_policies_are_scoped_too() -> None:
    role = DeclaredResource(
        IAM_ROLE,
        "redirector",
        {
            "inlinePolicies": [
                {"name": "read", "policy": document({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})}
            ]
        },
    )
    violations = check_iam_resources_in_stack([*compliant_stack(), role])
    assert [violation.message for violation in violations] == [
        "role 'redirector' inline policy 'read': resource '*' is outside this stack's bucket prefixes, queues and "
        "distribution"
    ]


def test_distribution_without_access_logs_fails_unless_delivered_by_v2_logging() -> None:
    stack = replace_props(compliant_stack(), DISTRIBUTION, "cdn", loggingConfig=None)
    assert check_access_logs(stack) == [
        Violation(
            "distribution 'cdn' writes no access logs (no loggingConfig.bucket, no ACCESS_LOGS delivery source)",
            "urn:aws:cloudfront/distribution:Distribution::cdn",
        )
    ]
    source = DeclaredResource(
        LOG_DELIVERY_SOURCE, "cdn-logs", {"logType": "ACCESS_LOGS", "resourceArn": DISTRIBUTION_ARN}
    )
    assert check_access_logs([*stack, source]) == []
