"""Who may do what from GitHub Actions: the IAM documents of the bootstrap stack, as pure functions.

Two roles trust GitHub's OIDC provider. Pull-request previews assume a read-only role; `pulumi up` from the
`production` environment assumes a deploy role whose permissions are limited to resources named with the main
stack's prefix (or, where AWS generates the identifier, to this account and region). Both use the Pulumi state
bucket and the secrets key the bootstrap stack creates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_URL = f"https://{OIDC_HOST}"
AUDIENCE = "sts.amazonaws.com"
READ_ONLY_POLICY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"
REPOSITORY = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}\Z")
ENVIRONMENT = re.compile(r"\A[A-Za-z0-9._ -]{1,255}\Z")
NAME_PREFIX = re.compile(r"\A[a-z0-9][a-z0-9-]{1,30}\Z")
SERVICES_ROLES_ARE_PASSED_TO = ["lambda.amazonaws.com", "ec2.amazonaws.com", "scheduler.amazonaws.com"]

Document = dict[str, Any]


class BootstrapConfigError(ValueError):
    """A bootstrap configuration value is invalid; the message names the key."""


@dataclass(frozen=True)
class BootstrapConfig:
    """The bootstrap stack's settings (`pypi-cdn-bootstrap:*` config keys)."""

    github_repository: str
    environment: str = "production"
    name_prefix: str = "pypi-cdn"
    existing_oidc_provider_arn: str | None = None


def parse_bootstrap_config(
    github_repository: str | None,
    environment: str | None = None,
    name_prefix: str | None = None,
    existing_oidc_provider_arn: str | None = None,
) -> BootstrapConfig:
    """Validate the raw config values (None: unset) into a BootstrapConfig."""
    if not github_repository or not REPOSITORY.match(github_repository):
        raise BootstrapConfigError(
            "pypi-cdn-bootstrap:githubRepository: expected OWNER/NAME of the GitHub repository, "
            f"got {github_repository!r}"
        )
    environment = environment or BootstrapConfig.environment
    if not ENVIRONMENT.match(environment):
        raise BootstrapConfigError(f"pypi-cdn-bootstrap:environment: {environment!r} is not a GitHub environment name")
    name_prefix = name_prefix or BootstrapConfig.name_prefix
    if not NAME_PREFIX.match(name_prefix):
        raise BootstrapConfigError(
            f"pypi-cdn-bootstrap:namePrefix: {name_prefix!r} must be 2-31 lowercase letters, digits or hyphens"
        )
    if existing_oidc_provider_arn is not None and not existing_oidc_provider_arn.endswith(f"oidc-provider/{OIDC_HOST}"):
        raise BootstrapConfigError(
            f"pypi-cdn-bootstrap:existingOidcProviderArn: {existing_oidc_provider_arn!r} is not the ARN of "
            f"an IAM OIDC provider for {OIDC_HOST}"
        )
    return BootstrapConfig(github_repository, environment, name_prefix, existing_oidc_provider_arn)


def bootstrap_name(name_prefix: str, purpose: str) -> str:
    """Name of a bootstrap resource: it starts with `ci-`, so the deploy role's `<name_prefix>*` scope misses it
    (the deploy role must not be able to rewrite its own permissions or the state bucket's settings)."""
    return f"ci-{name_prefix}-{purpose}"


def pull_request_subject(repository: str) -> str:
    """The `sub` claim of a job run for a pull request."""
    return f"repo:{repository}:pull_request"


def environment_subject(repository: str, environment: str) -> str:
    """The `sub` claim of a job that declares `environment:`."""
    return f"repo:{repository}:environment:{environment}"


def github_trust_policy(provider_arn: str, subject: str) -> Document:
    """Let exactly the GitHub jobs whose token carries `subject` (and our audience) assume the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{OIDC_HOST}:aud": AUDIENCE, f"{OIDC_HOST}:sub": subject},
                },
            }
        ],
    }


def _statement(sid: str, actions: list[str], resources: list[str], condition: Document | None = None) -> Document:
    statement: Document = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def tls_only_bucket_policy(bucket_arn: str) -> str:
    """The state bucket's policy (JSON): refuse every request made without TLS."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def state_access_policy(state_bucket_arn: str, secrets_key_arn: str, *, deploy: bool) -> Document:
    """Pulumi state and secrets: previews read state, write only locks and decrypt; deploys read and write."""
    object_resources = [f"{state_bucket_arn}/*"] if deploy else [f"{state_bucket_arn}/.pulumi/locks/*"]
    key_actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"] if deploy else ["kms:Decrypt"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            _statement("StateList", ["s3:ListBucket", "s3:GetBucketLocation"], [state_bucket_arn]),
            _statement("StateRead", ["s3:GetObject"], [f"{state_bucket_arn}/*"]),
            _statement("StateWrite", ["s3:PutObject", "s3:DeleteObject"], object_resources),
            _statement("SecretsKey", key_actions, [secrets_key_arn]),
        ],
    }


