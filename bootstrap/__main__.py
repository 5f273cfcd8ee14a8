"""The bootstrap stack (`cd bootstrap && pulumi up`): everything CI needs before it can preview or deploy.

The CLI runs this folder as a script from inside it, so the repository root goes on `sys.path` first to make
`bootstrap` importable as the package the tests import.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi
import pulumi_aws as aws

from bootstrap.access import (
    AUDIENCE,
    OIDC_URL,
    READ_ONLY_POLICY_ARN,
    environment_subject,
    github_trust_policy,
    pull_request_subject,
    state_access_policy,
    tls_only_bucket_policy,
)
from bootstrap.config import BootstrapConfigError, bootstrap_name, parse_bootstrap_config
from bootstrap.deploy import deploy_policies

config = pulumi.Config()
try:
    settings = parse_bootstrap_config(
        config.get("githubRepository"),
        config.get("environment"),
        config.get("namePrefix"),
        config.get("existingOidcProviderArn") or None,
    )
except BootstrapConfigError as error:
    raise pulumi.RunError(str(error)) from None
identity = aws.get_caller_identity()
region = aws.get_region().region

if settings.existing_oidc_provider_arn:
    provider_arn: pulumi.Input[str] = settings.existing_oidc_provider_arn
else:
    provider_arn = aws.iam.OpenIdConnectProvider("github", url=OIDC_URL, client_id_lists=[AUDIENCE]).arn

state_bucket = aws.s3.Bucket("state", bucket_prefix=f"{bootstrap_name(settings.name_prefix, 'state')}-")
aws.s3.BucketVersioning("state-versioning", bucket=state_bucket.id, versioning_configuration={"status": "Enabled"})
aws.s3.BucketPublicAccessBlock(
    "state-public-access",
    bucket=state_bucket.id,
    block_public_acls=True,
    block_public_policy=True,
    ignore_public_acls=True,
    restrict_public_buckets=True,
)
aws.s3.BucketServerSideEncryptionConfiguration(
    "state-encryption",
    bucket=state_bucket.id,
    rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
)
aws.s3.BucketPolicy("state-policy", bucket=state_bucket.id, policy=state_bucket.arn.apply(tls_only_bucket_policy))
secrets_key = aws.kms.Key("secrets", description="Pulumi secrets of the pypi-cdn stacks", enable_key_rotation=True)
secrets_alias = aws.kms.Alias(
    "secrets-alias", name=f"alias/{bootstrap_name(settings.name_prefix, 'secrets')}", target_key_id=secrets_key.id
)


def github_role(name: str, subject: str, *, deploy: bool) -> aws.iam.Role:
    """A role GitHub jobs with `subject` assume, with access to the Pulumi state and secrets key."""
    role = aws.iam.Role(
        name,
        name_prefix=f"{bootstrap_name(settings.name_prefix, name)}-",
        assume_role_policy=pulumi.Output.from_input(provider_arn).apply(
            lambda arn: json.dumps(github_trust_policy(arn, subject))
        ),
        max_session_duration=3600,
    )
    aws.iam.RolePolicy(
        f"{name}-state",
        role=role.id,
        policy=pulumi.Output.all(state_bucket.arn, secrets_key.arn).apply(
            lambda arns: json.dumps(state_access_policy(arns[0], arns[1], deploy=deploy))
        ),
    )
    return role


preview_role = github_role("preview", pull_request_subject(settings.github_repository), deploy=False)
aws.iam.RolePolicyAttachment("preview-read-only", role=preview_role.name, policy_arn=READ_ONLY_POLICY_ARN)

deploy_role = github_role("deploy", environment_subject(settings.github_repository, settings.environment), deploy=True)
for index, document in enumerate(deploy_policies(identity.account_id, region, settings.name_prefix)):
    aws.iam.RolePolicy(f"deploy-{index}", role=deploy_role.id, policy=json.dumps(document))

pulumi.export("oidcProviderArn", provider_arn)
pulumi.export("previewRoleArn", preview_role.arn)
pulumi.export("deployRoleArn", deploy_role.arn)
pulumi.export("backendUrl", state_bucket.bucket.apply(lambda name: f"s3://{name}"))
pulumi.export("secretsProvider", secrets_alias.name.apply(lambda alias: f"awskms://{alias}?region={region}"))
pulumi.export("region", region)
