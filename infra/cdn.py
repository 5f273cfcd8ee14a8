"""The CDN: one CloudFront distribution over the private origin, with PEP 691 negotiation in a viewer-request function.

Behaviours: `/packages/*` is immutable (a year at the edge, compressed); `/simple/*` and everything else go through
the function, which rewrites a page URL to the stored variant (`index.html` or `index.v1_json`) by Accept, so the
URI alone keys the cache. Pages live as long as their Cache-Control says (30 s), within the pages policy's TTLs; the
status (`/status.json`) has a shorter policy. The distribution's additional CloudWatch metrics (cache hit rate,
origin latency, error rates by status) are on, for the dashboard.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.cache_ttls import ERROR_CACHING_SECONDS, FILES_TTLS, PAGES_TTLS, STATUS_TTLS, CacheTtls
from infra.edge import VIEWER_REQUEST_JS
from infra.origin import deny_insecure_transport, private_bucket
from sync.layout import FILES_PREFIX, PAGES_PREFIX, STATUS_KEY, edge_path

CLOUDFRONT_REGION = "us-east-1"  # ACM certificates for CloudFront and CloudFront's log delivery live here
STATUS_PATH = edge_path(STATUS_KEY)  # the mirror's public status, rewritten by every planner pass
MINIMUM_PROTOCOL_VERSION = "TLSv1.2_2021"
LOG_RETENTION_DAYS = 90
READ_METHODS = ["GET", "HEAD"]
HSTS_SECONDS = 2 * 365 * 24 * 3600


@dataclass(frozen=True)
class CertificateSpec:
    """Serve these names with an ACM certificate validated through the Route53 zone."""

    zone_id: pulumi.Input[str]
    names: Sequence[str]  # first = the certificate's domain name, the rest = alternative names


@dataclass(frozen=True)
class CdnArgs:
    origin_domain_name: pulumi.Input[str]  # the bucket's regional domain name
    price_class: str
    certificate: CertificateSpec | None = None  # None: CloudFront's own *.cloudfront.net name and certificate
    function_source: Path = VIEWER_REQUEST_JS


def log_bucket_policy(bucket_arn: str, account_id: str) -> dict[str, Any]:
    """TLS only; CloudWatch's log delivery (for this account's sources in us-east-1) may write objects, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            deny_insecure_transport(bucket_arn),
            {
                "Sid": "LogDeliveryWrites",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"{bucket_arn}/*",
                "Condition": {
                    "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": account_id},
                    "ArnLike": {"aws:SourceArn": f"arn:aws:logs:{CLOUDFRONT_REGION}:{account_id}:delivery-source:*"},
                },
            },
        ],
    }


