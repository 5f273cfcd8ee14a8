"""The private origin: one S3 bucket that only this CloudFront distribution reads, and only its public prefixes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from sync.layout import PUBLIC_PREFIXES, STATUS_KEY


def deny_insecure_transport(bucket_arn: str) -> dict[str, Any]:
    """The statement refusing any request to the bucket or its objects that does not come over TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def origin_bucket_policy(bucket_arn: str, distribution_arn: str) -> dict[str, Any]:
    """TLS only; the distribution (through OAC, pinned by aws:SourceArn) may GET the public prefixes and the status,
    nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            deny_insecure_transport(bucket_arn),
            {
                "Sid": "CloudFrontReadsPublicPrefixes",
                "Effect": "Allow",
                "Principal": {"Service": "cloudfront.amazonaws.com"},
                "Action": "s3:GetObject",
                "Resource": [*(f"{bucket_arn}/{prefix}*" for prefix in PUBLIC_PREFIXES), f"{bucket_arn}/{STATUS_KEY}"],
                "Condition": {"StringEquals": {"AWS:SourceArn": distribution_arn}},
            },
        ],
    }


@dataclass(frozen=True)
class OriginArgs:
    noncurrent_version_days: int = 30  # how long an overwritten or deleted object stays recoverable


def private_bucket(
    name: str,
    *,
    parent: pulumi.Resource,
    noncurrent_version_days: int | None,
    expire_days: int | None = None,
    region: str | None = None,
) -> tuple[aws.s3.Bucket, list[pulumi.Resource]]:
    """A bucket with all four public-access blocks, owner-enforced objects, SSE-S3 and lifecycle rules.

    `region` None means the stack's region. Returns the bucket and its settings resources, so a policy can wait for
    the public-access block.
    """
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, region=region, opts=child)  # `pulumi destroy` refuses while objects remain
    settings: list[pulumi.Resource] = [
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            region=region,
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        ),
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            region=region,
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        ),
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            region=region,
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        ),
    ]
    rules = [
        aws.s3.BucketLifecycleConfigurationRuleArgs(
            id="abort-incomplete-uploads",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
            abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                days_after_initiation=1
            ),
        )
    ]
    versioning: aws.s3.BucketVersioning | None = None
    if noncurrent_version_days is not None:
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            region=region,
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        settings.append(versioning)
        rules.append(
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=noncurrent_version_days
                ),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(expired_object_delete_marker=True),
            )
        )
    if expire_days is not None:
        rules.append(
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-objects",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=expire_days),
            )
        )
    settings.append(
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            region=region,
            bucket=bucket.id,
            rules=rules,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[versioning] if versioning else []),
        )
    )
    return bucket, settings


class Origin(pulumi.ComponentResource):
    """The mirror's bucket: `simple/` and `packages/` for CloudFront, `.pypi-cdn/` for the sync alone."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    regional_domain_name: pulumi.Output[str]

    def __init__(self, name: str, args: OriginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pypi-cdn:index:Origin", name, None, opts)
        self._name = name
        self.bucket, self._settings = private_bucket(
            f"{name}-bucket",
            parent=self,
            noncurrent_version_days=args.noncurrent_version_days,
        )
        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.regional_domain_name = self.bucket.bucket_regional_domain_name
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "regional_domain_name": self.regional_domain_name,
            }
        )

    def allow_distribution(self, distribution_arn: pulumi.Input[str]) -> aws.s3.BucketPolicy:
        """Attach the bucket policy once the distribution exists (it needs the bucket first, the policy needs it)."""
        document = pulumi.Output.all(self.bucket_arn, distribution_arn).apply(
            lambda arns: json.dumps(origin_bucket_policy(arns[0], arns[1]), sort_keys=True)
        )
        return aws.s3.BucketPolicy(
            f"{self._name}-bucket-policy",
            bucket=self.bucket.id,
            policy=document,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self._settings),
        )
