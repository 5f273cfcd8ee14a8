"""What the deploy role may do: `pulumi up` of the main stack, on resources named with the main stack's prefix or,
where AWS generates the identifier, within this account and region."""

from __future__ import annotations

from bootstrap.access import Document, statement

SERVICES_ROLES_ARE_PASSED_TO = ["lambda.amazonaws.com", "ec2.amazonaws.com", "scheduler.amazonaws.com"]


def deploy_policy(account_id: str, region: str, name_prefix: str) -> Document:
    """What `pulumi up` of the main stack needs, on resources named `<name_prefix>*` wherever AWS lets us say so.

    The main stack's physical names start with its project name through `pulumi:autonaming` (set in Pulumi.yaml).
    CloudFront, ACM, Route53, EC2 and log deliveries identify resources by IDs AWS generates; those statements are
    bounded by the account (and region) instead.
    """
    prefix = f"{name_prefix}*"
    account = account_id
    statements = [
        statement(
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
        statement(
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
        statement(
            "PassRoles",
            ["iam:PassRole"],
            [f"arn:aws:iam::{account}:role/{prefix}"],
            {"StringEquals": {"iam:PassedToService": SERVICES_ROLES_ARE_PASSED_TO}},
        ),
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
            "Dashboards",
            ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard", "cloudwatch:DeleteDashboards"],
            [f"arn:aws:cloudwatch::{account}:dashboard/{prefix}"],
        ),
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
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
        statement(
            "AmiParameters",
            ["ssm:GetParameter", "ssm:GetParameters"],
            [f"arn:aws:ssm:{region}::parameter/aws/service/*"],
        ),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def _unscopable_statement() -> Document:
    """Calls AWS authorizes only on `*`: requesting a certificate, lookups by name, Describe and List calls."""
    return statement(
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