class Cdn(pulumi.ComponentResource):
    """CloudFront distribution, its function, policies, certificate and access logs."""

    distribution: aws.cloudfront.Distribution
    distribution_arn: pulumi.Output[str]
    distribution_id: pulumi.Output[str]
    domain_name: pulumi.Output[str]
    hosted_zone_id: pulumi.Output[str]
    log_bucket_name: pulumi.Output[str]

    def __init__(self, name: str, args: CdnArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pypi-cdn:index:Cdn", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        access_control = aws.cloudfront.OriginAccessControl(
            f"{name}-oac",
            description="pypi-cdn: CloudFront signs every origin request (SigV4)",
            origin_access_control_origin_type="s3",
            signing_behavior="always",
            signing_protocol="sigv4",
            opts=child,
        )
        self.function = aws.cloudfront.Function(
            f"{name}-viewer-request",
            runtime="cloudfront-js-2.0",
            comment="pypi-cdn: PEP 691 negotiation and PEP 503 URLs",
            code=args.function_source.read_text(encoding="utf-8"),
            publish=True,
            opts=child,
        )
        files_policy = _cache_policy(
            f"{name}-files", "pypi-cdn /packages/*: immutable files, a year at the edge", FILES_TTLS, child
        )
        pages_policy = _cache_policy(
            f"{name}-pages", "pypi-cdn /simple/*: the origin's short max-age, at most 5 minutes", PAGES_TTLS, child
        )
        status_policy = _cache_policy(
            f"{name}-status", "pypi-cdn /status.json: seconds at the edge", STATUS_TTLS, child
        )
        headers_policy = aws.cloudfront.ResponseHeadersPolicy(
            f"{name}-security-headers",
            comment="pypi-cdn: HSTS, nosniff, no framing, no referrer leaks, no active content",
            security_headers_config=_security_headers(),
            opts=child,
        )

        viewer_certificate, aliases = self._viewer_certificate(name, args.certificate)
        function_association = aws.cloudfront.DistributionOrderedCacheBehaviorFunctionAssociationArgs(
            event_type="viewer-request", function_arn=self.function.arn
        )
        origin_id = "mirror-bucket"

        def cache_behavior(
            path_pattern: str,
            cache_policy_id: pulumi.Input[str],
            functions: list[aws.cloudfront.DistributionOrderedCacheBehaviorFunctionAssociationArgs] | None = None,
        ) -> aws.cloudfront.DistributionOrderedCacheBehaviorArgs:
            """A read-only, HTTPS-only, compressed behaviour for `path_pattern` on the mirror bucket."""
            return aws.cloudfront.DistributionOrderedCacheBehaviorArgs(
                path_pattern=path_pattern,
                target_origin_id=origin_id,
                viewer_protocol_policy="https-only",
                allowed_methods=READ_METHODS,
                cached_methods=READ_METHODS,
                compress=True,
                cache_policy_id=cache_policy_id,
                response_headers_policy_id=headers_policy.id,
                function_associations=functions,
            )

        self.distribution = aws.cloudfront.Distribution(
            f"{name}-distribution",
            enabled=True,
            comment="pypi-cdn mirror",
            aliases=aliases,
            price_class=args.price_class,
            http_version="http2and3",
            is_ipv6_enabled=True,
            origins=[
                aws.cloudfront.DistributionOriginArgs(
                    origin_id=origin_id,
                    domain_name=args.origin_domain_name,
                    origin_access_control_id=access_control.id,
                    # OAC with an S3 REST origin: the (deprecated) origin access identity stays empty.
                    s3_origin_config=aws.cloudfront.DistributionOriginS3OriginConfigArgs(origin_access_identity=""),
                )
            ],
            ordered_cache_behaviors=[
                cache_behavior(f"{edge_path(FILES_PREFIX)}*", files_policy.id),
                cache_behavior(f"{edge_path(PAGES_PREFIX)}*", pages_policy.id, functions=[function_association]),
                cache_behavior(STATUS_PATH, status_policy.id, functions=[function_association]),
            ],
            # `/simple` without a slash (redirected by the function) and everything else (404 from the function).
            default_cache_behavior=aws.cloudfront.DistributionDefaultCacheBehaviorArgs(
                target_origin_id=origin_id,
                viewer_protocol_policy="https-only",
                allowed_methods=READ_METHODS,
                cached_methods=READ_METHODS,
                compress=True,
                cache_policy_id=pages_policy.id,
                response_headers_policy_id=headers_policy.id,
                function_associations=[
                    aws.cloudfront.DistributionDefaultCacheBehaviorFunctionAssociationArgs(
                        event_type="viewer-request", function_arn=self.function.arn
                    )
                ],
            ),
            custom_error_responses=[
                aws.cloudfront.DistributionCustomErrorResponseArgs(
                    error_code=code, error_caching_min_ttl=ERROR_CACHING_SECONDS
                )
                for code in (403, 404)
            ],
            restrictions=aws.cloudfront.DistributionRestrictionsArgs(
                geo_restriction=aws.cloudfront.DistributionRestrictionsGeoRestrictionArgs(restriction_type="none")
            ),
            viewer_certificate=viewer_certificate,
            opts=child,
        )
        aws.cloudfront.MonitoringSubscription(
            f"{name}-additional-metrics",
            distribution_id=self.distribution.id,
            monitoring_subscription=aws.cloudfront.MonitoringSubscriptionMonitoringSubscriptionArgs(
                realtime_metrics_subscription_config=aws.cloudfront.MonitoringSubscriptionMonitoringSubscriptionRealtimeMetricsSubscriptionConfigArgs(
                    realtime_metrics_subscription_status="Enabled"
                )
            ),
            opts=child,
        )
        self.distribution_arn = self.distribution.arn
        self.distribution_id = self.distribution.id
        self.domain_name = self.distribution.domain_name
        self.hosted_zone_id = self.distribution.hosted_zone_id
        self.log_bucket_name = self._access_logs(name)
        self.register_outputs(
            {
                "distribution_arn": self.distribution_arn,
                "distribution_id": self.distribution_id,
                "domain_name": self.domain_name,
                "log_bucket_name": self.log_bucket_name,
            }
        )

    def _viewer_certificate(
        self, name: str, spec: CertificateSpec | None
    ) -> tuple[aws.cloudfront.DistributionViewerCertificateArgs, list[str]]:
        """CloudFront's default certificate without names; else an ACM certificate in us-east-1, DNS-validated."""
        if spec is None:
            # CloudFront fixes the TLS policy of its own *.cloudfront.net certificate; none may be set here.
            return aws.cloudfront.DistributionViewerCertificateArgs(cloudfront_default_certificate=True), []
        names = list(spec.names)
        certificate = aws.acm.Certificate(
            f"{name}-certificate",
            region=CLOUDFRONT_REGION,
            domain_name=names[0],
            subject_alternative_names=names[1:],
            validation_method="DNS",
            opts=pulumi.ResourceOptions(parent=self),
        )
        records = [
            _validation_record(f"{name}-validation-{index}", certificate, domain, spec.zone_id, parent=self)
            for index, domain in enumerate(names)
        ]
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validation",
            region=CLOUDFRONT_REGION,
            certificate_arn=certificate.arn,
            validation_record_fqdns=[record.fqdn for record in records],
            opts=pulumi.ResourceOptions(parent=self),
        )
        return (
            aws.cloudfront.DistributionViewerCertificateArgs(
                acm_certificate_arn=validation.certificate_arn,
                ssl_support_method="sni-only",
                minimum_protocol_version=MINIMUM_PROTOCOL_VERSION,
            ),
            names,
        )

    def _access_logs(self, name: str) -> pulumi.Output[str]:
        """Standard logging (v2): CloudWatch log delivery from the distribution into a private bucket."""
        bucket, settings = private_bucket(
            f"{name}-logs",
            parent=self,
            region=CLOUDFRONT_REGION,
            noncurrent_version_days=None,
            expire_days=LOG_RETENTION_DAYS,
        )
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output().account_id
        policy = aws.s3.BucketPolicy(
            f"{name}-logs-policy",
            region=CLOUDFRONT_REGION,
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, account_id).apply(
                lambda values: json.dumps(log_bucket_policy(values[0], values[1]), sort_keys=True)
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=settings),
        )
        source = aws.cloudwatch.LogDeliverySource(
            f"{name}-log-source",
            region=CLOUDFRONT_REGION,
            log_type="ACCESS_LOGS",
            resource_arn=self.distribution.arn,
            opts=child,
        )
        destination = aws.cloudwatch.LogDeliveryDestination(
            f"{name}-log-destination",
            region=CLOUDFRONT_REGION,
            output_format="w3c",  # CloudFront's classic log format, no conversion charge
            delivery_destination_configuration=aws.cloudwatch.LogDeliveryDestinationDeliveryDestinationConfigurationArgs(
                destination_resource_arn=bucket.arn
            ),
            opts=child,
        )
        aws.cloudwatch.LogDelivery(
            f"{name}-log-delivery",
            region=CLOUDFRONT_REGION,
            delivery_source_name=source.name,
            delivery_destination_arn=destination.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]),
        )
        return bucket.bucket


