"""The rules judged one resource at a time, on the inputs `pulumi preview` plans: public buckets, TLS, origin
access, IMDSv2, ingress, IAM wildcards and encryption at rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from policy.documents import condition_values, document_violations, is_everyone, unscopable
from policy.resources import (
    BUCKET,
    BUCKET_ACL,
    BUCKET_ENCRYPTION,
    BUCKET_POLICY,
    BUCKET_PUBLIC_ACCESS_BLOCK,
    DISTRIBUTION,
    EBS_VOLUME,
    IAM_POLICY_TYPES,
    IAM_ROLE,
    IAM_ROLE_POLICY_ATTACHMENT,
    INSTANCE,
    LAUNCH_TEMPLATE,
    ORIGIN_ACCESS_CONTROL,
    QUEUE,
    SECURITY_GROUP,
    SECURITY_GROUP_INGRESS_RULE,
    SECURITY_GROUP_RULE,
    Props,
    ResourceRule,
    as_list,
)

MINIMUM_TLS_POLICIES = frozenset({"TLSv1.2_2021", "TLSv1.2_2025", "TLSv1.3_2025"})
PUBLIC_CANNED_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GRANTEE_URIS = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)
PUBLIC_ACCESS_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
WEB_PORTS = frozenset({80, 443})
WEB_PROTOCOLS = frozenset({"tcp", "udp", "6", "17"})
SSH_PORT = 22
AWS_MANAGED_POLICY = ":iam::aws:policy/"


def check_bucket_not_public(resource_type: str, props: Props) -> list[str]:
    """Public access blocks are fully on; no bucket or ACL grants the public; no website endpoint."""
    if resource_type == BUCKET_PUBLIC_ACCESS_BLOCK:
        return [
            f"public access block must set {flag}: true"
            for flag in PUBLIC_ACCESS_BLOCK_FLAGS
            if props.get(flag) is not True
        ]
    if resource_type == BUCKET:
        problems = []
        if props.get("acl") in PUBLIC_CANNED_ACLS:
            problems.append(f"bucket ACL {props['acl']!r} makes it public")
        if props.get("website"):
            problems.append("bucket must not have a website endpoint (it would be public, bypassing the OAC)")
        return problems
    if resource_type == BUCKET_ACL:
        problems = []
        if props.get("acl") in PUBLIC_CANNED_ACLS:
            problems.append(f"bucket ACL {props['acl']!r} makes it public")
        grants = as_list((props.get("accessControlPolicy") or {}).get("grants"))
        for grant in grants:
            uri = (grant.get("grantee") or {}).get("uri")
            if uri in PUBLIC_GRANTEE_URIS:
                problems.append(f"bucket ACL grants {grant.get('permission')} to {uri}")
        return problems
    return []


def _has_tls_deny(statements: list[Props]) -> bool:
    for statement in statements:
        if statement.get("Effect") != "Deny" or not is_everyone(statement.get("Principal")):
            continue
        if not {"s3:*", "*"} & set(as_list(statement.get("Action"))):
            continue
        if "false" not in [value.lower() for value in condition_values(statement, "Bool", "aws:SecureTransport")]:
            continue
        resources = [str(resource) for resource in as_list(statement.get("Resource"))]
        covers_objects = any(resource.endswith("/*") for resource in resources)
        if covers_objects and any("/" not in resource for resource in resources):
            return True
    return False


def check_bucket_policy_tls_only(resource_type: str, props: Props) -> list[str]:
    """The bucket policy denies every request made without TLS, on the bucket and on its objects."""
    if resource_type != BUCKET_POLICY:
        return []
    return document_violations(
        props.get("policy"),
        "bucket policy",
        lambda statements: (
            []
            if _has_tls_deny(statements)
            else [
                "bucket policy must deny s3:* to everyone when aws:SecureTransport is false, on the bucket and bucket/*"
            ]
        ),
    )


def check_distribution_tls(resource_type: str, props: Props) -> list[str]:
    """Viewers get TLS 1.2+ and HTTPS on every behavior, and origins are reached over TLS 1.2.

    With aliases the certificate must be an ACM one with a modern `minimumProtocolVersion`. The one exception is a
    distribution without aliases: with no custom domain there is no certificate of ours to attach, so CloudFront's
    default *.cloudfront.net certificate is accepted, although CloudFront then fixes the security policy at TLSv1
    and ignores `minimumProtocolVersion`. Its behaviors must still be https-only or redirect-to-https.
    """
    if resource_type != DISTRIBUTION:
        return []
    problems = []
    certificate = props.get("viewerCertificate") or {}
    version = certificate.get("minimumProtocolVersion")
    aliases = [str(alias) for alias in as_list(props.get("aliases"))]
    if certificate.get("cloudfrontDefaultCertificate"):
        if aliases:
            problems.append(
                f"aliases {aliases} need an ACM certificate: the default *.cloudfront.net certificate does not "
                "cover them and allows TLSv1 (CloudFront ignores minimumProtocolVersion with it)"
            )
    elif version not in MINIMUM_TLS_POLICIES:
        problems.append(
            f"viewerCertificate.minimumProtocolVersion is {version!r}; use one of {sorted(MINIMUM_TLS_POLICIES)}"
        )
    behaviors = [props.get("defaultCacheBehavior") or {}, *as_list(props.get("orderedCacheBehaviors"))]
    for behavior in behaviors:
        if behavior.get("viewerProtocolPolicy") not in {"https-only", "redirect-to-https"}:
            problems.append(
                f"cache behavior {behavior.get('pathPattern', 'default')!r} must redirect to or "
                f"require HTTPS, not {behavior.get('viewerProtocolPolicy')!r}"
            )
    for origin in as_list(props.get("origins")):
        custom = origin.get("customOriginConfig")
        if custom and (
            custom.get("originProtocolPolicy") != "https-only"
            or set(as_list(custom.get("originSslProtocols"))) != {"TLSv1.2"}
        ):
            problems.append(f"origin {origin.get('originId')!r} must be reached over https-only with TLSv1.2")
    return problems


def check_distribution_uses_oac(resource_type: str, props: Props) -> list[str]:
    """Every S3 origin is signed with an origin access control, never a legacy identity or public endpoint."""
    if resource_type == ORIGIN_ACCESS_CONTROL:
        problems = []
        if props.get("signingBehavior") != "always":
            problems.append("origin access control must sign always (signingBehavior: always)")
        if props.get("signingProtocol") != "sigv4":
            problems.append("origin access control must sign with sigv4")
        return problems
    if resource_type != DISTRIBUTION:
        return []
    problems = []
    for origin in as_list(props.get("origins")):
        if origin.get("customOriginConfig"):
            continue
        origin_id = origin.get("originId")
        if not origin.get("originAccessControlId"):
            problems.append(f"S3 origin {origin_id!r} must set originAccessControlId")
        if (origin.get("s3OriginConfig") or {}).get("originAccessIdentity"):
            problems.append(f"S3 origin {origin_id!r} uses a legacy origin access identity; use the OAC only")
    return problems


def _instance_problems(props: Props) -> list[str]:
    tokens = (props.get("metadataOptions") or {}).get("httpTokens")
    if tokens != "required":
        return [f"metadataOptions.httpTokens must be 'required' (IMDSv2 only), not {tokens!r}"]
    return []


def check_imdsv2(resource_type: str, props: Props) -> list[str]:
    """Every instance (and launch template) answers only IMDSv2 session requests."""
    if resource_type in {INSTANCE, LAUNCH_TEMPLATE}:
        return _instance_problems(props)
    return []


def _ingress_problem(protocol: Any, from_port: Any, to_port: Any, where: str) -> str | None:
    protocol = str(protocol).lower()
    if protocol in {"-1", "all"}:
        return f"{where}: allows every protocol and port; allow only ports 80 and 443"
    if from_port is None or to_port is None:
        return f"{where}: names no port range; allow only ports 80 and 443"
    low, high = int(from_port), int(to_port)
    if low <= SSH_PORT <= high:
        return f"{where}: opens SSH (port 22); roll the instance (pulumi up) instead of logging in"
    if protocol not in WEB_PROTOCOLS or low != high or low not in WEB_PORTS:
        return f"{where}: opens {protocol} {low}-{high}; allow only ports 80 and 443"
    return None


def check_ingress_web_only(resource_type: str, props: Props) -> list[str]:
    """Ingress is HTTP and HTTPS only: single ports 80 and 443, never SSH, never all traffic."""
    if resource_type == SECURITY_GROUP:
        rules = [
            (rule.get("protocol"), rule.get("fromPort"), rule.get("toPort")) for rule in as_list(props.get("ingress"))
        ]
    elif resource_type == SECURITY_GROUP_INGRESS_RULE:
        rules = [(props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"))]
    elif resource_type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
        rules = [(props.get("protocol"), props.get("fromPort"), props.get("toPort"))]
    else:
        return []
    found = (_ingress_problem(*rule, where=f"ingress {index}") for index, rule in enumerate(rules))
    return [problem for problem in found if problem]


def _wildcard_action_problems(statements: list[Props], where: str) -> list[str]:
    problems = []
    for index, statement in enumerate(statements):
        if statement.get("Effect", "Allow") != "Allow":
            continue
        if "NotAction" in statement:
            problems.append(f"{where} statement {index}: Allow with NotAction grants nearly everything")
        for action in as_list(statement.get("Action")):
            if action == "*" or str(action).endswith(":*"):
                problems.append(f"{where} statement {index}: action {action!r} is a wildcard; name the actions")
        if "NotResource" in statement or ("*" in as_list(statement.get("Resource")) and not unscopable(statement)):
            problems.append(f"{where} statement {index}: resource '*' is outside this stack; name the ARNs")
        if is_everyone(statement.get("Principal")):
            problems.append(f"{where} statement {index}: principal '*' lets anyone in")
    return problems


def check_iam_no_wildcards(resource_type: str, props: Props) -> list[str]:
    """No IAM statement allows a `*` action or resource, NotAction/NotResource, or the `*` principal."""
    if resource_type in IAM_POLICY_TYPES:
        return document_violations(
            props.get("policy"),
            resource_type.rsplit(":", 1)[-1],
            lambda statements: _wildcard_action_problems(statements, "policy"),
        )
    if resource_type == IAM_ROLE:
        problems = document_violations(
            props.get("assumeRolePolicy"),
            "assumeRolePolicy",
            lambda statements: _wildcard_action_problems(statements, "trust policy"),
        )
        for inline in as_list(props.get("inlinePolicies")):
            name = f"inline policy {inline.get('name')!r}"
            problems += document_violations(
                inline.get("policy"), name, lambda statements, name=name: _wildcard_action_problems(statements, name)
            )
        return problems
    if resource_type == IAM_ROLE_POLICY_ATTACHMENT and AWS_MANAGED_POLICY in str(props.get("policyArn")):
        return [
            f"attaching {props.get('policyArn')!r}: write a scoped inline policy instead of attaching one "
            "whose statements this stack does not control"
        ]
    return []


def _bucket_encryption_problems(props: Props) -> list[str]:
    algorithms = [
        (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
        for rule in as_list(props.get("rules"))
    ]
    if algorithms and all(algorithm in SSE_ALGORITHMS for algorithm in algorithms):
        return []
    return [f"default encryption must use one of {sorted(SSE_ALGORITHMS)}, found {algorithms!r}"]


def _queue_encryption_problems(props: Props) -> list[str]:
    if props.get("sqsManagedSseEnabled") is True or props.get("kmsMasterKeyId"):
        return []
    return ["queue must set sqsManagedSseEnabled: true or a kmsMasterKeyId"]


def _instance_volume_problems(props: Props) -> list[str]:
    devices = [("root volume", props.get("rootBlockDevice") or {})] + [
        (f"volume {device.get('deviceName')}", device) for device in as_list(props.get("ebsBlockDevices"))
    ]
    return [f"{name} must set encrypted: true" for name, device in devices if device.get("encrypted") is not True]


def _volume_problems(props: Props) -> list[str]:
    return [] if props.get("encrypted") is True else ["EBS volume must set encrypted: true"]


ENCRYPTION_CHECKS: Mapping[str, Callable[[Props], list[str]]] = {
    BUCKET_ENCRYPTION: _bucket_encryption_problems,
    QUEUE: _queue_encryption_problems,
    INSTANCE: _instance_volume_problems,
    EBS_VOLUME: _volume_problems,
}


def check_encryption_at_rest(resource_type: str, props: Props) -> list[str]:
    """Bucket default encryption, SQS server-side encryption and encrypted EBS volumes."""
    check = ENCRYPTION_CHECKS.get(resource_type)
    return check(props) if check else []


RESOURCE_RULES: tuple[ResourceRule, ...] = (
    ResourceRule("s3-no-public-access", "S3 buckets block every kind of public access", check_bucket_not_public),
    ResourceRule(
        "s3-bucket-policy-tls-only", "bucket policies deny requests made without TLS", check_bucket_policy_tls_only
    ),
    ResourceRule(
        "cloudfront-minimum-tls", "the distribution requires HTTPS, and TLS 1.2+ on its aliases", check_distribution_tls
    ),
    ResourceRule(
        "cloudfront-origin-access-control", "S3 origins are reached only through an OAC", check_distribution_uses_oac
    ),
    ResourceRule("ec2-imdsv2-required", "instances accept only IMDSv2", check_imdsv2),
    ResourceRule("ec2-ingress-web-only", "ingress only on ports 80 and 443, never SSH", check_ingress_web_only),
    ResourceRule("iam-no-wildcards", "no `*` action, resource or principal in IAM statements", check_iam_no_wildcards),
    ResourceRule("encryption-at-rest", "buckets, queues and volumes are encrypted at rest", check_encryption_at_rest),
)
