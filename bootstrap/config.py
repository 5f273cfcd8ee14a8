"""The bootstrap stack's settings (`pypi-cdn-bootstrap:*` config keys), validated, and the names of its resources."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bootstrap.access import OIDC_HOST

REPOSITORY = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}\Z")
ENVIRONMENT = re.compile(r"\A[A-Za-z0-9._ -]{1,255}\Z")
NAME_PREFIX = re.compile(r"\A[a-z0-9][a-z0-9-]{1,30}\Z")


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
