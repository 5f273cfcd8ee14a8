"""The mirror's CloudWatch dashboard: is it fresh, is the sync healthy, what the edge serves, are redirectors up.

`dashboard_body` is pure (names and ids in, CloudWatch's dashboard JSON out), so tests read every metric it plots.
It plots only what the sync emits (MirrorLagSeconds, EMF, namespace and `service` dimension from the functions'
environment) and what AWS publishes: Lambda and SQS in the stack's region, CloudFront (`Region=Global`, including the
additional metrics the distribution's monitoring subscription turns on) and Route53 health checks in us-east-1, and
the origin bucket's daily storage metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.cdn import CLOUDFRONT_REGION
from infra.dns import HEALTH_METRIC_REGION
from sync.lambda_settings import LAG_METRIC, METRICS_NAMESPACE, SERVICE_NAME

PERIOD = 300  # seconds a point aggregates
STORAGE_PERIOD = 86400  # S3 publishes its storage metrics once a day
WIDTH, HEIGHT = 12, 6  # two widgets a row on CloudWatch's 24-column grid


@dataclass(frozen=True)
class DashboardTargets:
    """What the dashboard watches, by the names and ids CloudWatch's dimensions use."""

    region: str  # the stack's region: the sync's metrics and the bucket's
    planner: str  # function names
    worker: str
    queue: str  # queue names
    dead_letters: str
    distribution_id: str
    bucket: str
    health_checks: Sequence[str] = ()  # one Route53 health check id per redirector
    lag_alarm_seconds: int | None = None  # drawn as a line on the lag graph


def _metric(namespace: str, name: str, dimensions: dict[str, str], **options: Any) -> list[Any]:
    """One line of a graph: CloudWatch's `[namespace, name, dim, value, ..., {options}]`."""
    return [namespace, name, *(part for item in dimensions.items() for part in item), options]


def _graph(title: str, region: str, metrics: list[list[Any]], **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "period": PERIOD,
            "metrics": metrics,
            **properties,
        },
    }


def _widgets(targets: DashboardTargets) -> list[dict[str, Any]]:
    region = targets.region
    edge = {"Region": "Global", "DistributionId": targets.distribution_id}
    functions = {"planner": targets.planner, "worker": targets.worker}
    lag_line = (
        {"annotations": {"horizontal": [{"label": "lag alarm", "value": targets.lag_alarm_seconds}]}}
        if targets.lag_alarm_seconds is not None
        else {}
    )
    widgets = [
        _graph(
            "Mirror lag (s): upstream change to page published",
            region,
            [_metric(METRICS_NAMESPACE, LAG_METRIC, {"service": SERVICE_NAME}, stat="Maximum", label="lag")],
            **lag_line,
        ),
        _graph(
            "Dead letters and queued projects",
            region,
            [
                _metric(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": targets.dead_letters},
                    stat="Maximum",
                    label="dead letters",
                ),
                _metric(
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    {"QueueName": targets.queue},
                    stat="Maximum",
                    label="queued",
                ),
            ],
        ),
        _graph(
            "Planner and worker duration (ms)",
            region,
            [
                _metric("AWS/Lambda", "Duration", {"FunctionName": function}, stat="Maximum", label=f"{role} max")
                for role, function in functions.items()
            ],
        ),
        _graph(
            "Planner and worker errors and throttles",
            region,
            [
                _metric("AWS/Lambda", metric, {"FunctionName": function}, stat="Sum", label=f"{role} {metric.lower()}")
                for role, function in functions.items()
                for metric in ("Errors", "Throttles")
            ],
        ),
        _graph(
            "CloudFront requests",
            CLOUDFRONT_REGION,
            [_metric("AWS/CloudFront", "Requests", edge, stat="Sum", label="requests")],
        ),
        _graph(
            "CloudFront error rates (%)",
            CLOUDFRONT_REGION,
            [
                _metric("AWS/CloudFront", "4xxErrorRate", edge, stat="Average", label="4xx"),
                _metric("AWS/CloudFront", "5xxErrorRate", edge, stat="Average", label="5xx"),
            ],
        ),
        _graph(
            "CloudFront cache hit rate (%)",
            CLOUDFRONT_REGION,
            [_metric("AWS/CloudFront", "CacheHitRate", edge, stat="Average", label="hit rate")],
            yAxis={"left": {"min": 0, "max": 100}},
        ),
        _graph(
            "Bytes served by CloudFront",
            CLOUDFRONT_REGION,
            [_metric("AWS/CloudFront", "BytesDownloaded", edge, stat="Sum", label="bytes to viewers")],
        ),
        _graph(
            "Origin bucket: bytes and objects stored (daily)",
            region,
            [
                _metric(
                    "AWS/S3",
                    "BucketSizeBytes",
                    {"BucketName": targets.bucket, "StorageType": "StandardStorage"},
                    stat="Average",
                    label="bytes",
                ),
                _metric(
                    "AWS/S3",
                    "NumberOfObjects",
                    {"BucketName": targets.bucket, "StorageType": "AllStorageTypes"},
                    stat="Average",
                    label="objects",
                    yAxis="right",
                ),
            ],
            period=STORAGE_PERIOD,
        ),
    ]
    if targets.health_checks:
        widgets.append(
            _graph(
                "Redirector health checks (1 = healthy)",
                HEALTH_METRIC_REGION,
                [
                    _metric(
                        "AWS/Route53",
                        "HealthCheckStatus",
                        {"HealthCheckId": check},
                        stat="Minimum",
                        label=f"redirector {index}",
                    )
                    for index, check in enumerate(targets.health_checks)
                ],
                yAxis={"left": {"min": 0, "max": 1}},
            )
        )
    return widgets


def dashboard_body(targets: DashboardTargets) -> dict[str, Any]:
    """The dashboard as CloudWatch takes it: widgets two a row, in reading order."""
    widgets = _widgets(targets)
    for index, widget in enumerate(widgets):
        widget |= {"x": (index % 2) * WIDTH, "y": (index // 2) * HEIGHT, "width": WIDTH, "height": HEIGHT}
    return {"widgets": widgets}


def dashboard_url(region: str, name: str) -> str:
    return f"https://console.aws.amazon.com/cloudwatch/home?region={region}#dashboards/dashboard/{name}"
