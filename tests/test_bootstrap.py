"""The bootstrap stack: GitHub OIDC trust, the two roles' permissions, and the program under Pulumi mocks."""

from __future__ import annotations

import fnmatch
import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest

from bootstrap.access import (
    AUDIENCE,
    OIDC_HOST,
    environment_subject,
    github_trust_policy,
    pull_request_subject,
    state_access_policy,
)
from bootstrap.config import BootstrapConfigError, parse_bootstrap_config
from bootstrap.deploy import deploy_policies

BOOTSTRAP_PROGRAM = Path(__file__).resolve().parent.parent / "bootstrap" / "__main__.py"
ACCOUNT = "123456789012"
REGION = "eu-west-1"
REPOSITORY = "example-org/pypi-cdn"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_HOST}"


def statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["Statement"]


def test_config_is_validated_with_the_key_named() -> None:
    settings = parse_bootstrap_config(REPOSITORY)
    assert (settings.environment, settings.name_prefix, settings.existing_oidc_provider_arn) == (
        "production",
        "pypi-cdn",
        None,
    )
    with pytest.raises(BootstrapConfigError, match=r"^pypi-cdn-bootstrap:githubRepository: .*'pypi-cdn'"):
        parse_bootstrap_config("pypi-cdn")
    with pytest.raises(BootstrapConfigError, match=r"^pypi-cdn-bootstrap:githubRepository: .*None"):
        parse_bootstrap_config(None)
    with pytest.raises(BootstrapConfigError, match=r"^pypi-cdn-bootstrap:namePrefix: 'Pypi_CDN'"):
        parse_bootstrap_config(REPOSITORY, name_prefix="Pypi_CDN")
    with pytest.raises(BootstrapConfigError, match=r"^pypi-cdn-bootstrap:existingOidcProviderArn: "):
        parse_bootstrap_config(REPOSITORY, existing_oidc_provider_arn="arn:aws:iam::1:oidc-provider/gitlab.com")


def test_trust_policy_pins_audience_and_subject() -> None:
    document = github_trust_policy(PROVIDER_ARN, pull_request_subject(REPOSITORY))
    assert statements(document) == [
        {
            "Effect": "Allow",
            "Principal": {"Federated": PROVIDER_ARN},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                    "token.actions.githubusercontent.com:sub": "repo:example-org/pypi-cdn:pull_request",
                }
            },
        }
    ]
    assert environment_subject(REPOSITORY, "production") == "repo:example-org/pypi-cdn:environment:production"


def test_preview_state_access_writes_only_locks_and_only_decrypts() -> None:
    bucket, key = "arn:aws:s3:::state", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k"
    preview = {statement["Sid"]: statement for statement in statements(state_access_policy(bucket, key, deploy=False))}
    assert preview["StateWrite"]["Resource"] == ["arn:aws:s3:::state/.pulumi/locks/*"]
    assert preview["SecretsKey"]["Action"] == ["kms:Decrypt"]
    deploy = {statement["Sid"]: statement for statement in statements(state_access_policy(bucket, key, deploy=True))}
    assert deploy["StateWrite"]["Resource"] == ["arn:aws:s3:::state/*"]
    assert deploy["SecretsKey"]["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource the program declares; answers the two lookups it makes."""

    def __init__(self) -> None:
        self.resources: dict[str, tuple[str, dict[str, Any]]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = (args.typ, dict(args.inputs))
        name = args.inputs.get("name") or args.inputs.get("bucketPrefix", args.name) + "abc123"
        outputs = {
            **args.inputs,
            "arn": f"arn:aws:mock:::{args.typ.split(':')[-1]}/{name}",
            "name": name,
            "bucket": name,
        }
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDA",
                "id": ACCOUNT,
            }, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "endpoint": f"ec2.{REGION}.amazonaws.com"}, []
        raise AssertionError(f"unexpected call {args.token}")


