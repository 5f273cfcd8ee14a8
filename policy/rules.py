"""The stack's security rules as pure functions over resource types and properties.

Properties are what Pulumi hands a policy pack: camelCase names, nested mappings and sequences (inputs for the
per-resource rules, outputs for the stack rules). Every check returns the violations it found, empty when the
resource complies or the rule does not concern it, so tests call each rule directly with plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync.layout import MIRROR_PREFIXES

Props = Mapping[str, Any]

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BUCKET_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
DISTRIBUTION = "aws:cloudfront/distribution:Distribution"
ORIGIN_ACCESS_CONTROL = "aws:cloudfront/originAccessControl:OriginAccessControl"
LOG_DELIVERY_SOURCE = "aws:cloudwatch/logDeliverySource:LogDeliverySource"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME = "aws:ebs/volume:Volume"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SECURITY_GROUP_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
IAM_ROLE = "aws:iam/role:Role"
IAM_ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
IAM_POLICY = "aws:iam/policy:Policy"
IAM_ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
QUEUE = "aws:sqs/queue:Queue"
LAMBDA_FUNCTION = "aws:lambda/function:Function"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
DNS_RECORD = "aws:route53/record:Record"

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
# Key prefixes the stack's code reads and writes: the served index and files, and the sync's private state.
BUCKET_KEYS = ("status.json",)  # single objects besides: the mirror's public status, which the planner writes
CLOUDFRONT_SERVICE = "cloudfront.amazonaws.com"
# Services that write access logs into a bucket when its policy lets them.
LOG_DELIVERY_SERVICES = frozenset({"delivery.logs.amazonaws.com", "logging.s3.amazonaws.com"})
IAM_POLICY_TYPES = frozenset({IAM_ROLE_POLICY, IAM_POLICY})
# Besides the bucket prefixes, IAM may name these resources when the stack itself declares them.
STACK_ARN_TYPES = frozenset({QUEUE, DISTRIBUTION, LAMBDA_FUNCTION, LOG_GROUP})
AWS_MANAGED_POLICY = ":iam::aws:policy/"
# Actions AWS authorizes only on Resource "*" (no resource-level permissions), allowed there and nowhere else.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "route53:ListHostedZones",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
)
# Actions an instance calls about itself. Its role exists before the instance, so it cannot name the instance's ARN:
# IAM may name every instance of an account and region in which the stack runs instances, for these actions only.
INSTANCE_SELF_ACTIONS = frozenset({"ssm:UpdateInstanceInformation"})


@dataclass(frozen=True)
class DeclaredResource:
    """One resource of the stack: its type token, logical name, properties and (when known) URN."""

    type: str
    name: str
    props: Props
    urn: str = ""


@dataclass(frozen=True)
class Violation:
    """A broken rule, tied to the resource that breaks it (empty URN: the stack as a whole)."""

    message: str
    urn: str = ""


ResourceCheck = Callable[[str, Props], list[str]]
StackCheck = Callable[[Sequence[DeclaredResource]], list[Violation]]


@dataclass(frozen=True)
class ResourceRule:
    """A rule judged one resource at a time, on the inputs `pulumi preview` plans."""

    name: str
    description: str
    check: ResourceCheck


@dataclass(frozen=True)
class StackRule:
    """A rule that needs several resources at once (which bucket, which distribution), judged on outputs."""

    name: str
    description: str
    check: StackCheck


class PolicyDocumentError(ValueError):
    """An IAM or bucket policy document that is not a JSON object with statements."""


# --- helpers -------------------------------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """IAM's "one value or a list of them", and Pulumi's optional lists, as a list."""
    if value is None:
        return []
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def policy_statements(document: Any, where: str) -> list[Props]:
    """The statements of a policy document given as JSON text or as a mapping; `where` names it in errors."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError as error:
            raise PolicyDocumentError(f"{where}: policy is not valid JSON ({error.msg})") from error
    if not isinstance(document, Mapping):
        raise PolicyDocumentError(f"{where}: policy must be a JSON object, not {type(document).__name__}")
    statements = as_list(document.get("Statement"))
    if not statements or not all(isinstance(statement, Mapping) for statement in statements):
        raise PolicyDocumentError(f"{where}: policy has no statements")
    return statements


