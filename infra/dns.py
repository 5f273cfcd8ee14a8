"""DNS: the CDN's alias, and per redirector an Elastic IP, an HTTPS health check and a multivalue A record.

A redirector that fails `/health` (no TCP connect within 4 s, or no 2xx/3xx 2 s after) three times in a row, checked
every 10 s, leaves the multivalue answer within about 30 s; Route53 hands out at most 8 healthy records, and all
of them when none is healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

HEALTH_CHECK_PATH = "/health"
HEALTH_CHECK_PORT = 443
HEALTH_CHECK_INTERVAL = 10  # seconds: the fast interval (the other choice is 30)
HEALTH_CHECK_FAILURES = 3  # consecutive failures before a redirector is taken out of DNS
RECORD_TTL = 60  # seconds: resolvers drop a failed redirector's address within a minute of the health check
HEALTH_METRIC_REGION = "us-east-1"  # Route53 publishes health-check metrics only there


@dataclass(frozen=True)
class DnsArgs:
    zone_id: pulumi.Input[str]
    domain: str  # the name clients use
    cdn_hostname: str  # CloudFront's alias
    redirectors: int  # 0: `domain` is an alias of the distribution too
    distribution_domain_name: pulumi.Input[str]
    distribution_zone_id: pulumi.Input[str]
    health_alarm_topic_arn: pulumi.Input[str] | None = None  # an SNS topic in us-east-1


class Dns(pulumi.ComponentResource):
    """Records for `domain` and `cdn_hostname`, and the redirectors' addresses with their health checks."""

    allocation_ids: list[pulumi.Output[str]]
    public_ips: list[pulumi.Output[str]]
    health_check_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: DnsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pypi-cdn:index:Dns", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        alias = aws.route53.RecordAliasArgs(
            name=args.distribution_domain_name, zone_id=args.distribution_zone_id, evaluate_target_health=False
        )
        alias_names = [args.cdn_hostname] if args.redirectors else list(dict.fromkeys([args.cdn_hostname, args.domain]))
        for index, hostname in enumerate(alias_names):
            for record_type in ("A", "AAAA"):
                aws.route53.Record(
                    f"{name}-alias-{index}-{record_type.lower()}",
                    zone_id=args.zone_id,
                    name=hostname,
                    type=record_type,
                    aliases=[alias],
                    opts=child,
                )

        self.allocation_ids, self.public_ips, self.health_check_ids = [], [], []
        for index in range(args.redirectors):
            address = aws.ec2.Eip(
                f"{name}-redirector-{index}-ip",
                domain="vpc",
                tags={"Name": f"pypi-cdn redirector {index}"},
                opts=child,
            )
            health_check = aws.route53.HealthCheck(
                f"{name}-redirector-{index}-health",
                type="HTTPS",
                ip_address=address.public_ip,
                port=HEALTH_CHECK_PORT,
                fqdn=args.domain,  # Host header and SNI name of the check
                enable_sni=True,
                resource_path=HEALTH_CHECK_PATH,
                request_interval=HEALTH_CHECK_INTERVAL,
                failure_threshold=HEALTH_CHECK_FAILURES,
                tags={"Name": f"pypi-cdn redirector {index}"},
                opts=child,
            )
            aws.route53.Record(
                f"{name}-redirector-{index}-a",
                zone_id=args.zone_id,
                name=args.domain,
                type="A",
                ttl=RECORD_TTL,
                records=[address.public_ip],
                set_identifier=f"redirector-{index}",
                multivalue_answer_routing_policy=True,
                health_check_id=health_check.id,
                opts=child,
            )
            actions = [args.health_alarm_topic_arn] if args.health_alarm_topic_arn is not None else []
            aws.cloudwatch.MetricAlarm(
                f"{name}-redirector-{index}-unhealthy",
                region=HEALTH_METRIC_REGION,
                alarm_description=f"pypi-cdn redirector {index} fails its {HEALTH_CHECK_PATH} health check",
                namespace="AWS/Route53",
                metric_name="HealthCheckStatus",
                dimensions={"HealthCheckId": health_check.id},
                statistic="Minimum",
                period=60,
                evaluation_periods=2,
                threshold=1,
                comparison_operator="LessThanThreshold",
                treat_missing_data="breaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=child,
            )
            self.allocation_ids.append(address.allocation_id)
            self.public_ips.append(address.public_ip)
            self.health_check_ids.append(health_check.id)
        self.register_outputs({"public_ips": self.public_ips, "health_check_ids": self.health_check_ids})
