"""The per-resource security rules, each called on passing and failing inputs."""

from __future__ import annotations

import pytest

from policy.resource_rules import (
    PUBLIC_ACCESS_BLOCK_FLAGS,
    check_bucket_not_public,
    check_bucket_policy_tls_only,
    check_distribution_tls,
    check_distribution_uses_oac,
    check_encryption_at_rest,
    check_iam_no_wildcards,
    check_imdsv2,
    check_ingress_web_only,
)
from policy.resources import (
    BUCKET,
    BUCKET_ACL,
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    DISTRIBUTION,
    EBS_VOLUME,
    IAM_POLICY,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    IAM_ROLE_POLICY_ATTACHMENT,
    INSTANCE,
    LAUNCH_TEMPLATE,
    ORIGIN_ACCESS_CONTROL,
    QUEUE,
    SECURITY_GROUP,
    SECURITY_GROUP_INGRESS_RULE,
    SECURITY_GROUP_RULE,
)
from tests.policy_inputs import (
    ACCOUNT,
    BUCKET_ARN,
    QUEUE_ARN,
    cloudfront_read,
    distribution,
    document,
    tls_deny,
)

# --- bucket not public ---------------------------------------------------------------------------------------


def test_public_access_block_passes_only_with_every_flag_on() -> None:
    all_on: dict[str, bool] = dict.fromkeys(PUBLIC_ACCESS_BLOCK_FLAGS, True)
    assert check_bucket_not_public(BUCKET_PUBLIC_ACCESS_BLOCK, all_on) == []
    one_off = {**all_on, "restrictPublicBuckets": False}
    problems = check_bucket_not_public(BUCKET_PUBLIC_ACCESS_BLOCK, one_off)
    assert problems == ["public access block must set restrictPublicBuckets: true"]
    assert len(check_bucket_not_public(BUCKET_PUBLIC_ACCESS_BLOCK, {})) == 4


def test_public_acls_and_website_endpoints_are_violations() -> None:
    assert check_bucket_not_public(BUCKET, {"bucketPrefix": "pypi-cdn-origin-"}) == []
    assert check_bucket_not_public(BUCKET, {"acl": "private"}) == []
    assert check_bucket_not_public(BUCKET, {"acl": "public-read"}) == ["bucket ACL 'public-read' makes it public"]
    assert "website endpoint" in check_bucket_not_public(BUCKET, {"website": {"indexDocument": "i"}})[0]
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
    assert check_bucket_not_public(BUCKET_ACL, everyone) == [
        "bucket ACL grants READ to http://acs.amazonaws.com/groups/global/AllUsers"
    ]


# --- TLS-only bucket policy ----------------------------------------------------------------------------------


def test_bucket_policy_with_tls_deny_passes() -> None:
    props = {"bucket": "b", "policy": document(tls_deny(), cloudfront_read())}
    assert check_bucket_policy_tls_only(BUCKET_POLICY, props) == []


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
    problems = check_bucket_policy_tls_only(BUCKET_POLICY, {"policy": document(statement)})
    assert problems == [
        "bucket policy must deny s3:* to everyone when aws:SecureTransport is false, on the bucket and bucket/*"
    ], why


def test_bucket_policy_that_is_not_a_document_is_named() -> None:
    assert check_bucket_policy_tls_only(BUCKET_POLICY, {"policy": "{not json"}) == [
        "bucket policy: policy is not valid JSON (Expecting property name enclosed in double quotes)"
    ]
    assert check_bucket_policy_tls_only(BUCKET_POLICY, {}) == ["bucket policy: policy document is missing"]
    assert check_bucket_policy_tls_only(BUCKET_POLICY, {"policy": "[]"}) == [
        "bucket policy: policy must be a JSON object, not list"
    ]


# --- distribution TLS and OAC --------------------------------------------------------------------------------


def test_distribution_with_modern_tls_and_https_passes() -> None:
    assert check_distribution_tls(DISTRIBUTION, distribution()) == []
    assert check_distribution_uses_oac(DISTRIBUTION, distribution()) == []