def _cache_policy(name: str, comment: str, ttls: CacheTtls, opts: pulumi.ResourceOptions) -> aws.cloudfront.CachePolicy:
    """A cache policy keyed by the (rewritten) URI alone, with the TTLs the local edge uses too."""
    return aws.cloudfront.CachePolicy(
        name,
        comment=comment,
        min_ttl=ttls.min,
        default_ttl=ttls.default,
        max_ttl=ttls.max,
        parameters_in_cache_key_and_forwarded_to_origin=_uri_only_cache_key(),
        opts=opts,
    )


def _uri_only_cache_key() -> aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginArgs:
    """No headers, cookies or query strings in the key: the (rewritten) URI names the object; gzip/br variants."""
    return aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginArgs(
        cookies_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginCookiesConfigArgs(
            cookie_behavior="none"
        ),
        headers_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginHeadersConfigArgs(
            header_behavior="none"
        ),
        query_strings_config=aws.cloudfront.CachePolicyParametersInCacheKeyAndForwardedToOriginQueryStringsConfigArgs(
            query_string_behavior="none"
        ),
        enable_accept_encoding_gzip=True,
        enable_accept_encoding_brotli=True,
    )


def _security_headers() -> aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs:
    return aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigArgs(
        strict_transport_security=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigStrictTransportSecurityArgs(
            access_control_max_age_sec=HSTS_SECONDS, include_subdomains=False, preload=False, override=True
        ),
        content_type_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentTypeOptionsArgs(
            override=True
        ),
        frame_options=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigFrameOptionsArgs(
            frame_option="DENY", override=True
        ),
        referrer_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigReferrerPolicyArgs(
            referrer_policy="strict-origin-when-cross-origin", override=True
        ),
        content_security_policy=aws.cloudfront.ResponseHeadersPolicySecurityHeadersConfigContentSecurityPolicyArgs(
            content_security_policy="default-src 'none'; frame-ancestors 'none'", override=True
        ),
    )


def _validation_record(
    name: str, certificate: aws.acm.Certificate, domain: str, zone_id: pulumi.Input[str], *, parent: pulumi.Resource
) -> aws.route53.Record:
    """The CNAME that proves control of `domain` to ACM."""
    option = certificate.domain_validation_options.apply(
        lambda options: next(o for o in options if o.domain_name == domain)
    )
    return aws.route53.Record(
        name,
        zone_id=zone_id,
        name=option.apply(lambda o: o.resource_record_name or ""),
        type=option.apply(lambda o: o.resource_record_type or "CNAME"),
        records=[option.apply(lambda o: o.resource_record_value or "")],
        ttl=60,
        allow_overwrite=True,
        opts=pulumi.ResourceOptions(parent=parent),
    )
