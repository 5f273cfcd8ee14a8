"""Who may assume which role from GitHub Actions, and what both roles may do with the Pulumi state: IAM documents
of the bootstrap stack, as pure functions.

Two roles trust GitHub's OIDC provider. Pull-request previews assume a read-only role; `pulumi up` from the
`production` environment assumes a deploy role (its permissions: bootstrap/deploy.py). Both use the Pulumi state
bucket and the secrets key the bootstrap stack creates.
"""

from __future__ import annotations

import json
from typing import Any

OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_URL = f"https://{OIDC_HOST}"
AUDIENCE = "sts.amazonaws.com"
READ_ONLY_POLICY_ARN = "arn:aws:iam::aws:policy/ReadOnlyAccess"

Document = dict[str, Any]


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


def statement(sid: str, actions: list[str], resources: list[str], condition: Document | None = None) -> Document:
    """One Allow statement (with its condition, if any)."""
    allowed: Document = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        allowed["Condition"] = condition
    return allowed


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
            statement("StateList", ["s3:ListBucket", "s3:GetBucketLocation"], [state_bucket_arn]),
            statement("StateRead", ["s3:GetObject"], [f"{state_bucket_arn}/*"]),
            statement("StateWrite", ["s3:PutObject", "s3:DeleteObject"], object_resources),
            statement("SecretsKey", key_actions, [secrets_key_arn]),
        ],
    }
