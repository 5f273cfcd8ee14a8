"""Policy inputs the rule tests share: ARNs of one stack, a TLS-only deny, CloudFront's read, a distribution."""

from __future__ import annotations

import json

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