def _service_principals(statement: Props) -> set[str] | None:
    """The service principals a statement names, or None when it names anything else (accounts, users, `*`)."""
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping) or set(principal) != {"Service"}:
        return None
    return {str(service) for service in as_list(principal["Service"])}


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in as_list(principal.get("AWS"))


def _condition_values(statement: Props, operator: str, key: str) -> list[str]:
    """Values of one condition key under one operator, matching the key case-insensitively as IAM does."""
    block = (statement.get("Condition") or {}).get(operator) or {}
    return [str(value) for name, values in block.items() if name.lower() == key.lower() for value in as_list(values)]


def _props_of(resources: Iterable[DeclaredResource], resource_type: str) -> list[DeclaredResource]:
    return [resource for resource in resources if resource.type == resource_type]


def _identities(props: Props) -> set[str]:
    """What other resources use to refer to this one: its id, its name (`bucket`), its ARN."""
    return {str(props[key]) for key in ("id", "bucket", "arn") if props.get(key)}


def _document_violations(document: Any, where: str, judge: Callable[[list[Props]], list[str]]) -> list[str]:
    if document is None:
        return [f"{where}: policy document is missing"]
    try:
        statements = policy_statements(document, where)
    except PolicyDocumentError as error:
        return [str(error)]
    return judge(statements)


