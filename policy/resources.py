"""What the stack's security rules judge: resource type tokens, declared resources, violations, and the rules' shape.

Properties are what Pulumi hands a policy pack: camelCase names, nested mappings and sequences (inputs for the
per-resource rules, outputs for the stack rules). Every check returns the violations it found, empty when the
resource complies or the rule does not concern it, so tests call each rule directly with plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
IAM_POLICY_TYPES = frozenset({IAM_ROLE_POLICY, IAM_POLICY})


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


def as_list(value: Any) -> list[Any]:
    """IAM's "one value or a list of them", and Pulumi's optional lists, as a list."""
    if value is None:
        return []
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def of_type(resources: Iterable[DeclaredResource], resource_type: str) -> list[DeclaredResource]:
    return [resource for resource in resources if resource.type == resource_type]
