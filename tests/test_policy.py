"""The security policy pack: each rule called on passing and failing inputs, then the pack as Pulumi runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policy import rules
from policy.pack import PACK_NAME, POLICIES
from policy.rules import DeclaredResource

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"
ACCOUNT = "123456789012"
BUCKET_ARN = "arn:aws:s3:::pypi-cdn-origin-1a2b3c"
LOGS_BUCKET_ARN = "arn:aws:s3:::pypi-cdn-logs-4d5e6f"
DISTRIBUTION_ARN = f"arn:aws:cloudfront::{ACCOUNT}:distribution/E2ABCDEF"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:pypi-cdn-sync-queue"
FUNCTION_ARN = f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:pypi-cdn-sync"
LOG_GROUP_ARN = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/lambda/pypi-cdn-sync"


def tls_deny(arn: str = BUCKET_ARN) -> dict:
    return {
        "Sid": "TlsOnly",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def cloudfront_read(source_arn: str = DISTRIBUTION_ARN) -> dict:
    return {
        "Effect": "Allow",
        "Principal": {"Service": "cloudfront.amazonaws.com"},
        "Action": "s3:GetObject",
        "Resource": [f"{BUCKET_ARN}/simple/*", f"{BUCKET_ARN}/packages/*"],
        "Condition": {"StringEquals": {"AWS:SourceArn": source_arn}},
    }


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def distribution(**overrides: object) -> dict:
    props: dict = {
        "aliases": ["cdn.pypi.example.org", "pypi.example.org"],
        "viewerCertificate": {
            "acmCertificateArn": "arn:aws:acm:us-east-1:1:certificate/x",
            "minimumProtocolVersion": "TLSv1.2_2021",
            "sslSupportMethod": "sni-only",
        },
        "defaultCacheBehavior": {"viewerProtocolPolicy": "redirect-to-https", "targetOriginId": "origin"},
        "orderedCacheBehaviors": [{"pathPattern": "/packages/*", "viewerProtocolPolicy": "https-only"}],
        "origins": [
            {"originId": "origin", "domainName": "b.s3.eu-west-1.amazonaws.com", "originAccessControlId": "oac-id"}
        ],
        "loggingConfig": {"bucket": "pypi-cdn-logs-4d5e6f.s3.amazonaws.com"},
        "arn": DISTRIBUTION_ARN,
    }
    props.update(overrides)
    return props


# --- bucket not public ---------------------------------------------------------------------------------------


def test_public_access_block_passes_only_with_every_flag_on() -> None:
    all_on: dict[str, bool] = dict.fromkeys(rules.PUBLIC_ACCESS_BLOCK_FLAGS, True)
    assert rules.check_bucket_not_public(rules.BUCKET_PUBLIC_ACCESS_BLOCK, all_on) == []
    one_off = {**all_on, "restrictPublicBuckets": False}
    problems = rules.check_bucket_not_public(rules.BUCKET_PUBLIC_ACCESS_BLOCK, one_off)
    assert problems == ["public access block must set restrictPublicBuckets: true"]
    assert len(rules.check_bucket_not_public(rules.BUCKET_PUBLIC_ACCESS_BLOCK, {})) == 4


def test_public_acls_and_website_endpoints_are_violations() -> None:
    assert rules.check_bucket_not_public(rules.BUCKET, {"bucketPrefix": "pypi-cdn-origin-"}) == []
    assert rules.check_bucket_not_public(rules.BUCKET, {"acl": "private"}) == []
    assert rules.check_bucket_not_public(rules.BUCKET, {"acl": "public-read"}) == [
        "bucket ACL 'public-read' makes it public"
    ]
    assert "website endpoint" in rules.check_bucket_not_public(rules.BUCKET, {"website": {"indexDocument": "i"}})[0]
    everyone = {
        "accessControlPolicy": {
            "grants": [
                {
                    "permission": "READ",
                    "grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"},
                }
            ]
        }
    }
    assert rules.check_bucket_not_public(rules.BUCKET_ACL, everyone) == [
        "bucket ACL grants READ to http://acs.amazonaws.com/groups/global/AllUsers"
    ]


# --- TLS-only bucket policy ----------------------------------------------------------------------------------


def test_bucket_policy_with_tls_deny_passes() -> None:
    props = {"bucket": "b", "policy": document(tls_deny(), cloudfront_read())}
    assert rules.check_bucket_policy_tls_only(rules.BUCKET_POLICY, props) == []


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ({**tls_deny(), "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, "denies TLS instead"),
        ({**tls_deny(), "Resource": [BUCKET_ARN]}, "objects not covered"),
        ({**tls_deny(), "Principal": {"AWS": "arn:aws:iam::1:root"}}, "only one account"),
        ({**tls_deny(), "Action": "s3:PutObject"}, "only one action"),
        ({**tls_deny(), "Effect": "Allow"}, "not a deny"),
    ],
)
def test_bucket_policy_without_a_full_tls_deny_fails(statement: dict, why: str) -> None:
    problems = rules.check_bucket_policy_tls_only(rules.BUCKET_POLICY, {"policy": document(statement)})
    assert problems == [
        "bucket policy must deny s3:* to everyone when aws:SecureTransport is false, on the bucket and bucket/*"
    ], why


def test_bucket_policy_that_is_not_a_document_is_named() -> None:
    assert rules.check_bucket_policy_tls_only(rules.BUCKET_POLICY, {"policy": "{not json"}) == [
        "bucket policy: policy is not valid JSON (Expecting property name enclosed in double quotes)"
    ]
    assert rules.check_bucket_policy_tls_only(rules.BUCKET_POLICY, {}) == ["bucket policy: policy document is missing"]
    assert rules.check_bucket_policy_tls_only(rules.BUCKET_POLICY, {"policy": "[]"}) == [
        "bucket policy: policy must be a JSON object, not list"
    ]


# --- distribution TLS and OAC --------------------------------------------------------------------------------


def test_distribution_with_modern_tls_and_https_passes() -> None:
    assert rules.check_distribution_tls(rules.DISTRIBUTION, distribution()) == []
    assert rules.check_distribution_uses_oac(rules.DISTRIBUTION, distribution()) == []


def test_default_certificate_passes_only_without_aliases() -> None:
    default_certificate = {"cloudfrontDefaultCertificate": True}
    assert rules.check_distribution_tls(rules.DISTRIBUTION, distribution(viewerCertificate=default_certificate)) == [
        "aliases ['cdn.pypi.example.org', 'pypi.example.org'] need an ACM certificate: the default *.cloudfront.net "
        "certificate does not cover them and allows TLSv1 (CloudFront ignores minimumProtocolVersion with it)"
    ]
    for no_aliases in ({"aliases": []}, {"aliases": None}):
        props = distribution(viewerCertificate=default_certificate, **no_aliases)
        assert rules.check_distribution_tls(rules.DISTRIBUTION, props) == []
    plain_http = distribution(
        aliases=[],
        viewerCertificate=default_certificate,
        defaultCacheBehavior={"viewerProtocolPolicy": "allow-all", "targetOriginId": "origin"},
    )
    assert rules.check_distribution_tls(rules.DISTRIBUTION, plain_http) == [
        "cache behavior 'default' must redirect to or require HTTPS, not 'allow-all'"
    ]


def test_acm_certificate_without_a_modern_tls_policy_fails() -> None:
    unset = distribution(viewerCertificate={"acmCertificateArn": "a"})
    assert rules.check_distribution_tls(rules.DISTRIBUTION, unset)[0].startswith(
        "viewerCertificate.minimumProtocolVersion is None"
    )
    old = distribution(viewerCertificate={"acmCertificateArn": "a", "minimumProtocolVersion": "TLSv1.1_2016"})
    assert rules.check_distribution_tls(rules.DISTRIBUTION, old) == [
        "viewerCertificate.minimumProtocolVersion is 'TLSv1.1_2016'; "
        "use one of ['TLSv1.2_2021', 'TLSv1.2_2025', 'TLSv1.3_2025']"
    ]


def test_plain_http_behaviors_and_weak_custom_origins_fail() -> None:
    props = distribution(
        orderedCacheBehaviors=[{"pathPattern": "/simple/*", "viewerProtocolPolicy": "allow-all"}],
        origins=[
            {
                "originId": "pypi",
                "customOriginConfig": {
                    "originProtocolPolicy": "match-viewer",
                    "originSslProtocols": ["TLSv1", "TLSv1.2"],
                },
            }
        ],
    )
    assert rules.check_distribution_tls(rules.DISTRIBUTION, props) == [
        "cache behavior '/simple/*' must redirect to or require HTTPS, not 'allow-all'",
        "origin 'pypi' must be reached over https-only with TLSv1.2",
    ]


def test_s3_origin_without_oac_or_with_legacy_identity_fails() -> None:
    props = distribution(origins=[{"originId": "origin", "s3OriginConfig": {"originAccessIdentity": "oai"}}])
    assert rules.check_distribution_uses_oac(rules.DISTRIBUTION, props) == [
        "S3 origin 'origin' must set originAccessControlId",
        "S3 origin 'origin' uses a legacy origin access identity; use the OAC only",
    ]
    good = {"signingBehavior": "always", "signingProtocol": "sigv4", "originAccessControlOriginType": "s3"}
    assert rules.check_distribution_uses_oac(rules.ORIGIN_ACCESS_CONTROL, good) == []
    unsigned = {**good, "signingBehavior": "no-override"}
    assert rules.check_distribution_uses_oac(rules.ORIGIN_ACCESS_CONTROL, unsigned) == [
        "origin access control must sign always (signingBehavior: always)"
    ]


# --- IMDSv2 --------------------------------------------------------------------------------------------------


def test_imdsv2_required_on_instances_and_launch_templates() -> None:
    required = {"metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled"}}
    assert rules.check_imdsv2(rules.INSTANCE, required) == []
    assert rules.check_imdsv2(rules.LAUNCH_TEMPLATE, required) == []
    assert rules.check_imdsv2(rules.INSTANCE, {"metadataOptions": {"httpTokens": "optional"}}) == [
        "metadataOptions.httpTokens must be 'required' (IMDSv2 only), not 'optional'"
    ]
    assert rules.check_imdsv2(rules.LAUNCH_TEMPLATE, {}) == [
        "metadataOptions.httpTokens must be 'required' (IMDSv2 only), not None"
    ]


# --- ingress -------------------------------------------------------------------------------------------------


def test_web_ports_pass_on_every_kind_of_ingress_rule() -> None:
    group = {
        "ingress": [
            {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["0.0.0.0/0"]},
            {"protocol": "tcp", "fromPort": 443, "toPort": 443, "ipv6CidrBlocks": ["::/0"]},
        ]
    }
    assert rules.check_ingress_web_only(rules.SECURITY_GROUP, group) == []
    standalone = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    assert rules.check_ingress_web_only(rules.SECURITY_GROUP_INGRESS_RULE, standalone) == []
    egress = {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0}
    assert rules.check_ingress_web_only(rules.SECURITY_GROUP_RULE, egress) == []


@pytest.mark.parametrize(
    ("protocol", "low", "high", "message"),
    [
        ("tcp", 22, 22, "ingress 0: opens SSH (port 22); roll the instance (pulumi up) instead of logging in"),
        ("tcp", 0, 65535, "ingress 0: opens SSH (port 22); roll the instance (pulumi up) instead of logging in"),
        ("tcp", 80, 443, "ingress 0: opens tcp 80-443; allow only ports 80 and 443"),
        ("tcp", 8080, 8080, "ingress 0: opens tcp 8080-8080; allow only ports 80 and 443"),
        ("icmp", 443, 443, "ingress 0: opens icmp 443-443; allow only ports 80 and 443"),
        ("-1", 0, 0, "ingress 0: allows every protocol and port; allow only ports 80 and 443"),
    ],
)
def test_other_ingress_fails(protocol: str, low: int, high: int, message: str) -> None:
    assert rules.check_ingress_web_only(
        rules.SECURITY_GROUP_INGRESS_RULE, {"ipProtocol": protocol, "fromPort": low, "toPort": high}
    ) == [message]
    group = {"ingress": [{"protocol": protocol, "fromPort": low, "toPort": high}]}
    assert rules.check_ingress_web_only(rules.SECURITY_GROUP, group) == [message]
    legacy_rule = {"type": "ingress", "protocol": protocol, "fromPort": low, "toPort": high}
    assert rules.check_ingress_web_only(rules.SECURITY_GROUP_RULE, legacy_rule) == [message]


# --- IAM wildcards -------------------------------------------------------------------------------------------


def test_scoped_iam_policy_passes() -> None:
    policy = document({"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": QUEUE_ARN})
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE_POLICY, {"policy": policy}) == []
    trust = document({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE, {"assumeRolePolicy": trust}) == []


def test_wildcard_actions_resources_and_principals_fail() -> None:
    policy = document(
        {"Effect": "Allow", "Action": "*", "Resource": QUEUE_ARN},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": QUEUE_ARN},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    )
    assert rules.check_iam_no_wildcards(rules.IAM_POLICY, {"policy": policy}) == [
        "policy statement 0: action '*' is a wildcard; name the actions",
        "policy statement 1: action 's3:*' is a wildcard; name the actions",
        "policy statement 1: resource '*' is outside this stack; name the ARNs",
        "policy statement 2: Allow with NotAction grants nearly everything",
    ]
    trust = document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    inline = [{"name": "everything", "policy": document({"Effect": "Allow", "Action": "*", "Resource": "*"})}]
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE, {"assumeRolePolicy": trust, "inlinePolicies": inline}) == [
        "trust policy statement 0: principal '*' lets anyone in",
        "inline policy 'everything' statement 0: action '*' is a wildcard; name the actions",
        "inline policy 'everything' statement 0: resource '*' is outside this stack; name the ARNs",
    ]


def test_star_resource_is_allowed_only_for_actions_aws_cannot_scope() -> None:
    lookup = document({"Effect": "Allow", "Action": "route53:ListHostedZones", "Resource": "*"})
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE_POLICY, {"policy": lookup}) == []
    mixed = document({"Effect": "Allow", "Action": ["route53:ListHostedZones", "route53:GetChange"], "Resource": "*"})
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE_POLICY, {"policy": mixed}) == [
        "policy statement 0: resource '*' is outside this stack; name the ARNs"
    ]


def test_aws_managed_policy_attachments_fail_and_own_policies_pass() -> None:
    managed = {"policyArn": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    assert len(rules.check_iam_no_wildcards(rules.IAM_ROLE_POLICY_ATTACHMENT, managed)) == 1
    own = {"policyArn": f"arn:aws:iam::{ACCOUNT}:policy/pypi-cdn-sync"}
    assert rules.check_iam_no_wildcards(rules.IAM_ROLE_POLICY_ATTACHMENT, own) == []


# --- encryption at rest --------------------------------------------------------------------------------------


def test_encryption_at_rest_passes_when_set() -> None:
    sse = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    assert rules.check_encryption_at_rest(rules.BUCKET_ENCRYPTION, sse) == []
    assert rules.check_encryption_at_rest(rules.QUEUE, {"sqsManagedSseEnabled": True}) == []
    assert rules.check_encryption_at_rest(rules.QUEUE, {"kmsMasterKeyId": "alias/aws/sqs"}) == []
    instance = {
        "rootBlockDevice": {"encrypted": True},
        "ebsBlockDevices": [{"deviceName": "/dev/sdb", "encrypted": True}],
    }
    assert rules.check_encryption_at_rest(rules.INSTANCE, instance) == []
    assert rules.check_encryption_at_rest(rules.EBS_VOLUME, {"encrypted": True}) == []


def test_encryption_at_rest_fails_when_missing() -> None:
    assert rules.check_encryption_at_rest(rules.BUCKET_ENCRYPTION, {"rules": []}) == [
        "default encryption must use one of ['AES256', 'aws:kms', 'aws:kms:dsse'], found []"
    ]
    assert rules.check_encryption_at_rest(rules.QUEUE, {"sqsManagedSseEnabled": False}) == [
        "queue must set sqsManagedSseEnabled: true or a kmsMasterKeyId"
    ]
    instance = {"rootBlockDevice": {}, "ebsBlockDevices": [{"deviceName": "/dev/sdb", "encrypted": False}]}
    assert rules.check_encryption_at_rest(rules.INSTANCE, instance) == [
        "root volume must set encrypted: true",
        "volume /dev/sdb must set encrypted: true",
    ]
    assert rules.check_encryption_at_rest(rules.EBS_VOLUME, {}) == ["EBS volume must set encrypted: true"]


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
        (rules.DISTRIBUTION, "cdn", distribution()),
        (rules.ORIGIN_ACCESS_CONTROL, "oac", {"id": "oac-id", "signingBehavior": "always", "signingProtocol": "sigv4"}),
        (rules.QUEUE, "work", {"arn": QUEUE_ARN, "sqsManagedSseEnabled": True}),
        (rules.LAMBDA_FUNCTION, "sync", {"arn": FUNCTION_ARN}),
        (rules.LOG_GROUP, "sync-logs", {"arn": LOG_GROUP_ARN}),
        (rules.IAM_ROLE_POLICY, "sync", {"policy": sync_policy}),
        (rules.BUCKET_POLICY, "origin", {"bucket": "pypi-cdn-origin-1a2b3c", "policy": origin_policy}),
        (rules.BUCKET_POLICY, "logs", {"bucket": "pypi-cdn-logs-4d5e6f", "policy": logs_policy}),
    ]
    for bucket in ("pypi-cdn-origin-1a2b3c", "pypi-cdn-logs-4d5e6f"):
        resources += [
            (rules.BUCKET_PUBLIC_ACCESS_BLOCK, bucket, {"bucket": bucket}),
            (rules.BUCKET_ENCRYPTION, bucket, {"bucket": bucket}),
        ]
    return [DeclaredResource(kind, name, props, urn=f"urn:{kind}::{name}") for kind, name, props in resources]


def replace_props(stack: list[DeclaredResource], kind: str, name: str, **props: object) -> list[DeclaredResource]:
    return [
        DeclaredResource(r.type, r.name, {**r.props, **props}, r.urn) if (r.type, r.name) == (kind, name) else r
        for r in stack
    ]


def without(stack: list[DeclaredResource], kind: str, name: str) -> list[DeclaredResource]:
    return [r for r in stack if (r.type, r.name) != (kind, name)]


@pytest.mark.parametrize("rule", rules.STACK_RULES, ids=lambda rule: rule.name)
def test_compliant_stack_passes_every_stack_rule(rule: rules.StackRule) -> None:
    assert rule.check(compliant_stack()) == []


def test_bucket_without_its_guards_fails() -> None:
    stack = without(
        without(compliant_stack(), rules.BUCKET_PUBLIC_ACCESS_BLOCK, "pypi-cdn-logs-4d5e6f"),
        rules.BUCKET_POLICY,
        "origin",
    )
    assert rules.check_buckets_covered(stack) == [
        rules.Violation("bucket 'origin' has no bucket policy (TLS only)", "urn:aws:s3/bucket:Bucket::origin"),
        rules.Violation("bucket 'logs' has no public access block", "urn:aws:s3/bucket:Bucket::logs"),
    ]


def test_bucket_policy_for_another_distribution_or_principal_fails() -> None:
    other = f"arn:aws:cloudfront::{ACCOUNT}:distribution/EOTHER"
    stack = replace_props(
        compliant_stack(),
        rules.BUCKET_POLICY,
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
    messages = [violation.message for violation in rules.check_origin_only_via_distribution(stack)]
    assert messages == [
        f"statement 1: CloudFront may read only for this stack's distribution (StringEquals AWS:SourceArn), "
        f"found ['{other}']",
        "statement 2: allows {'AWS': 'arn:aws:iam::999999999999:root'}; a bucket of this stack grants only "
        "CloudFront (via this distribution's OAC) and log delivery",
        "statement 3: CloudFront may read only for this stack's distribution (StringEquals AWS:SourceArn), found []",
    ]


def test_cloudfront_granted_more_than_reads_or_foreign_oac_fails() -> None:
    read_write = {**cloudfront_read(), "Action": ["s3:GetObject", "s3:PutObject"]}
    stack = replace_props(compliant_stack(), rules.BUCKET_POLICY, "origin", policy=document(tls_deny(), read_write))
    stack = replace_props(
        stack, rules.DISTRIBUTION, "cdn", origins=[{"originId": "origin", "originAccessControlId": "someone-elses"}]
    )
    assert [violation.message for violation in rules.check_origin_only_via_distribution(stack)] == [
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
    stack = replace_props(compliant_stack(), rules.IAM_ROLE_POLICY, "sync", policy=policy)
    assert [violation.message for violation in rules.check_iam_resources_in_stack(stack)] == [
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
    stack = [*compliant_stack(), DeclaredResource(rules.IAM_ROLE_POLICY, "certbot", {"policy": certbot})]
    record = DeclaredResource(rules.DNS_RECORD, "mirror", {"zoneId": "Z1", "name": "pypi.example.org"})
    assert rules.check_iam_resources_in_stack([*stack, record]) == []
    assert [violation.message for violation in rules.check_iam_resources_in_stack(stack)] == [
        "policy 'certbot': resource 'arn:aws:route53:::change/*' is outside this stack's bucket prefixes, queues "
        "and distribution",
        "policy 'certbot': resource 'arn:aws:route53:::hostedzone/Z1' is outside this stack's bucket prefixes, "
        "queues and distribution",
    ]


def test_instances_may_register_themselves_in_the_stack_s_account_and_region_only() -> None:
    instance = DeclaredResource(rules.INSTANCE, "redirector", {"arn": f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-0a"})
    instances = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/*"

    def role_policy(*statements: dict) -> DeclaredResource:
        return DeclaredResource(rules.IAM_ROLE_POLICY, "ssm", {"policy": document(*statements)})

    register = {"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": instances}
    assert rules.check_iam_resources_in_stack([*compliant_stack(), instance, role_policy(register)]) == []
    outside = f"policy 'ssm': resource '{instances}' is outside this stack's bucket prefixes, queues and distribution"
    # No instance in the stack; another action on the instances; another region.
    assert [v.message for v in rules.check_iam_resources_in_stack([*compliant_stack(), role_policy(register)])] == [
        outside
    ]
    stop = {**register, "Action": ["ssm:UpdateInstanceInformation", "ec2:StopInstances"]}
    assert [v.message for v in rules.check_iam_resources_in_stack([instance, role_policy(stop)])] == [outside]
    elsewhere = {**register, "Resource": f"arn:aws:ec2:us-east-1:{ACCOUNT}:instance/*"}
    assert [v.message for v in rules.check_iam_resources_in_stack([instance, role_policy(elsewhere)])] == [
        outside.replace("eu-west-1", "us-east-1")
    ]


def test_inline_role_policies_are_scoped_too() -> None:
    role = DeclaredResource(
        rules.IAM_ROLE,
        "redirector",
        {
            "inlinePolicies": [
                {"name": "read", "policy": document({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})}
            ]
        },
    )
    violations = rules.check_iam_resources_in_stack([*compliant_stack(), role])
    assert [violation.message for violation in violations] == [
        "role 'redirector' inline policy 'read': resource '*' is outside this stack's bucket prefixes, queues and "
        "distribution"
    ]


def test_distribution_without_access_logs_fails_unless_delivered_by_v2_logging() -> None:
    stack = replace_props(compliant_stack(), rules.DISTRIBUTION, "cdn", loggingConfig=None)
    assert rules.check_access_logs(stack) == [
        rules.Violation(
            "distribution 'cdn' writes no access logs (no loggingConfig.bucket, no ACCESS_LOGS delivery source)",
            "urn:aws:cloudfront/distribution:Distribution::cdn",
        )
    ]
    source = DeclaredResource(
        rules.LOG_DELIVERY_SOURCE, "cdn-logs", {"logType": "ACCESS_LOGS", "resourceArn": DISTRIBUTION_ARN}
    )
    assert rules.check_access_logs([*stack, source]) == []


# --- the pack as pulumi runs it ------------------------------------------------------------------------------


def test_every_rule_is_a_mandatory_policy_with_a_unique_name() -> None:
    names = [policy.name for policy in POLICIES]
    assert names == [rule.name for rule in (*rules.RESOURCE_RULES, *rules.STACK_RULES)]
    assert len(set(names)) == len(names) == 12
    assert {str(policy.enforcement_level) for policy in POLICIES} == {"EnforcementLevel.MANDATORY"}


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack started as `pulumi preview --policy-pack policy` starts it: `python -m pulumi.policy` in policy/."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, props: dict) -> list[tuple[str, str, int]]:
    properties = struct_pb2.Struct()
    properties.update(props)
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=properties, name="r", urn=f"urn:pulumi:ci::pypi-cdn::{resource_type}::r"
    )
    response = stub.Analyze(request, timeout=20)
    return [(d.policyName, d.message, d.enforcementLevel) for d in response.diagnostics]


def test_pack_serves_its_policies_to_the_engine(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
    assert info.name == PACK_NAME
    assert [policy.name for policy in info.policies] == [policy.name for policy in POLICIES]


def test_pack_reports_a_violation_as_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    diagnostics = analyze(
        analyzer,
        rules.INSTANCE,
        {"metadataOptions": {"httpTokens": "optional"}, "rootBlockDevice": {"encrypted": True}},
    )
    assert diagnostics == [
        (
            "ec2-imdsv2-required",
            "instances accept only IMDSv2\nmetadataOptions.httpTokens must be 'required' (IMDSv2 only), not 'optional'",
            analyzer_pb2.MANDATORY,
        )
    ]
    assert (
        analyze(
            analyzer,
            rules.INSTANCE,
            {"metadataOptions": {"httpTokens": "required"}, "rootBlockDevice": {"encrypted": True}},
        )
        == []
    )


def test_pack_defers_a_rule_whose_input_is_unknown_in_preview(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    diagnostics = analyze(analyzer, rules.BUCKET_POLICY, {"bucket": "b", "policy": UNKNOWN_STRING_VALUE})
    assert [(name, level) for name, _, level in diagnostics] == [("s3-bucket-policy-tls-only", analyzer_pb2.ADVISORY)]
    assert "can't be known during preview" in diagnostics[0][1]


# --- the program as shipped, under mocks ---------------------------------------------------------------------

# tests/infra_mocks.py reports each resource's inputs; stack rules also need its id and computed outputs, so the
# harness runs with its mocks' new_resource wrapped to keep them.
HARNESS_WITH_OUTPUTS = """
from tests import infra_mocks
answer = infra_mocks.RecordingMocks.new_resource
def new_resource(self, args):
    resource_id, state = answer(self, args)
    self.resources[-1]["outputs"] = {**state, "id": resource_id}
    return resource_id, state
