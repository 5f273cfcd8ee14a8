"""PypiMirror: the whole mirror as one Pulumi component — origin, CDN, DNS, redirectors, sync function, alarm topics,
dashboard — from one PypiMirrorArgs, with the stack outputs as attributes.

`__main__.py` builds it from the stack's config; another program imports it (`examples/allowlist-mirror/`):

    from infra.config import PypiMirrorArgs
    from infra.stack import PypiMirror

    mirror = PypiMirror("mirror", PypiMirrorArgs(projects=("requests",)))
    pulumi.export("indexUrl", mirror.index_url)

Its children keep the URNs they had as top-level resources (an alias each), so a stack deployed before the
component existed is updated in place, not replaced. Their names are fixed (`origin`, `cdn`, `sync`, ...): one
PypiMirror per stack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.bundle import build_bundle
from infra.cdn import CLOUDFRONT_REGION, Cdn, CdnArgs, CertificateSpec
from infra.config import PypiMirrorArgs, validated
from infra.dashboard import DashboardTargets, dashboard_body, dashboard_url
from infra.dns import HEALTH_METRIC_REGION, Dns, DnsArgs
from infra.origin import Origin, OriginArgs
from infra.redirectors import Redirectors, RedirectorsArgs
from infra.sync_function import SyncFunction, SyncFunctionArgs
from sync.layout import STATUS_KEY

UV_INDEX_NAME = "pypi-cdn"


@dataclass(frozen=True)
class OutputSpec:
    """One stack output: its name, the PypiMirror attribute holding it, what it is."""

    name: str
    attribute: str
    description: str


# Every output, in the order `pulumi stack output` and the README's outputs table show them.
OUTPUTS = (
    OutputSpec("indexUrl", "index_url", "The index clients use: on `domain` when set, else on the CDN's name."),
    OutputSpec("pipConfigCommand", "pip_config_command", "The pip command that makes the mirror pip's index."),
    OutputSpec("uvEnvironment", "uv_environment", "`export UV_DEFAULT_INDEX=...` for uv (its name for UV_INDEX_URL)."),
    OutputSpec("uvProjectConfig", "uv_project_config", "A `[[tool.uv.index]]` table (`default = true`) for pyproject."),
    OutputSpec("statusUrl", "status_url", "The mirror's public status (JSON), rewritten by every planner pass."),
    OutputSpec("dashboardUrl", "dashboard_url", "The CloudWatch dashboard: lag, sync, edge and redirector health."),
    OutputSpec("cdnUrl", "cdn_url", "The CDN: https on `cdnHostname` when set, else on `cloudfrontDomain`."),
    OutputSpec("cloudfrontDomain", "cloudfront_domain", "The distribution's own name under cloudfront.net."),
    OutputSpec("distributionId", "distribution_id", "The CloudFront distribution (for manual invalidations)."),
    OutputSpec("bucket", "bucket", "The mirror bucket."),
    OutputSpec("accessLogBucket", "access_log_bucket", "CloudFront's access logs (us-east-1, W3C, kept 90 days)."),
    OutputSpec("redirectorIps", "redirector_ips", "The Elastic IPs in the multivalue record of `domain`."),
    OutputSpec("plannerFunction", "planner_function", "The planner Lambda's name."),
    OutputSpec("workerFunction", "worker_function", "The queue worker Lambda's name."),
    OutputSpec("syncQueueUrl", "sync_queue_url", "The queue the planner fans projects out on."),
)  # fmt: skip


def uv_project_config(index_url: str) -> str:
    """The pyproject.toml lines that make the mirror uv's default index."""
    return f'[[tool.uv.index]]\nname = "{UV_INDEX_NAME}"\nurl = "{index_url}"\ndefault = true\n'