# --- per-resource rules --------------------------------------------------------------------------------------


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
        if statement.get("Effect") != "Deny" or not _is_everyone(statement.get("Principal")):
            continue
        if not {"s3:*", "*"} & set(as_list(statement.get("Action"))):
            continue
        if "false" not in [value.lower() for value in _condition_values(statement, "Bool", "aws:SecureTransport")]:
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
    return _document_violations(
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
        if "NotResource" in statement or ("*" in as_list(statement.get("Resource")) and not _unscopable(statement)):
            problems.append(f"{where} statement {index}: resource '*' is outside this stack; name the ARNs")
        if _is_everyone(statement.get("Principal")):
            problems.append(f"{where} statement {index}: principal '*' lets anyone in")
    return problems


def _only_actions(statement: Props, allowed: frozenset[str]) -> bool:
    """Whether the statement names actions and every one of them is in `allowed`."""
    actions = as_list(statement.get("Action"))
    return bool(actions) and all(action in allowed for action in actions)


def _unscopable(statement: Props) -> bool:
    """Whether every action of the statement is one AWS only authorizes on `*`."""
    return _only_actions(statement, UNSCOPABLE_ACTIONS)


def check_iam_no_wildcards(resource_type: str, props: Props) -> list[str]:
    """No IAM statement allows a `*` action or resource, NotAction/NotResource, or the `*` principal."""
    if resource_type in IAM_POLICY_TYPES:
        return _document_violations(
            props.get("policy"),
            resource_type.rsplit(":", 1)[-1],
            lambda statements: _wildcard_action_problems(statements, "policy"),
        )
    if resource_type == IAM_ROLE:
        problems = _document_violations(
            props.get("assumeRolePolicy"),
            "assumeRolePolicy",
            lambda statements: _wildcard_action_problems(statements, "trust policy"),
        )
        for inline in as_list(props.get("inlinePolicies")):
            name = f"inline policy {inline.get('name')!r}"
            problems += _document_violations(
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


# --- stack rules ---------------------------------------------------------------------------------------------


def check_buckets_covered(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every bucket has its own public access block, default encryption and (TLS-only) bucket policy."""
    companions = {
        BUCKET_PUBLIC_ACCESS_BLOCK: "public access block",
        BUCKET_ENCRYPTION: "default encryption configuration",
        BUCKET_POLICY: "bucket policy (TLS only)",
    }
    attached = {
        companion: {str(resource.props.get("bucket")) for resource in _props_of(resources, companion)}
        for companion in companions
    }
    violations = []
    for bucket in _props_of(resources, BUCKET):
        identities = _identities(bucket.props)
        for companion, description in companions.items():
            if not identities & attached[companion]:
                violations.append(Violation(f"bucket {bucket.name!r} has no {description}", bucket.urn))
    return violations


def _bucket_policy_grant_problems(statements: list[Props], distribution_arns: set[str]) -> list[str]:
    problems = []
    for index, statement in enumerate(statements):
        if statement.get("Effect") != "Allow":
            continue
        services = _service_principals(statement)
        if services == {CLOUDFRONT_SERVICE}:
            source_arns = {
                arn
                for operator in ("StringEquals", "ArnEquals")
                for arn in _condition_values(statement, operator, "AWS:SourceArn")
            }
            if not source_arns or not source_arns <= distribution_arns:
                problems.append(
                    f"statement {index}: CloudFront may read only for this stack's distribution "
                    f"(StringEquals AWS:SourceArn), found {sorted(source_arns)}"
                )
            if set(as_list(statement.get("Action"))) != {"s3:GetObject"}:
                problems.append(f"statement {index}: CloudFront needs s3:GetObject only")
        elif services and services <= LOG_DELIVERY_SERVICES:
            if set(as_list(statement.get("Action"))) != {"s3:PutObject"}:
                problems.append(f"statement {index}: log delivery needs s3:PutObject only")
        else:
            problems.append(
                f"statement {index}: allows {statement.get('Principal')!r}; a bucket of this stack "
                "grants only CloudFront (via this distribution's OAC) and log delivery"
            )
    return problems


def check_origin_only_via_distribution(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Bucket policies let CloudFront read only on behalf of this stack's distributions, and no one else in."""
    distribution_arns = {
        str(resource.props["arn"]) for resource in _props_of(resources, DISTRIBUTION) if resource.props.get("arn")
    }
    oac_ids = {
        str(resource.props["id"])
        for resource in _props_of(resources, ORIGIN_ACCESS_CONTROL)
        if resource.props.get("id")
    }
    violations = []
    for policy in _props_of(resources, BUCKET_POLICY):
        problems = _document_violations(
            policy.props.get("policy"),
            f"bucket policy {policy.name!r}",
            lambda statements: _bucket_policy_grant_problems(statements, distribution_arns),
        )
        violations += [Violation(problem, policy.urn) for problem in problems]
    for distribution in _props_of(resources, DISTRIBUTION):
        for origin in as_list(distribution.props.get("origins")):
            control = origin.get("originAccessControlId")
            if control and str(control) not in oac_ids:
                violations.append(
                    Violation(
                        f"origin {origin.get('originId')!r} uses an origin access control this stack does not declare",
                        distribution.urn,
                    )
                )
    return violations


def _allowed_iam_resources(resources: Sequence[DeclaredResource]) -> tuple[set[str], tuple[str, ...]]:
    """Exact ARNs IAM may name, and the ARN prefixes under which it may name anything."""
    exact: set[str] = set()
    prefixes: list[str] = []
    zones = {str(record.props["zoneId"]) for record in _props_of(resources, DNS_RECORD) if record.props.get("zoneId")}
    exact.update(f"arn:aws:route53:::hostedzone/{zone}" for zone in zones)
    if zones:
        exact.add("arn:aws:route53:::change/*")  # a change to one of those zones, named by an ID AWS returns
    for resource in resources:
        arn = resource.props.get("arn") if resource.type in STACK_ARN_TYPES | {BUCKET} else None
        if not arn:
            continue
        if resource.type == BUCKET:
            exact.add(str(arn))
            exact.update(f"{arn}/{key}" for key in BUCKET_KEYS)
            prefixes.extend(f"{arn}/{prefix}" for prefix in MIRROR_PREFIXES)
        elif resource.type == LOG_GROUP:
            exact.add(str(arn))
            prefixes.append(f"{arn}:")
        else:
            exact.update({str(arn), f"{arn}:*"})
    return exact, tuple(prefixes)


def _instance_arn_patterns(resources: Sequence[DeclaredResource]) -> set[str]:
    """`arn:<partition>:ec2:<region>:<account>:instance/*` for each account and region the stack has instances in."""
    return {
        ":".join(str(instance.props["arn"]).split(":")[:5]) + ":instance/*"
        for instance in _props_of(resources, INSTANCE)
        if instance.props.get("arn")
    }


def _iam_documents(resource: DeclaredResource) -> list[tuple[str, Any]]:
    if resource.type in IAM_POLICY_TYPES:
        return [(f"policy {resource.name!r}", resource.props.get("policy"))]
    if resource.type == IAM_ROLE:
        return [
            (f"role {resource.name!r} inline policy {inline.get('name')!r}", inline.get("policy"))
            for inline in as_list(resource.props.get("inlinePolicies"))
        ]
    return []


def check_iam_resources_in_stack(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """IAM names only this stack's bucket prefixes, queues, distribution, functions, log groups and DNS zones,
    and, for the actions an instance calls about itself, the instances of the stack's accounts and regions."""
    exact, prefixes = _allowed_iam_resources(resources)
    instance_patterns = _instance_arn_patterns(resources)

    def in_stack(arn: str, statement: Props) -> bool:
        if arn in exact or arn.startswith(prefixes):
            return True
        return arn in instance_patterns and _only_actions(statement, INSTANCE_SELF_ACTIONS)

    def judge(statements: list[Props]) -> list[str]:
        outside = [
            str(arn)
            for statement in statements
            if statement.get("Effect", "Allow") == "Allow" and not _unscopable(statement)
            for arn in as_list(statement.get("Resource"))
            if not in_stack(str(arn), statement)
        ]
        return [f"resource {arn!r} is outside this stack's bucket prefixes, queues and distribution" for arn in outside]

    violations = []
    for resource in resources:
        for where, document in _iam_documents(resource):
            violations += [
                Violation(f"{where}: {problem}", resource.urn)
                for problem in _document_violations(document, where, judge)
            ]
    return violations


def check_access_logs(resources: Sequence[DeclaredResource]) -> list[Violation]:
    """Every distribution writes access logs: legacy `loggingConfig` or a v2 log delivery source for it."""
    delivered = {
        str(source.props.get("resourceArn"))
        for source in _props_of(resources, LOG_DELIVERY_SOURCE)
        if source.props.get("logType") == "ACCESS_LOGS"
    }
    violations = []
    for distribution in _props_of(resources, DISTRIBUTION):
        legacy = (distribution.props.get("loggingConfig") or {}).get("bucket")
        if not legacy and str(distribution.props.get("arn")) not in delivered:
            violations.append(
                Violation(
                    f"distribution {distribution.name!r} writes no access logs "
                    "(no loggingConfig.bucket, no ACCESS_LOGS delivery source)",
                    distribution.urn,
                )
            )
    return violations


STACK_RULES: tuple[StackRule, ...] = (
    StackRule(
        "s3-bucket-guards-present",
        "every bucket has a public access block, encryption and TLS-only policy",
        check_buckets_covered,
    ),
    StackRule(
        "s3-origin-only-via-distribution",
        "buckets admit CloudFront only for this stack's distribution",
        check_origin_only_via_distribution,
    ),
    StackRule(
        "iam-resources-in-stack",
        "IAM names only this stack's bucket prefixes, queues and distribution",
        check_iam_resources_in_stack,
    ),
    StackRule("cloudfront-access-logs", "every distribution writes access logs", check_access_logs),
)