def run_bootstrap(config: dict[str, str]) -> RecordingMocks:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="pypi-cdn-bootstrap", stack="ci", preview=False)
    pulumi.runtime.set_all_config({f"pypi-cdn-bootstrap:{key}": value for key, value in config.items()})

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(BOOTSTRAP_PROGRAM), run_name="__main__")

    program()
    return mocks


def test_program_declares_provider_and_two_roles_trusting_only_their_subjects() -> None:
    mocks = run_bootstrap({"githubRepository": REPOSITORY})
    provider_type, provider = mocks.resources["github"]
    assert provider_type == "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
    assert (provider["url"], provider["clientIdLists"]) == (f"https://{OIDC_HOST}", [AUDIENCE])
    expected_subjects = {
        "preview": "repo:example-org/pypi-cdn:pull_request",
        "deploy": "repo:example-org/pypi-cdn:environment:production",
    }
    for role_name, subject in expected_subjects.items():
        role_type, role = mocks.resources[role_name]
        assert role_type == "aws:iam/role:Role"
        (trust,) = statements(json.loads(role["assumeRolePolicy"]))
        assert trust["Principal"] == {"Federated": "arn:aws:mock:::OpenIdConnectProvider/githubabc123"}
        assert trust["Condition"]["StringEquals"] == {f"{OIDC_HOST}:aud": AUDIENCE, f"{OIDC_HOST}:sub": subject}
    assert mocks.resources["preview-read-only"][1]["policyArn"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    deploy_documents = [
        json.loads(props["policy"])
        for name, (_, props) in mocks.resources.items()
        if name.startswith("deploy-") and name != "deploy-state"
    ]
    # Mocks see resources in the order their registrations finish, which load can change: compare as sets.
    expected = deploy_policies(ACCOUNT, REGION, "pypi-cdn")
    assert sorted(map(json.dumps, deploy_documents)) == sorted(map(json.dumps, expected))
    assert mocks.resources["state"][1]["bucketPrefix"] == "ci-pypi-cdn-state-"
    assert mocks.resources["secrets-alias"][1]["name"] == "alias/ci-pypi-cdn-secrets"


def test_deploy_role_cannot_touch_the_bootstrap_resources() -> None:
    mocks = run_bootstrap({"githubRepository": REPOSITORY})
    names = [
        f"arn:aws:s3:::{mocks.resources['state'][1]['bucketPrefix']}abc123",
        f"arn:aws:iam::{ACCOUNT}:role/{mocks.resources['deploy'][1]['namePrefix']}abc123",
        f"arn:aws:iam::{ACCOUNT}:role/{mocks.resources['preview'][1]['namePrefix']}abc123",
    ]
    scoped = deploy_policies(ACCOUNT, REGION, "pypi-cdn")[0]  # the other one only lists and requests certificates
    patterns = [resource for statement in statements(scoped) for resource in statement["Resource"]]
    assert [(name, pattern) for name in names for pattern in patterns if fnmatch.fnmatchcase(name, pattern)] == []
    assert fnmatch.fnmatchcase("arn:aws:s3:::pypi-cdn-origin-bucket-1a2b3c", "arn:aws:s3:::pypi-cdn*")


def test_program_reuses_an_existing_provider_and_honours_the_environment() -> None:
    mocks = run_bootstrap(
        {"githubRepository": REPOSITORY, "environment": "prod-eu", "existingOidcProviderArn": PROVIDER_ARN}
    )
    assert "github" not in mocks.resources
    (trust,) = statements(json.loads(mocks.resources["deploy"][1]["assumeRolePolicy"]))
    assert trust["Principal"] == {"Federated": PROVIDER_ARN}
    assert trust["Condition"]["StringEquals"][f"{OIDC_HOST}:sub"] == "repo:example-org/pypi-cdn:environment:prod-eu"


def test_program_refuses_a_missing_repository_by_name() -> None:
    with pytest.raises(pulumi.RunError, match=r"pypi-cdn-bootstrap:githubRepository"):
        run_bootstrap({})
