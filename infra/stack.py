"""The whole stack from one StackConfig: origin, CDN, DNS, redirectors, sync function, alarm topics, outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.bundle import build_bundle
from infra.cdn import CLOUDFRONT_REGION, Cdn, CdnArgs, CertificateSpec
from infra.config import StackConfig
from infra.dns import HEALTH_METRIC_REGION, Dns, DnsArgs
from infra.origin import Origin, OriginArgs
from infra.redirectors import Redirectors, RedirectorsArgs
from infra.sync_function import SyncFunction, SyncFunctionArgs


def alarm_topic(name: str, email: str | None, region: str | None = None) -> aws.sns.Topic:
    """An SNS topic for alarms (in `region`, default the stack's), e-mailing `email` once confirmed."""
    topic = aws.sns.Topic(name, region=region, display_name="pypi-cdn alarms")
    if email is not None:
        aws.sns.TopicSubscription(f"{name}-email", region=region, topic=topic.arn, protocol="email", endpoint=email)
    return topic


def build_stack(config: StackConfig) -> dict[str, pulumi.Input[object]]:
    """Declare every resource; return the stack outputs by name."""
    alarms = alarm_topic("alarms", config.alarm_email)
    origin = Origin("origin", OriginArgs())

    zone: pulumi.Output[aws.route53.GetZoneResult] | None = None
    certificate: CertificateSpec | None = None
    if config.domain is not None and config.cdn_hostname is not None:
        zone = aws.route53.get_zone_output(name=config.zone_name, private_zone=False)
        # Without redirectors the domain itself is an alias of the distribution, so the certificate covers it too.
        names = [config.cdn_hostname] if config.redirectors else [config.cdn_hostname, config.domain]
        names = list(dict.fromkeys(names))
        certificate = CertificateSpec(zone_id=zone.zone_id, names=names)
    cdn = Cdn(
        "cdn",
        CdnArgs(
            origin_domain_name=origin.regional_domain_name, price_class=config.price_class, certificate=certificate
        ),
    )
    origin.allow_distribution(cdn.distribution_arn)

    redirector_ips: list[pulumi.Output[str]] = []
    if zone is not None and config.domain is not None and config.cdn_hostname is not None:
        health_alarms = alarms
        if config.redirectors and aws.get_region().region != HEALTH_METRIC_REGION:
            health_alarms = alarm_topic("alarms-us-east-1", config.alarm_email, region=CLOUDFRONT_REGION)
        dns = Dns(
            "dns",
            DnsArgs(
                zone_id=zone.zone_id,
                domain=config.domain,
                cdn_hostname=config.cdn_hostname,
                redirectors=config.redirectors,
                distribution_domain_name=cdn.domain_name,
                distribution_zone_id=cdn.hosted_zone_id,
                health_alarm_topic_arn=health_alarms.arn,
            ),
        )
        redirector_ips = dns.public_ips
        if config.redirectors:
            Redirectors(
                "redirectors",
                RedirectorsArgs(
                    count=config.redirectors,
                    instance_type=config.redirector_instance_type,
                    architecture=config.redirector_architecture,
                    domain=config.domain,
                    cdn_hostname=config.cdn_hostname,
                    dynamic_origin=config.dynamic_origin,
                    zone_id=zone.zone_id,
                    zone_arn=zone.arn,
                    allocation_ids=dns.allocation_ids,
                    acme_email=config.alarm_email,
                ),
            )

    sync = SyncFunction(
        "sync",
        SyncFunctionArgs(
            bundle=build_bundle(),
            bucket_name=origin.bucket_name,
            bucket_arn=origin.bucket_arn,
            distribution_id=cdn.distribution_id,
            distribution_arn=cdn.distribution_arn,
            upstream=config.upstream,
            projects=config.projects,
            schedule=config.sync_schedule,
            contact=config.sync_contact,
            invalidation_mode=config.invalidation_mode,
            invalidation_monthly_budget_usd=config.invalidation_monthly_budget_usd,
            inline_sync_threshold=config.inline_sync_threshold,
            lag_alarm_seconds=config.lag_alarm_seconds,
            alarm_topic_arn=alarms.arn,
        ),
    )

    cdn_url = (
        pulumi.Output.concat("https://", config.cdn_hostname)
        if config.cdn_hostname
        else cdn.domain_name.apply(lambda name: f"https://{name}")
    )
    # pip's index: the name clients use (redirectors or an alias of the CDN), else CloudFront's own name.
    index_url = (
        pulumi.Output.from_input(f"https://{config.domain}/simple/")
        if config.domain
        else cdn_url.apply(lambda url: f"{url}/simple/")
    )
    return {
        "cdnUrl": cdn_url,
        "cloudfrontDomain": cdn.domain_name,
        "indexUrl": index_url,
        "pipConfigCommand": index_url.apply(lambda url: f"pip config set global.index-url {url}"),
        "bucket": origin.bucket_name,
        "accessLogBucket": cdn.log_bucket_name,
        "distributionId": cdn.distribution_id,
        "redirectorIps": redirector_ips,
        "plannerFunction": sync.planner_name,
        "workerFunction": sync.worker_name,
        "syncQueueUrl": sync.queue_url,
    }