class PypiMirror(pulumi.ComponentResource):
    """A PyPI mirror on S3 + CloudFront, kept fresh by a sync Lambda, with health-checked redirectors for a domain."""

    index_url: pulumi.Output[str]
    pip_config_command: pulumi.Output[str]
    uv_environment: pulumi.Output[str]
    uv_project_config: pulumi.Output[str]
    status_url: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    cdn_url: pulumi.Output[str]
    cloudfront_domain: pulumi.Output[str]
    distribution_id: pulumi.Output[str]
    bucket: pulumi.Output[str]
    access_log_bucket: pulumi.Output[str]
    redirector_ips: list[pulumi.Output[str]]
    planner_function: pulumi.Output[str]
    worker_function: pulumi.Output[str]
    sync_queue_url: pulumi.Output[str]

    def __init__(self, name: str, args: PypiMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        """Validates `args` first (ConfigError names the config key of a bad value), then declares everything."""
        args = validated(args)
        super().__init__("pypi-cdn:index:PypiMirror", name, None, opts)
        # Children were top-level resources before this component: the alias keeps their URNs (and their children's).
        child = pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)])
        region = aws.get_region().region

        alarms = self._alarm_topic("alarms", args.alarm_email, child)
        origin = Origin("origin", OriginArgs(), child)
        zone: pulumi.Output[aws.route53.GetZoneResult] | None = None
        certificate: CertificateSpec | None = None
        if args.domain is not None and args.cdn_hostname is not None:
            zone = aws.route53.get_zone_output(name=args.zone_name, private_zone=False)
            # Without redirectors the domain itself is an alias of the distribution, so the certificate covers it too.
            names = [args.cdn_hostname] if args.redirectors else [args.cdn_hostname, args.domain]
            certificate = CertificateSpec(zone_id=zone.zone_id, names=list(dict.fromkeys(names)))
        cdn = Cdn(
            "cdn",
            CdnArgs(
                origin_domain_name=origin.regional_domain_name, price_class=args.price_class, certificate=certificate
            ),
            child,
        )
        origin.allow_distribution(cdn.distribution_arn)

        dns: Dns | None = None
        if zone is not None and args.domain is not None and args.cdn_hostname is not None:
            health_alarms = alarms
            if args.redirectors and region != HEALTH_METRIC_REGION:
                health_alarms = self._alarm_topic("alarms-us-east-1", args.alarm_email, child, region=CLOUDFRONT_REGION)
            dns = Dns(
                "dns",
                DnsArgs(
                    zone_id=zone.zone_id,
                    domain=args.domain,
                    cdn_hostname=args.cdn_hostname,
                    redirectors=args.redirectors,
                    distribution_domain_name=cdn.domain_name,
                    distribution_zone_id=cdn.hosted_zone_id,
                    health_alarm_topic_arn=health_alarms.arn,
                ),
                child,
            )
            if args.redirectors:
                Redirectors(
                    "redirectors",
                    RedirectorsArgs(
                        count=args.redirectors,
                        instance_type=args.redirector_instance_type,
                        architecture=args.redirector_architecture,
                        domain=args.domain,
                        cdn_hostname=args.cdn_hostname,
                        dynamic_origin=args.dynamic_origin,
                        zone_id=zone.zone_id,
                        zone_arn=zone.arn,
                        allocation_ids=dns.allocation_ids,
                        acme_email=args.alarm_email,
                    ),
                    child,
                )

        self.cdn_url = (
            pulumi.Output.from_input(f"https://{args.cdn_hostname}")
            if args.cdn_hostname
            else cdn.domain_name.apply(lambda domain: f"https://{domain}")
        )
        sync = SyncFunction(
            "sync",
            SyncFunctionArgs(
                bundle=build_bundle(),
                bucket_name=origin.bucket_name,
                bucket_arn=origin.bucket_arn,
                distribution_id=cdn.distribution_id,
                distribution_arn=cdn.distribution_arn,
                upstream=args.upstream,
                projects=args.projects,
                schedule=args.sync_schedule,
                contact=args.sync_contact,
                invalidation_mode=args.invalidation_mode,
                invalidation_monthly_budget_usd=args.invalidation_monthly_budget_usd,
                inline_sync_threshold=args.inline_sync_threshold,
                lag_alarm_seconds=args.lag_alarm_seconds,
                alarm_topic_arn=alarms.arn,
                public_url=self.cdn_url,
                probe_url=self.cdn_url,
            ),
            child,
        )
        targets = pulumi.Output.all(
            planner=sync.planner_name,
            worker=sync.worker_name,
            queue=sync.queue_name,
            dead_letters=sync.dead_letters_name,
            distribution_id=cdn.distribution_id,
            bucket=origin.bucket_name,
            health_checks=pulumi.Output.all(*(dns.health_check_ids if dns else [])),
        ).apply(lambda names: DashboardTargets(region=region, lag_alarm_seconds=args.lag_alarm_seconds, **names))
        dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=re.sub(r"[^A-Za-z0-9_-]", "-", f"pypi-cdn-{pulumi.get_stack()}-{name}"),
            dashboard_body=targets.apply(lambda watched: json.dumps(dashboard_body(watched), sort_keys=True)),
            opts=pulumi.ResourceOptions(parent=self),
        )

        # The index: the name clients use (redirectors or an alias of the CDN), else CloudFront's own name.
        self.index_url = (
            pulumi.Output.from_input(f"https://{args.domain}/simple/")
            if args.domain
            else self.cdn_url.apply(lambda url: f"{url}/simple/")
        )
        self.pip_config_command = self.index_url.apply(lambda url: f"pip config set global.index-url {url}")
        self.uv_environment = self.index_url.apply(lambda url: f"export UV_DEFAULT_INDEX={url}")
        self.uv_project_config = self.index_url.apply(uv_project_config)
        self.status_url = self.cdn_url.apply(lambda url: f"{url}/{STATUS_KEY}")
        self.dashboard_url = dashboard.dashboard_name.apply(
            lambda dashboard_name: dashboard_url(region, dashboard_name)
        )
        self.cloudfront_domain = cdn.domain_name
        self.distribution_id = cdn.distribution_id
        self.bucket = origin.bucket_name
        self.access_log_bucket = cdn.log_bucket_name
        self.redirector_ips = dns.public_ips if dns else []
        self.planner_function = sync.planner_name
        self.worker_function = sync.worker_name
        self.sync_queue_url = sync.queue_url
        self.register_outputs(self.stack_outputs())

    def stack_outputs(self) -> dict[str, pulumi.Input[object]]:
        """The outputs by their stack output names (OUTPUTS), for `pulumi.export`."""
        return {spec.name: getattr(self, spec.attribute) for spec in OUTPUTS}

    def _alarm_topic(
        self, name: str, email: str | None, opts: pulumi.ResourceOptions, region: str | None = None
    ) -> aws.sns.Topic:
        """An SNS topic for alarms (in `region`, default the stack's), e-mailing `email` once confirmed."""
        topic = aws.sns.Topic(name, region=region, display_name="pypi-cdn alarms", opts=opts)
        if email is not None:
            aws.sns.TopicSubscription(
                f"{name}-email", region=region, topic=topic.arn, protocol="email", endpoint=email, opts=opts
            )
        return topic