def deploy_policy(account_id: str, region: str, name_prefix: str) -> Document:
    """What `pulumi up` of the main stack needs, on resources named `<name_prefix>*` wherever AWS lets us say so.

    The main stack's physical names start with its project name through `pulumi:autonaming` (set in Pulumi.yaml).
    CloudFront, ACM, Route53, EC2 and log deliveries identify resources by IDs AWS generates; those statements are
    bounded by the account (and region) instead.
    """
    prefix = f"{name_prefix}*"
    account = account_id
    statements = [
        _statement(
            "Buckets",
            [
                "s3:CreateBucket",
                "s3:DeleteBucket",
                "s3:Get*",
                "s3:List*",
                "s3:Put*",
                "s3:DeleteBucketPolicy",
                "s3:DeleteObject",
                "s3:DeleteObjectVersion",
            ],
            [f"arn:aws:s3:::{prefix}", f"arn:aws:s3:::{prefix}/*"],
        ),
        _statement(
            "Roles",
            [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:UpdateAssumeRolePolicy",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:ListRolePolicies",
                "iam:ListAttachedRolePolicies",
                "iam:ListInstanceProfilesForRole",
                "iam:CreateInstanceProfile",
                "iam:DeleteInstanceProfile",
                "iam:GetInstanceProfile",
                "iam:TagInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
            ],
            [f"arn:aws:iam::{account}:role/{prefix}", f"arn:aws:iam::{account}:instance-profile/{prefix}"],
        ),
        _statement(
            "PassRoles",
            ["iam:PassRole"],
            [f"arn:aws:iam::{account}:role/{prefix}"],
            {"StringEquals": {"iam:PassedToService": SERVICES_ROLES_ARE_PASSED_TO}},
        ),
        _statement(
            "Functions",
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:GetFunctionConfiguration",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetPolicy",
                "lambda:ListVersionsByFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
                "lambda:PutFunctionConcurrency",
                "lambda:DeleteFunctionConcurrency",
                "lambda:GetFunctionConcurrency",
                "lambda:PublishVersion",
            ],
            [f"arn:aws:lambda:{region}:{account}:function:{prefix}"],
        ),
        _statement(
            "EventSourceMappings",
            [
                "lambda:CreateEventSourceMapping",
                "lambda:GetEventSourceMapping",
                "lambda:UpdateEventSourceMapping",
                "lambda:DeleteEventSourceMapping",
                "lambda:ListEventSourceMappings",
            ],
            [f"arn:aws:lambda:{region}:{account}:event-source-mapping:*"],
        ),
        _statement(
            "Queues",
            [
                "sqs:CreateQueue",
                "sqs:DeleteQueue",
                "sqs:GetQueueAttributes",
                "sqs:SetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:TagQueue",
                "sqs:UntagQueue",
                "sqs:ListQueueTags",
            ],
            [f"arn:aws:sqs:{region}:{account}:{prefix}"],
        ),
        _statement(
            "LogGroups",
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:ListTagsForResource",
                "logs:DescribeLogGroups",
            ],
            [
                f"arn:aws:logs:{region}:{account}:log-group:{prefix}",
                f"arn:aws:logs:{region}:{account}:log-group:/{name_prefix}/*",
                f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{prefix}",
            ],
        ),
        _statement(
            "AccessLogDelivery",
            [
                "logs:PutDeliverySource",
                "logs:GetDeliverySource",
                "logs:DeleteDeliverySource",
                "logs:PutDeliveryDestination",
                "logs:GetDeliveryDestination",
                "logs:DeleteDeliveryDestination",
                "logs:CreateDelivery",
                "logs:GetDelivery",
                "logs:DeleteDelivery",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:ListTagsForResource",
            ],
            [
                f"arn:aws:logs:us-east-1:{account}:delivery-source:*",
                f"arn:aws:logs:us-east-1:{account}:delivery-destination:*",
                f"arn:aws:logs:us-east-1:{account}:delivery:*",
            ],
        ),
        _statement(
            "Alarms",
            [
                "cloudwatch:PutMetricAlarm",
                "cloudwatch:DeleteAlarms",
                "cloudwatch:DescribeAlarms",
                "cloudwatch:TagResource",
                "cloudwatch:UntagResource",
                "cloudwatch:ListTagsForResource",
            ],
            [f"arn:aws:cloudwatch:*:{account}:alarm:{prefix}"],
        ),
        _statement(
            "Dashboards",
            ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
            [f"arn:aws:cloudwatch::{account}:dashboard/{prefix}"],
        ),
        _statement(
            "AlarmTopics",
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:Unsubscribe",
                "sns:GetSubscriptionAttributes",
                "sns:SetSubscriptionAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:TagResource",
                "sns:UntagResource",
                "sns:ListTagsForResource",
            ],
            [f"arn:aws:sns:*:{account}:{prefix}"],
        ),
        _statement(
            "Schedules",
            [
                "scheduler:CreateSchedule",
                "scheduler:GetSchedule",
                "scheduler:UpdateSchedule",
                "scheduler:DeleteSchedule",
                "scheduler:TagResource",
                "scheduler:UntagResource",
                "scheduler:ListTagsForResource",
            ],
            [f"arn:aws:scheduler:{region}:{account}:schedule/*/{prefix}"],
        ),
        _statement(
            "EdgeFunctions",
            [
                "cloudfront:CreateFunction",
                "cloudfront:DescribeFunction",
                "cloudfront:GetFunction",
                "cloudfront:UpdateFunction",
                "cloudfront:PublishFunction",
                "cloudfront:DeleteFunction",
            ],
            [f"arn:aws:cloudfront::{account}:function/{prefix}"],
        ),
        _statement(
            "Distributions",
            [
                "cloudfront:CreateDistribution",
                "cloudfront:CreateDistributionWithTags",
                "cloudfront:GetDistribution",
                "cloudfront:GetDistributionConfig",
                "cloudfront:UpdateDistribution",
                "cloudfront:DeleteDistribution",
                "cloudfront:TagResource",
                "cloudfront:UntagResource",
                "cloudfront:ListTagsForResource",
                "cloudfront:CreateInvalidation",
                "cloudfront:GetInvalidation",
                "cloudfront:AllowVendedLogDeliveryForResource",
                "cloudfront:CreateMonitoringSubscription",
                "cloudfront:GetMonitoringSubscription",
                "cloudfront:DeleteMonitoringSubscription",
                "cloudfront:CreateOriginAccessControl",
                "cloudfront:GetOriginAccessControl",
                "cloudfront:UpdateOriginAccessControl",
                "cloudfront:DeleteOriginAccessControl",
                "cloudfront:CreateCachePolicy",
                "cloudfront:GetCachePolicy",
                "cloudfront:UpdateCachePolicy",
                "cloudfront:DeleteCachePolicy",
                "cloudfront:CreateResponseHeadersPolicy",
                "cloudfront:GetResponseHeadersPolicy",
                "cloudfront:UpdateResponseHeadersPolicy",
                "cloudfront:DeleteResponseHeadersPolicy",
            ],
            [
                f"arn:aws:cloudfront::{account}:distribution/*",
                f"arn:aws:cloudfront::{account}:origin-access-control/*",
                f"arn:aws:cloudfront::{account}:cache-policy/*",
                f"arn:aws:cloudfront::{account}:response-headers-policy/*",
            ],
        ),
        _statement(
            "Certificates",
            [
                "acm:DescribeCertificate",
                "acm:DeleteCertificate",
                "acm:ListTagsForCertificate",
                "acm:AddTagsToCertificate",
                "acm:RemoveTagsFromCertificate",
            ],
            [f"arn:aws:acm:us-east-1:{account}:certificate/*"],
        ),
        _statement(
            "Dns",
            [
                "route53:GetHostedZone",
                "route53:ListResourceRecordSets",
                "route53:ChangeResourceRecordSets",
                "route53:GetChange",
                "route53:CreateHealthCheck",
                "route53:GetHealthCheck",
                "route53:UpdateHealthCheck",
                "route53:DeleteHealthCheck",
                "route53:ChangeTagsForResource",
                "route53:ListTagsForResource",
            ],
            ["arn:aws:route53:::hostedzone/*", "arn:aws:route53:::change/*", "arn:aws:route53:::healthcheck/*"],
        ),
        _statement(
            "Redirectors",
            [
                "ec2:RunInstances",
                "ec2:TerminateInstances",
                "ec2:ModifyInstanceAttribute",
                "ec2:ModifyInstanceMetadataOptions",
                "ec2:CreateTags",
                "ec2:DeleteTags",
                "ec2:AllocateAddress",
                "ec2:ReleaseAddress",
                "ec2:AssociateAddress",
                "ec2:DisassociateAddress",
                "ec2:CreateSecurityGroup",
                "ec2:DeleteSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupEgress",
            ],
            [f"arn:aws:ec2:{region}:{account}:*", f"arn:aws:ec2:{region}::image/*"],
        ),
        _statement(
            "AmiParameters",
            ["ssm:GetParameter", "ssm:GetParameters"],
            [f"arn:aws:ssm:{region}::parameter/aws/service/*"],
        ),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def _unscopable_statement() -> Document:
    """Calls AWS authorizes only on `*`: requesting a certificate, lookups by name, Describe and List calls."""
    return _statement(
        "CallsWithoutResourceScope",
        [
            "acm:RequestCertificate",
            "acm:ListCertificates",
            "ec2:Describe*",
            "route53:ListHostedZones",
            "route53:ListHostedZonesByName",
            "cloudfront:ListDistributions",
            "cloudfront:ListFunctions",
            "cloudfront:ListOriginAccessControls",
            "cloudfront:ListCachePolicies",
            "cloudfront:ListResponseHeadersPolicies",
            "sqs:ListQueues",
            "scheduler:ListSchedules",
            "logs:DescribeLogGroups",
            "sns:ListTopics",
            "lambda:ListFunctions",
        ],
        ["*"],
    )


def deploy_policies(account_id: str, region: str, name_prefix: str) -> list[Document]:
    """The deploy role's inline policies: scoped statements, then the few AWS only authorizes on `*`."""
    return [
        deploy_policy(account_id, region, name_prefix),
        {"Version": "2012-10-17", "Statement": [_unscopable_statement()]},
    ]
