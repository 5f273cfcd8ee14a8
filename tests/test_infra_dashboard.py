"""The dashboard, by value: every metric it plots is one the sync code emits or AWS publishes under that name.

AWS's side is one table (PUBLISHED), from AWS's metric references; the sync's side is what its code emits, read
from the EMF document the powertools metrics of `sync.handlers` print under the functions' deployed environment.
Dimension values must name this stack's resources as the mocks created them.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.infra_mocks import REPO_ROOT
from tests.test_infra_stack import CONFIGS, NO_DOMAIN, WITH_REDIRECTORS, named, one, report

STACK_REGION = "eu-west-1"
CLOUDFRONT = ("us-east-1", {"Region", "DistributionId"})  # CloudFront publishes only in us-east-1, Region=Global
# (namespace, metric) -> (region it is published in, None for the stack's; its dimension names).
# Lambda: docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html; SQS: .../sqs-available-cloudwatch-
# metrics.html; CloudFront (CacheHitRate needs the additional metrics): .../programming-cloudwatch-metrics.html;
# Route53: .../monitoring-health-checks.html (us-east-1 only); S3 storage metrics: .../metrics-dimensions.html.
PUBLISHED: dict[tuple[str, str], tuple[str | None, set[str]]] = {
    ("AWS/Lambda", "Duration"): (None, {"FunctionName"}),
    ("AWS/Lambda", "Errors"): (None, {"FunctionName"}),
    ("AWS/Lambda", "Throttles"): (None, {"FunctionName"}),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): (None, {"QueueName"}),
    ("AWS/CloudFront", "Requests"): CLOUDFRONT,
    ("AWS/CloudFront", "4xxErrorRate"): CLOUDFRONT,
    ("AWS/CloudFront", "5xxErrorRate"): CLOUDFRONT,
    ("AWS/CloudFront", "CacheHitRate"): CLOUDFRONT,
    ("AWS/CloudFront", "BytesDownloaded"): CLOUDFRONT,
    ("AWS/Route53", "HealthCheckStatus"): ("us-east-1", {"HealthCheckId"}),
    ("AWS/S3", "BucketSizeBytes"): (None, {"BucketName", "StorageType"}),
    ("AWS/S3", "NumberOfObjects"): (None, {"BucketName", "StorageType"}),
}
ADDITIONAL_CLOUDFRONT_METRICS = {"CacheHitRate"}  # only with the distribution's monitoring subscription
# The list of what the dashboard must show, as (namespace, metric) pairs.
REQUIRED = {
    ("AWS/Lambda", "Duration"),
    ("AWS/Lambda", "Errors"),
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
    ("AWS/CloudFront", "Requests"),
    ("AWS/CloudFront", "4xxErrorRate"),
    ("AWS/CloudFront", "5xxErrorRate"),
    ("AWS/CloudFront", "CacheHitRate"),
    ("AWS/S3", "BucketSizeBytes"),
    ("AWS/Route53", "HealthCheckStatus"),
}


def plotted(stack: dict[str, Any]) -> list[tuple[str, str, dict[str, str], str]]:
    """(namespace, metric, dimensions, region) of every line of every graph of the dashboard."""
    body = json.loads(one(stack, "aws:cloudwatch/dashboard:Dashboard")["dashboardBody"])
    lines = []
    for widget in body["widgets"]:
        assert widget["type"] == "metric"
        assert {"x", "y", "width", "height"} <= set(widget)
        properties = widget["properties"]
        for metric in properties["metrics"]:
            namespace, name, *rest = metric
            options = rest.pop() if rest and isinstance(rest[-1], dict) else {}
            assert len(rest) % 2 == 0, metric
            assert "region" not in options  # the widget's region is the one that counts
            lines.append((namespace, name, dict(zip(rest[::2], rest[1::2], strict=True)), properties["region"]))
    return lines


@functools.cache
def emitted_by_the_sync(environment: tuple[tuple[str, str], ...]) -> tuple[str, str, dict[str, str]]:
    """(namespace, metric, dimensions) of the lag metric as `sync.handlers` emits it under `environment`."""
    script = (
        "import json\nfrom sync import handlers\nhandlers.record_lag(1.5)\n"
        "print(json.dumps(handlers.metrics.serialize_metric_set()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **dict(environment)},
        timeout=60,
        check=True,
    )
    document = json.loads(result.stdout)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (metric,) = directive["Metrics"]
    (dimension_names,) = directive["Dimensions"]
    return directive["Namespace"], metric["Name"], {name: document[name] for name in dimension_names}


@pytest.fixture(params=list(CONFIGS), scope="module")
def stack_name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_plotted_metric_is_emitted_by_the_sync_or_published_by_aws(stack_name: str) -> None:
    stack = report(stack_name)
    environment = named(stack, "aws:lambda/function:Function", "sync-planner")["environment"]["variables"]
    ours = emitted_by_the_sync(
        tuple((key, environment[key]) for key in ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"))
    )
    assert ours[1] == "MirrorLagSeconds"
    lines = plotted(stack)
    assert (*ours, STACK_REGION) in lines  # EMF metrics land in the region the function runs in
    for namespace, name, dimensions, region in lines:
        if (namespace, name, dimensions) == ours:
            continue
        assert (namespace, name) in PUBLISHED, f"{namespace}/{name} is neither emitted by the sync nor AWS's"
        published_region, dimension_names = PUBLISHED[namespace, name]
        assert region == (published_region or STACK_REGION), (namespace, name)
        assert set(dimensions) == dimension_names, (namespace, name)
    has_redirectors = "domain" in CONFIGS[stack_name] and CONFIGS[stack_name].get("redirectors", 2) != 0
    required = REQUIRED if has_redirectors else REQUIRED - {("AWS/Route53", "HealthCheckStatus")}
    assert {(namespace, name) for namespace, name, _, _ in lines} >= required


def test_dimension_values_name_this_stack_s_resources(stack_name: str) -> None:
    stack = report(stack_name)
    environment = named(stack, "aws:lambda/function:Function", "sync-planner")["environment"]["variables"]
    records = [r["inputs"] for r in stack["resources"] if r["type"] == "aws:route53/record:Record"]
    expected = {
        "FunctionName": {"sync-planner-generated", "sync-worker-generated"},
        "QueueName": {"sync-queue-generated", "sync-dlq-generated"},
        "DistributionId": {environment["PYPI_CDN_DISTRIBUTION_ID"]},
        "Region": {"Global"},
        "BucketName": {stack["outputs"]["bucket"]},
        "StorageType": {"StandardStorage", "AllStorageTypes"},
        "HealthCheckId": {record["healthCheckId"] for record in records if "healthCheckId" in record},
        "service": {environment["POWERTOOLS_SERVICE_NAME"]},
    }
    lines = plotted(stack)
    for namespace, name, dimensions, _ in lines:
        for dimension, value in dimensions.items():
            assert value in expected[dimension], (namespace, name, dimension, value)
    health_checks = [dimensions["HealthCheckId"] for namespace, _, dimensions, _ in lines if namespace == "AWS/Route53"]
    assert sorted(health_checks) == sorted(expected["HealthCheckId"])  # one line per redirector
    assert len(health_checks) == (2 if stack_name == WITH_REDIRECTORS else 0)


def test_cache_hit_rate_has_the_additional_metrics_it_needs(stack_name: str) -> None:
    stack = report(stack_name)
    names = {name for namespace, name, _, _ in plotted(stack) if namespace == "AWS/CloudFront"}
    assert names & ADDITIONAL_CLOUDFRONT_METRICS
    subscription = one(stack, "aws:cloudfront/monitoringSubscription:MonitoringSubscription")
    assert (
        subscription["distributionId"]
        == named(stack, "aws:lambda/function:Function", "sync-planner")["environment"]["variables"][
            "PYPI_CDN_DISTRIBUTION_ID"
        ]
    )
    assert subscription["monitoringSubscription"] == {
        "realtimeMetricsSubscriptionConfig": {"realtimeMetricsSubscriptionStatus": "Enabled"}
    }


def test_the_lag_graph_draws_the_alarm_threshold() -> None:
    body = json.loads(one(report(NO_DOMAIN), "aws:cloudwatch/dashboard:Dashboard")["dashboardBody"])
    lag = next(w for w in body["widgets"] if w["properties"]["metrics"][0][1] == "MirrorLagSeconds")
    assert lag["properties"]["annotations"]["horizontal"] == [{"label": "lag alarm", "value": 600}]