def test_default_certificate_passes_only_without_aliases() -> None:
    default_certificate = {"cloudfrontDefaultCertificate": True}
    assert check_distribution_tls(DISTRIBUTION, distribution(viewerCertificate=default_certificate)) == [
        "aliases ['cdn.pypi.example.org', 'pypi.example.org'] need an ACM certificate: the default *.cloudfront.net "
        "certificate does not cover them and allows TLSv1 (CloudFront ignores minimumProtocolVersion with it)"
    ]
    for no_aliases in ({"aliases": []}, {"aliases": None}):
        props = distribution(viewerCertificate=default_certificate, **no_aliases)
        assert check_distribution_tls(DISTRIBUTION, props) == []
    plain_http = distribution(
        aliases=[],
        viewerCertificate=default_certificate,
        defaultCacheBehavior={"viewerProtocolPolicy": "allow-all", "targetOriginId": "origin"},
    )
    assert check_distribution_tls(DISTRIBUTION, plain_http) == [
        "cache behavior 'default' must redirect to or require HTTPS, not 'allow-all'"
    ]


def test_acm_certificate_without_a_modern_tls_policy_fails() -> None:
    unset = distribution(viewerCertificate={"acmCertificateArn": "a"})
    assert check_distribution_tls(DISTRIBUTION, unset)[0].startswith("viewerCertificate.minimumProtocolVersion is None")
    old = distribution(viewerCertificate={"acmCertificateArn": "a", "minimumProtocolVersion": "TLSv1.1_2016"})
    assert check_distribution_tls(DISTRIBUTION, old) == [
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
    assert check_distribution_tls(DISTRIBUTION, props) == [
        "cache behavior '/simple/*' must redirect to or require HTTPS, not 'allow-all'",
        "origin 'pypi' must be reached over https-only with TLSv1.2",
    ]


def test_s3_origin_without_oac_or_with_legacy_identity_fails() -> None:
    props = distribution(origins=[{"originId": "origin", "s3OriginConfig": {"originAccessIdentity": "oai"}}])
    assert check_distribution_uses_oac(DISTRIBUTION, props) == [
        "S3 origin 'origin' must set originAccessControlId",
        "S3 origin 'origin' uses a legacy origin access identity; use the OAC only",
    ]
    good = {"signingBehavior": "always", "signingProtocol": "sigv4", "originAccessControlOriginType": "s3"}
    assert check_distribution_uses_oac(ORIGIN_ACCESS_CONTROL, good) == []
    unsigned = {**good, "signingBehavior": "no-override"}
    assert check_distribution_uses_oac(ORIGIN_ACCESS_CONTROL, unsigned) == [
        "origin access control must sign always (signingBehavior: always)"
    ]


# --- IMDSv2 --------------------------------------------------------------------------------------------------


def test_imdsv2_required_on_instances_and_launch_templates() -> None:
    required = {"metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled"}}
    assert check_imdsv2(INSTANCE, required) == []
    assert check_imdsv2(LAUNCH_TEMPLATE, required) == []
    assert check_imdsv2(INSTANCE, {"metadataOptions": {"httpTokens": "optional"}}) == [
        "metadataOptions.httpTokens must be 'required' (IMDSv2 only), not 'optional'"
    ]
    assert check_imdsv2(LAUNCH_TEMPLATE, {}) == [
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
    assert check_ingress_web_only(SECURITY_GROUP, group) == []
    standalone = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    assert check_ingress_web_only(SECURITY_GROUP_INGRESS_RULE, standalone) == []
    egress = {"type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0}
    assert check_ingress_web_only(SECURITY_GROUP_RULE, egress) == []


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
    assert check_ingress_web_only(
        SECURITY_GROUP_INGRESS_RULE, {"ipProtocol": protocol, "fromPort": low, "toPort": high}
    ) == [message]
    group = {"ingress": [{"protocol": protocol, "fromPort": low, "toPort": high}]}
    assert check_ingress_web_only(SECURITY_GROUP, group) == [message]
    legacy_rule = {"type": "ingress", "protocol": protocol, "fromPort": low, "toPort": high}
    assert check_ingress_web_only(SECURITY_GROUP_RULE, legacy_rule) == [message]


# --- IAM wildcards -------------------------------------------------------------------------------------------


def test_scoped_iam_policy_passes() -> None:
    policy = document({"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage"], "Resource": QUEUE_ARN})
    assert check_iam_no_wildcards(IAM_ROLE_POLICY, {"policy": policy}) == []
    trust = document({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"})
    assert check_iam_no_wildcards(IAM_ROLE, {"assumeRolePolicy": trust}) == []


def test_wildcard_actions_resources_and_principals_fail() -> None:
    policy = document(
        {"Effect": "Allow", "Action": "*", "Resource": QUEUE_ARN},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": QUEUE_ARN},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    )
    assert check_iam_no_wildcards(IAM_POLICY, {"policy": policy}) == [
        "policy statement 0: action '*' is a wildcard; name the actions",
        "policy statement 1: action 's3:*' is a wildcard; name the actions",
        "policy statement 1: resource '*' is outside this stack; name the ARNs",
        "policy statement 2: Allow with NotAction grants nearly everything",
    ]
    trust = document({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"})
    inline = [{"name": "everything", "policy": document({"Effect": "Allow", "Action": "*", "Resource": "*"})}]
    assert check_iam_no_wildcards(IAM_ROLE, {"assumeRolePolicy": trust, "inlinePolicies": inline}) == [
        "trust policy statement 0: principal '*' lets anyone in",
        "inline policy 'everything' statement 0: action '*' is a wildcard; name the actions",
        "inline policy 'everything' statement 0: resource '*' is outside this stack; name the ARNs",
    ]


def test_star_resource_is_allowed_only_for_actions_aws_cannot_scope() -> None:
    lookup = document({"Effect": "Allow", "Action": "route53:ListHostedZones", "Resource": "*"})
    assert check_iam_no_wildcards(IAM_ROLE_POLICY, {"policy": lookup}) == []
    mixed = document({"Effect": "Allow", "Action": ["route53:ListHostedZones", "route53:GetChange"], "Resource": "*"})
    assert check_iam_no_wildcards(IAM_ROLE_POLICY, {"policy": mixed}) == [
        "policy statement 0: resource '*' is outside this stack; name the ARNs"
    ]


def test_aws_managed_policy_attachments_fail_and_own_policies_pass() -> None:
    managed = {"policyArn": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}
    assert len(check_iam_no_wildcards(IAM_ROLE_POLICY_ATTACHMENT, managed)) == 1
    own = {"policyArn": f"arn:aws:iam::{ACCOUNT}:policy/pypi-cdn-sync"}
    assert check_iam_no_wildcards(IAM_ROLE_POLICY_ATTACHMENT, own) == []


# --- encryption at rest --------------------------------------------------------------------------------------


def test_encryption_at_rest_passes_when_set() -> None:
    sse = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    assert check_encryption_at_rest(BUCKET_ENCRYPTION, sse) == []
    assert check_encryption_at_rest(QUEUE, {"sqsManagedSseEnabled": True}) == []
    assert check_encryption_at_rest(QUEUE, {"kmsMasterKeyId": "alias/aws/sqs"}) == []
    instance = {
        "rootBlockDevice": {"encrypted": True},
        "ebsBlockDevices": [{"deviceName": "/dev/sdb", "encrypted": True}],
    }
    assert check_encryption_at_rest(INSTANCE, instance) == []
    assert check_encryption_at_rest(EBS_VOLUME, {"encrypted": True}) == []


def test_encryption_at_rest_fails_when_missing() -> None:
    assert check_encryption_at_rest(BUCKET_ENCRYPTION, {"rules": []}) == [
        "default encryption must use one of ['AES256', 'aws:kms', 'aws:kms:dsse'], found []"
    ]
    assert check_encryption_at_rest(QUEUE, {"sqsManagedSseEnabled": False}) == [
        "queue must set sqsManagedSseEnabled: true or a kmsMasterKeyId"
    ]
    instance = {"rootBlockDevice": {}, "ebsBlockDevices": [{"deviceName": "/dev/sdb", "encrypted": False}]}
    assert check_encryption_at_rest(INSTANCE, instance) == [
        "root volume must set encrypted: true",
        "volume /dev/sdb must set encrypted: true",
    ]
    assert check_encryption_at_rest(EBS_VOLUME, {}) == ["EBS volume must set encrypted: true"]
