"""Redirectors: small nginx instances behind the health-checked DNS names, one per availability zone in turn.

nginx (configured from the templates in `infra/edge/`) sends `/simple/*` and `/packages/*` to the CDN with path and
query kept, answers `/health` itself and proxies everything else to the dynamic origin. TLS comes from Let's
Encrypt through certbot's DNS-01 challenge, with an instance role that may only change the `_acme-challenge` TXT
record of its own name. No SSH: Session Manager is the way in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from infra.edge.render import RedirectorSettings, render_user_data

INGRESS_PORTS = (80, 443)
ANYWHERE_V4 = "0.0.0.0/0"


def certbot_policy(zone_arn: str, domain: str) -> dict[str, Any]:
    """What certbot-dns-route53 needs for `domain`: find the zone, write its _acme-challenge TXT, watch the change."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FindHostedZone",  # ListHostedZones has no resource-level permissions
                "Effect": "Allow",
                "Action": "route53:ListHostedZones",
                "Resource": "*",
            },
            {
                "Sid": "WatchChange",
                "Effect": "Allow",
                "Action": "route53:GetChange",
                "Resource": "arn:aws:route53:::change/*",
            },
            {
                "Sid": "WriteAcmeChallengeOnly",
                "Effect": "Allow",
                "Action": "route53:ChangeResourceRecordSets",
                "Resource": zone_arn,
                "Condition": {
                    "ForAllValues:StringEquals": {
                        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"_acme-challenge.{domain}"],
                        "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
                    }
                },
            },
        ],
    }


def session_manager_policy(region: str, account_id: str) -> dict[str, Any]:
    """What the SSM agent needs for Session Manager, and nothing else (no Run Command, no parameters, no S3).

    The actions are AWS's minimal instance profile for Session Manager ("Create a custom IAM role for Session
    Manager", https://docs.aws.amazon.com/systems-manager/latest/userguide/getting-started-create-iam-instance-profile.html)
    without its s3:GetEncryptionConfiguration and kms:Decrypt statements, which serve session logs in S3 and
    KMS-encrypted sessions, neither of which this stack configures.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SessionChannels",  # ssmmessages has no resource-level permissions
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            },
            {
                "Sid": "RegisterInstance",  # the agent reports its own instance; its ID is unknown to the role
                "Effect": "Allow",
                "Action": "ssm:UpdateInstanceInformation",
                "Resource": f"arn:aws:ec2:{region}:{account_id}:instance/*",
            },
        ],
    }


def assume_role_policy(service: str) -> str:
    """A trust policy letting one AWS service principal assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        },
        sort_keys=True,
    )


def egress_ports(dynamic_origin: str) -> tuple[int, ...]:
    """Outbound TCP ports: 80/443 (packages, Let's Encrypt, AWS APIs) and the dynamic origin's own port."""
    parts = urlsplit(dynamic_origin)
    origin_port = parts.port or (443 if parts.scheme == "https" else 80)
    return tuple(sorted({80, 443, origin_port}))


@dataclass(frozen=True)
class RedirectorsArgs:
    count: int
    instance_type: str
    architecture: str  # "arm64" or "x86_64", matching instance_type
    domain: str
    cdn_hostname: str
    dynamic_origin: str
    zone_id: pulumi.Input[str]
    zone_arn: pulumi.Input[str]
    allocation_ids: Sequence[pulumi.Input[str]]  # one Elastic IP per redirector (from the DNS component)
    acme_email: str | None = None


class Redirectors(pulumi.ComponentResource):
    """EC2 instances in the default VPC, IMDSv2 only, ports 80/443 in, the Elastic IPs attached."""

    instance_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: RedirectorsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pypi-cdn:index:Redirectors", name, None, opts)
        if len(args.allocation_ids) != args.count:
            raise ValueError(f"redirectors: {args.count} instances need {args.count} Elastic IPs")
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        vpc = aws.ec2.get_vpc_output(default=True, opts=invoke)
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
            opts=invoke,
        )
        image = aws.ec2.get_ami_output(
            owners=["amazon"],
            most_recent=True,
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[f"al2023-ami-2023.*-kernel-*-{args.architecture}"]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=[args.architecture]),
                aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            ],
            opts=invoke,
        )

        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="pypi-cdn redirectors: HTTP and HTTPS in; no SSH (Session Manager)",
            vpc_id=vpc.id,
            opts=child,
        )
        for port in INGRESS_PORTS:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-in-{port}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=ANYWHERE_V4,
                description=f"clients and Route53 health checks, port {port}",
                opts=child,
            )
        for port in egress_ports(args.dynamic_origin):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-out-{port}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=ANYWHERE_V4,
                description=f"packages, Let's Encrypt, AWS APIs and the dynamic origin, port {port}",
                opts=child,
            )

        role = aws.iam.Role(
            f"{name}-role",
            description="pypi-cdn redirector: Session Manager, and certbot DNS-01 on its own name",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            opts=child,
        )
        region = aws.get_region_output(opts=invoke)
        identity = aws.get_caller_identity_output(opts=invoke)
        aws.iam.RolePolicy(
            f"{name}-ssm",
            role=role.id,
            policy=pulumi.Output.all(region.region, identity.account_id).apply(
                lambda values: json.dumps(session_manager_policy(*values), sort_keys=True)
            ),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-certbot",
            role=role.id,
            policy=pulumi.Output.from_input(args.zone_arn).apply(
                lambda zone_arn: json.dumps(certbot_policy(zone_arn, args.domain), sort_keys=True)
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=role.name, opts=child)

        user_data = pulumi.Output.from_input(args.zone_id).apply(
            lambda zone_id: render_user_data(
                RedirectorSettings(
                    domain=args.domain,
                    cdn_hostname=args.cdn_hostname,
                    dynamic_origin=args.dynamic_origin,
                    hosted_zone_id=zone_id,
                    acme_email=args.acme_email,
                )
            )
        )
        self.instance_ids = []
        for index, allocation_id in enumerate(args.allocation_ids):
            instance = aws.ec2.Instance(
                f"{name}-{index}",
                ami=image.id,
                instance_type=args.instance_type,
                availability_zone=zones.names.apply(lambda names, i=index: names[i % len(names)]),
                vpc_security_group_ids=[group.id],
                iam_instance_profile=profile.name,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(encrypted=True, volume_type="gp3"),
                user_data=user_data,
                user_data_replace_on_change=True,  # a new configuration means a fresh instance
                tags={"Name": f"pypi-cdn redirector {index}"},
                # A newer AMI does not replace running redirectors; `pulumi up --replace` rolls them.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"]),
            )
            aws.ec2.EipAssociation(
                f"{name}-{index}-ip", allocation_id=allocation_id, instance_id=instance.id, opts=child
            )
            self.instance_ids.append(instance.id)
        self.register_outputs({"instance_ids": self.instance_ids})