infra_mocks.RecordingMocks.new_resource = new_resource
infra_mocks.main()
"""
DOMAIN = {"domain": "pypi.example.org", "zoneName": "example.org", "alarmEmail": "ops@example.org"}


def pack_violations(config: dict[str, object], region: str) -> list[tuple[str, str, str]]:
    """(policy, resource, message) for every violation the pack finds in the mocked program with `config`."""
    request = json.dumps({"config": config, "stack": "policy", "region": region, "program": str(ROOT / "__main__.py")})
    result = subprocess.run(
        [sys.executable, "-c", HARNESS_WITH_OUTPUTS],
        input=request,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["error"] is None, report["error"]
    judged = {resource["type"] for resource in report["resources"]}
    assert {rules.BUCKET, rules.BUCKET_POLICY, rules.DISTRIBUTION, rules.IAM_ROLE, rules.IAM_ROLE_POLICY} <= judged
    found = [
        (rule.name, resource["name"], message)
        for resource in report["resources"]
        for rule in rules.RESOURCE_RULES
        for message in rule.check(resource["type"], resource["inputs"])
    ]
    declared = [
        DeclaredResource(resource["type"], resource["name"], resource["outputs"], resource["name"])
        for resource in report["resources"]
    ]
    found += [
        (rule.name, violation.urn, violation.message)
        for rule in rules.STACK_RULES
        for violation in rule.check(declared)
    ]
    return found


@pytest.mark.parametrize(
    ("config", "region"),
    [
        ({**DOMAIN, "redirectors": 0}, "eu-west-1"),
        ({**DOMAIN, "redirectors": 2}, "eu-west-1"),
        ({**DOMAIN, "redirectors": 3}, "us-east-1"),
        ({}, "eu-west-1"),
    ],
    ids=["domain-no-redirectors", "domain-2-redirectors", "domain-3-redirectors-us-east-1", "no-domain"],
)
def test_program_as_shipped_passes_the_pack(config: dict[str, object], region: str) -> None:
    assert pack_violations(config, region) == []
