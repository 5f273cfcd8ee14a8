"""The whole Pulumi program under mocks, for three configurations, asserted by value.

Mocks accept any input, so every property that matters is compared with the value AWS needs (enums checked against
botocore's service models), every policy document is parsed and compared statement by statement, and the run must
log no warning (the SDK reports deprecated resources and properties through pulumi.log).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from infra.edge import VIEWER_REQUEST_JS
from infra.edge.render import RedirectorSettings, render_user_data
from infra.stack import OUTPUTS
from sync.config import MirrorConfig
from sync.invalidation import EdgeSettings, InvalidationMode
from sync.lambda_settings import HandlerSettings, settings_from_env
from sync.layout import STATUS_CACHE_CONTROL
from tests.infra_mocks import ACCOUNT_ID, AMI_ID, AVAILABILITY_ZONES, CLOUDFRONT_ZONE_ID, ZONE_ID, run_stack

DOMAIN = "pypi.example.org"
CDN_HOST = "cdn.pypi.example.org"
WITH_REDIRECTORS = "domain-2-redirectors"
NO_DOMAIN = "no-domain"
NO_REDIRECTORS = "domain-0-redirectors-allowlist"
CONFIGS: dict[str, dict[str, object]] = {
    WITH_REDIRECTORS: {
        "domain": DOMAIN,
        "zoneName": "example.org",
        "alarmEmail": "ops@example.org",
        "syncContact": "ops@example.org",
    },
    NO_DOMAIN: {},
    NO_REDIRECTORS: {
        "domain": DOMAIN,
        "zoneName": "example.org",
        "redirectors": 0,
        "projects": ["Requests", "urllib3"],
        "priceClass": "PriceClass_All",
        "invalidationMode": "ttl",
        "syncSchedule": "rate(5 minutes)",
    },
}
DEPRECATED_TYPES = {
    "aws:s3/bucketV2:BucketV2",
    "aws:s3/bucketAclV2:BucketAclV2",
    "aws:s3/bucketVersioningV2:BucketVersioningV2",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    "aws:s3/bucketLoggingV2:BucketLoggingV2",
    "aws:cloudfront/originAccessIdentity:OriginAccessIdentity",
}
DEPRECATED_BUCKET_INPUTS = {
    "acl",
    "grants",
    "versioning",
    "lifecycleRules",
    "serverSideEncryptionConfiguration",
    "policy",
    "logging",
    "website",
    "corsRules",
}
POLICY_INPUTS = ("policy", "assumeRolePolicy", "redrivePolicy", "redriveAllowPolicy")
SESSION_CHANNEL_ACTIONS = [
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
]


@functools.cache
def report(name: str) -> dict[str, Any]:
    result = run_stack(CONFIGS[name], stack=name)
    assert result["error"] is None, result["error"]
    return result


@functools.cache
def enum(service: str, shape: str) -> list[str]:
    return botocore.session.get_session().get_service_model(service).shape_for(shape).enum


def resources(result: dict[str, Any], type_token: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in result["resources"] if r["type"] == type_token]


def named(result: dict[str, Any], type_token: str, name: str) -> dict[str, Any]:
    matches = [r["inputs"] for r in result["resources"] if r["type"] == type_token and r["name"] == name]
    assert len(matches) == 1, f"{type_token} {name}: {len(matches)} found"
    return matches[0]


def one(result: dict[str, Any], type_token: str) -> dict[str, Any]:
    found = resources(result, type_token)
    assert len(found) == 1, f"{type_token}: {len(found)} found"
    return found[0]


def statements(document: str) -> dict[str, dict[str, Any]]:
    parsed = json.loads(document)
    assert parsed["Version"] == "2012-10-17"
    return {statement["Sid"]: statement for statement in parsed["Statement"]}


def mock_arn(result: dict[str, Any], type_token: str, name: str, region: str = "eu-west-1") -> str:
    """The ARN the mocks gave a resource (see RecordingMocks._computed)."""
    named(result, type_token, name)
    service = type_token.split(":")[1].split("/", maxsplit=1)[0]
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}"


BUCKET_ARN = "arn:aws:s3:::origin-bucket-bucket-0001"
LOG_BUCKET_ARN = "arn:aws:s3:::cdn-logs-bucket-0001"
DISTRIBUTION_ARN = f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E1EXAMPLE"


# --- every configuration -------------------------------------------------------------------------------------------


@pytest.fixture(params=list(CONFIGS), scope="module")
def stack(request: pytest.FixtureRequest) -> dict[str, Any]:
    return report(request.param)


def test_runs_without_warnings_or_deprecated_resources(stack: dict[str, Any]) -> None:
    assert stack["warnings"] == []
    types = {r["type"] for r in stack["resources"]}
    assert not types & DEPRECATED_TYPES
    for bucket in resources(stack, "aws:s3/bucket:Bucket"):
        assert not set(bucket) & DEPRECATED_BUCKET_INPUTS


def test_every_policy_document_is_json_without_wildcard_actions(stack: dict[str, Any]) -> None:
    documents = [r["inputs"][key] for r in stack["resources"] for key in POLICY_INPUTS if key in r["inputs"]]
    assert len(documents) >= 6
    for document in documents:
        parsed = json.loads(document)
        for statement in parsed.get("Statement", []):
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if a == "*" or a.endswith(":*")], statement
            if statement.get("Resource") == "*":  # only actions that have no resource-level permission
                assert set(actions) <= {"route53:ListHostedZones", *SESSION_CHANNEL_ACTIONS}, statement


def test_origin_bucket_is_private_versioned_and_encrypted(stack: dict[str, Any]) -> None:
    block = named(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "origin-bucket-public-access")
    assert [
        block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    ] == [True] * 4
    ownership = named(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "origin-bucket-ownership")
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    versioning = one(stack, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    encryption = named(
        stack,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "origin-bucket-encryption",
    )
    assert encryption["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    lifecycle = named(
        stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "origin-bucket-lifecycle"
    )
    rules = {rule["id"]: rule for rule in lifecycle["rules"]}
    assert rules["expire-noncurrent-versions"]["status"] == "Enabled"
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 1


def test_origin_policy_denies_plain_http_and_lets_only_this_distribution_read_public_prefixes(
    stack: dict[str, Any],
) -> None:
    policy = named(stack, "aws:s3/bucketPolicy:BucketPolicy", "origin-bucket-policy")
    found = statements(policy["policy"])
    assert found == {
        "DenyInsecureTransport": {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [BUCKET_ARN, f"{BUCKET_ARN}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        "CloudFrontReadsPublicPrefixes": {
            "Sid": "CloudFrontReadsPublicPrefixes",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": [f"{BUCKET_ARN}/simple/*", f"{BUCKET_ARN}/packages/*", f"{BUCKET_ARN}/status.json"],
            "Condition": {"StringEquals": {"AWS:SourceArn": DISTRIBUTION_ARN}},
        },
    }
    assert ".pypi-cdn" not in policy["policy"]


def test_cloudfront_enums_and_behaviours(stack: dict[str, Any], request: pytest.FixtureRequest) -> None:
    distribution = one(stack, "aws:cloudfront/distribution:Distribution")
    assert distribution["httpVersion"] == "http2and3"
    assert distribution["httpVersion"] in enum("cloudfront", "HttpVersion")
    assert distribution["isIpv6Enabled"] is True
    assert distribution["enabled"] is True
    expected_price = CONFIGS[request.node.callspec.params["stack"]].get("priceClass", "PriceClass_100")
    assert distribution["priceClass"] == expected_price
    assert distribution["priceClass"] in enum("cloudfront", "PriceClass")
    behaviours = {b["pathPattern"]: b for b in distribution["orderedCacheBehaviors"]}
    assert list(behaviours) == ["/packages/*", "/simple/*", "/status.json"]
    every = [*behaviours.values(), distribution["defaultCacheBehavior"]]
    for behaviour in every:
        assert behaviour["viewerProtocolPolicy"] == "https-only"
        assert behaviour["viewerProtocolPolicy"] in enum("cloudfront", "ViewerProtocolPolicy")
        assert behaviour["allowedMethods"] == ["GET", "HEAD"]
        assert behaviour["compress"] is True
        assert behaviour["targetOriginId"] == "mirror-bucket"
    function_arn = mock_arn(stack, "aws:cloudfront/function:Function", "cdn-viewer-request")
    pages = [behaviours["/simple/*"], distribution["defaultCacheBehavior"]]
    for behaviour in [*pages, behaviours["/status.json"]]:
        assert behaviour["functionAssociations"] == [{"eventType": "viewer-request", "functionArn": function_arn}]
    for behaviour in pages:
        assert behaviour["cachePolicyId"] == behaviours["/simple/*"]["cachePolicyId"]
    assert behaviours["/status.json"]["cachePolicyId"].startswith("cdn-status-")
    assert "functionAssociations" not in behaviours["/packages/*"]
    assert behaviours["/packages/*"]["cachePolicyId"] != behaviours["/simple/*"]["cachePolicyId"]
    origin = distribution["origins"][0]
    assert origin["domainName"] == "origin-bucket-bucket-0001.s3.eu-west-1.amazonaws.com"
    assert origin["originAccessControlId"].startswith("cdn-oac-")
    assert [(e["errorCode"], e["errorCachingMinTtl"]) for e in distribution["customErrorResponses"]] == [
        (403, 10),
        (404, 10),
    ]
    access_control = one(stack, "aws:cloudfront/originAccessControl:OriginAccessControl")
    assert access_control["originAccessControlOriginType"] == "s3"
    assert access_control["signingBehavior"] == "always"
    assert access_control["signingProtocol"] == "sigv4"
    assert access_control["signingBehavior"] in enum("cloudfront", "OriginAccessControlSigningBehaviors")


def test_cache_policies_ttls_and_keys(stack: dict[str, Any]) -> None:
    files = named(stack, "aws:cloudfront/cachePolicy:CachePolicy", "cdn-files")
    pages = named(stack, "aws:cloudfront/cachePolicy:CachePolicy", "cdn-pages")
    assert (files["minTtl"], files["defaultTtl"], files["maxTtl"]) == (86400, 31536000, 31536000)
    assert (pages["minTtl"], pages["defaultTtl"], pages["maxTtl"]) == (0, 60, 300)
    status = named(stack, "aws:cloudfront/cachePolicy:CachePolicy", "cdn-status")
    assert (status["minTtl"], status["defaultTtl"], status["maxTtl"]) == (0, 10, 30)
    assert STATUS_CACHE_CONTROL == "public, max-age=10"  # what the planner stores it with: within the edge's bounds
    for policy in (files, pages, status):
        key = policy["parametersInCacheKeyAndForwardedToOrigin"]
        assert key["headersConfig"] == {"headerBehavior": "none"}  # Accept is folded into the URI by the function
        assert key["cookiesConfig"] == {"cookieBehavior": "none"}
        assert key["queryStringsConfig"] == {"queryStringBehavior": "none"}
        assert key["enableAcceptEncodingGzip"] is True
        assert key["enableAcceptEncodingBrotli"] is True


def test_viewer_request_function_is_the_file_on_disk(stack: dict[str, Any]) -> None:
    function = one(stack, "aws:cloudfront/function:Function")
    assert function["code"] == VIEWER_REQUEST_JS.read_text(encoding="utf-8")
    assert function["runtime"] == "cloudfront-js-2.0"
    assert function["runtime"] in enum("cloudfront", "FunctionRuntime")
    assert function["publish"] is True


def test_security_headers(stack: dict[str, Any]) -> None:
    headers = one(stack, "aws:cloudfront/responseHeadersPolicy:ResponseHeadersPolicy")["securityHeadersConfig"]
    assert headers["strictTransportSecurity"]["accessControlMaxAgeSec"] >= 31536000
    assert headers["strictTransportSecurity"]["override"] is True
    assert headers["contentTypeOptions"] == {"override": True}
    assert headers["frameOptions"]["frameOption"] == "DENY"
    assert headers["frameOptions"]["frameOption"] in enum("cloudfront", "FrameOptionsList")
    assert headers["referrerPolicy"]["referrerPolicy"] in enum("cloudfront", "ReferrerPolicyList")
    assert "default-src 'none'" in headers["contentSecurityPolicy"]["contentSecurityPolicy"]


def test_access_logs_go_to_a_private_bucket_in_us_east_1(stack: dict[str, Any]) -> None:
    source = one(stack, "aws:cloudwatch/logDeliverySource:LogDeliverySource")
    destination = one(stack, "aws:cloudwatch/logDeliveryDestination:LogDeliveryDestination")
    delivery = one(stack, "aws:cloudwatch/logDelivery:LogDelivery")
    assert (source["region"], destination["region"], delivery["region"]) == ("us-east-1",) * 3
    assert source["logType"] == "ACCESS_LOGS"
    assert source["resourceArn"] == DISTRIBUTION_ARN
    assert destination["deliveryDestinationConfiguration"]["destinationResourceArn"] == LOG_BUCKET_ARN
    assert destination["outputFormat"] in enum("logs", "OutputFormat")
    assert delivery["deliverySourceName"] == "cdn-log-source-generated"
    block = named(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "cdn-logs-public-access")
    assert block["region"] == "us-east-1"
    assert block["blockPublicAcls"] is True
    assert block["restrictPublicBuckets"] is True
    policy = statements(named(stack, "aws:s3/bucketPolicy:BucketPolicy", "cdn-logs-policy")["policy"])
    writes = policy["LogDeliveryWrites"]
    assert writes["Principal"] == {"Service": "delivery.logs.amazonaws.com"}
    assert writes["Action"] == "s3:PutObject"
    assert writes["Resource"] == f"{LOG_BUCKET_ARN}/*"
    assert writes["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT_ID
    assert writes["Condition"]["ArnLike"]["aws:SourceArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT_ID}:delivery-source:*"


def test_lambdas_run_the_bundle_on_python_3_13_arm64(stack: dict[str, Any], request: pytest.FixtureRequest) -> None:
    config = CONFIGS[request.node.callspec.params["stack"]]
    planner = named(stack, "aws:lambda/function:Function", "sync-planner")
    worker = named(stack, "aws:lambda/function:Function", "sync-worker")
    assert planner["handler"] == "sync.handlers.planner_handler"
    assert worker["handler"] == "sync.handlers.worker_handler"
    for function in (planner, worker):
        assert function["runtime"] == "python3.13"
        assert function["runtime"] in enum("lambda", "Runtime")
        assert function["architectures"] == ["arm64"]
        assert function["architectures"][0] in enum("lambda", "Architecture")
        zip_path = Path(function["code"]["path"])
        assert zip_path.suffix == ".zip"
        digest = base64.b64encode(hashlib.sha256(zip_path.read_bytes()).digest()).decode()
        assert function["sourceCodeHash"] == digest
        assert function["role"] == mock_arn(stack, "aws:iam/role:Role", "sync-role")
        assert function["loggingConfig"]["logGroup"].startswith("/pypi-cdn/")
        env = function["environment"]["variables"]
        assert env["PYPI_CDN_DEST"] == "s3://origin-bucket-bucket-0001"
        assert env["PYPI_CDN_UPSTREAM"] == "https://pypi.org"
        assert env["PYPI_CDN_DISTRIBUTION_ID"].startswith("cdn-distribution-")
        assert env["PYPI_CDN_QUEUE_URL"].endswith("/sync-queue-generated")
        assert env.get("PYPI_CDN_CONTACT") == config.get("syncContact")
        assert env["PYPI_CDN_INVALIDATION_MODE"] == config.get("invalidationMode", "targeted")
        assert env["PYPI_CDN_PROBE_URL"] == stack["outputs"]["cdnUrl"]  # the planner reads changes back there
        assert env["POWERTOOLS_SERVICE_NAME"] == "pypi-cdn-sync"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "pypi-cdn"
        # The whole environment is what the handlers' settings render, with the resources' values merged in.
        outputs, projects, contact = stack["outputs"], config.get("projects", []), config.get("syncContact")
        assert isinstance(projects, list)
        assert contact is None or isinstance(contact, str)
        expected = HandlerSettings(
            mirror=MirrorConfig(
                dest=f"s3://{outputs['bucket']}",
                projects=tuple(str(name) for name in projects),
                contact=contact,
                workers=2,  # 10 upstream requests shared by the planner and 4 workers
                lease_ttl=300,
                public_url=outputs["cdnUrl"],
            ),
            queue_url=outputs["syncQueueUrl"],
            distribution_id=outputs["distributionId"],
            probe_url=outputs["cdnUrl"],
            inline_threshold=50,
            upstream_concurrency=10,
            max_workers=4,
            edge=EdgeSettings(InvalidationMode(config.get("invalidationMode", "targeted")), 5),
        )
        assert env == expected.to_env()
        assert settings_from_env(env) == expected
    assert planner["reservedConcurrentExecutions"] == 1
    assert worker["reservedConcurrentExecutions"] == int(worker["environment"]["variables"]["PYPI_CDN_MAX_WORKERS"])
    assert planner["timeout"] < int(planner["environment"]["variables"]["PYPI_CDN_LEASE_TTL"])
    log_groups = resources(stack, "aws:cloudwatch/logGroup:LogGroup")
    assert sorted(g["name"] for g in log_groups) == [
        planner["loggingConfig"]["logGroup"],
        worker["loggingConfig"]["logGroup"],
    ]
    assert {g["retentionInDays"] for g in log_groups} == {30}


def test_queue_dead_letters_and_partial_batch_failures(stack: dict[str, Any]) -> None:
    queue = named(stack, "aws:sqs/queue:Queue", "sync-queue")
    dead_letters_arn = mock_arn(stack, "aws:sqs/queue:Queue", "sync-dlq")
    assert json.loads(queue["redrivePolicy"]) == {"deadLetterTargetArn": dead_letters_arn, "maxReceiveCount": 5}
    worker = named(stack, "aws:lambda/function:Function", "sync-worker")
    assert queue["visibilityTimeoutSeconds"] >= 6 * worker["timeout"]
    mapping = one(stack, "aws:lambda/eventSourceMapping:EventSourceMapping")
    assert mapping["eventSourceArn"] == mock_arn(stack, "aws:sqs/queue:Queue", "sync-queue")
    assert mapping["functionName"] == mock_arn(stack, "aws:lambda/function:Function", "sync-worker")
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["functionResponseTypes"][0] in enum("lambda", "FunctionResponseType")
    assert 2 <= mapping["scalingConfig"]["maximumConcurrency"] <= worker["reservedConcurrentExecutions"]
    allow = json.loads(one(stack, "aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")["redriveAllowPolicy"])
    assert allow == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [mock_arn(stack, "aws:sqs/queue:Queue", "sync-queue")],
    }


def test_schedule_invokes_the_planner_only(stack: dict[str, Any], request: pytest.FixtureRequest) -> None:
    config = CONFIGS[request.node.callspec.params["stack"]]
    schedule = one(stack, "aws:scheduler/schedule:Schedule")
    planner_arn = mock_arn(stack, "aws:lambda/function:Function", "sync-planner")
    assert schedule["scheduleExpression"] == config.get("syncSchedule", "rate(1 minute)")
    assert schedule["state"] == "ENABLED"
    assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
    assert schedule["target"]["arn"] == planner_arn
    assert schedule["target"]["roleArn"] == mock_arn(stack, "aws:iam/role:Role", "sync-scheduler-role")
    assert json.loads(named(stack, "aws:iam/role:Role", "sync-scheduler-role")["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "scheduler.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    invoke = statements(named(stack, "aws:iam/rolePolicy:RolePolicy", "sync-scheduler-policy")["policy"])
    assert invoke == {
        "InvokePlanner": {
            "Sid": "InvokePlanner",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": planner_arn,
        }
    }
    retries = one(stack, "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
    assert retries["maximumRetryAttempts"] == 0


def test_sync_role_grants_exactly_the_listed_permissions(stack: dict[str, Any]) -> None:
    role = named(stack, "aws:iam/role:Role", "sync-role")
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    policy = statements(named(stack, "aws:iam/rolePolicy:RolePolicy", "sync-policy")["policy"])
    queue_arn = mock_arn(stack, "aws:sqs/queue:Queue", "sync-queue")
    log_arns = [mock_arn(stack, "aws:cloudwatch/logGroup:LogGroup", f"sync-{r}-logs") for r in ("planner", "worker")]
    assert {sid: (s["Effect"], s["Action"], s["Resource"]) for sid, s in policy.items()} == {
        "MirrorObjects": (
            "Allow",
            ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            [
                f"{BUCKET_ARN}/simple/*",
                f"{BUCKET_ARN}/packages/*",
                f"{BUCKET_ARN}/.pypi-cdn/*",
                f"{BUCKET_ARN}/status.json",
            ],
        ),
        "ListMirror": ("Allow", "s3:ListBucket", BUCKET_ARN),
        "InvalidateThisDistribution": (
            "Allow",
            ["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation", "cloudfront:ListInvalidations"],
            DISTRIBUTION_ARN,
        ),
        "ThisQueue": (
            "Allow",
            [
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ],
            queue_arn,
        ),
        "OwnLogs": ("Allow", ["logs:CreateLogStream", "logs:PutLogEvents"], [f"{arn}:*" for arn in log_arns]),
    }
    assert not any("Condition" in s for s in policy.values())


def test_sync_alarms(stack: dict[str, Any]) -> None:
    alarms = {
        r["name"]: r["inputs"] for r in stack["resources"] if r["type"] == "aws:cloudwatch/metricAlarm:MetricAlarm"
    }
    topic_arn = mock_arn(stack, "aws:sns/topic:Topic", "alarms")
    for role in ("planner", "worker"):
        errors = alarms[f"sync-{role}-errors"]
        assert (errors["namespace"], errors["metricName"]) == ("AWS/Lambda", "Errors")
        assert errors["dimensions"] == {"FunctionName": f"sync-{role}-generated"}
    dead = alarms["sync-dead-letters"]
    assert (dead["namespace"], dead["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dead["dimensions"] == {"QueueName": "sync-dlq-generated"}
    assert (dead["threshold"], dead["comparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    lag = alarms["sync-mirror-lag"]
    assert (lag["namespace"], lag["metricName"]) == ("pypi-cdn", "MirrorLagSeconds")
    assert lag["dimensions"] == {"service": "pypi-cdn-sync"}
    assert lag["threshold"] == 600
    assert lag["treatMissingData"] == "breaching"
    for name in ("sync-planner-errors", "sync-worker-errors", "sync-dead-letters", "sync-mirror-lag"):
        assert alarms[name]["alarmActions"] == [topic_arn]
        assert "region" not in alarms[name]


def test_the_lambdas_know_the_public_url_pages_point_at_for_provenance(stack: dict[str, Any]) -> None:
    for name in ("sync-planner", "sync-worker"):
        env = named(stack, "aws:lambda/function:Function", name)["environment"]["variables"]
        assert env["PYPI_CDN_PUBLIC_URL"] == stack["outputs"]["cdnUrl"]
        assert env["PYPI_CDN_PUBLIC_URL"].startswith("https://")


def test_outputs_name_the_index_and_the_resources(stack: dict[str, Any], request: pytest.FixtureRequest) -> None:
    outputs = stack["outputs"]
    config = CONFIGS[request.node.callspec.params["stack"]]
    index_url = f"https://{config['domain']}/simple/" if "domain" in config else outputs["cdnUrl"] + "/simple/"
    assert outputs["indexUrl"] == index_url
    assert outputs["pipConfigCommand"] == f"pip config set global.index-url {index_url}"
    assert outputs["uvEnvironment"] == f"export UV_DEFAULT_INDEX={index_url}"
    assert tomllib.loads(outputs["uvProjectConfig"]) == {
        "tool": {"uv": {"index": [{"name": "pypi-cdn", "url": index_url, "default": True}]}}
    }
    assert outputs["statusUrl"] == outputs["cdnUrl"] + "/status.json"
    dashboard = one(stack, "aws:cloudwatch/dashboard:Dashboard")
    assert outputs["dashboardUrl"] == (
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards/dashboard/"
        + dashboard["dashboardName"]
    )
    assert dashboard["dashboardName"] == f"pypi-cdn-{request.node.callspec.params['stack']}-mirror"
    assert list(outputs) == [spec.name for spec in OUTPUTS]
    assert outputs["bucket"] == "origin-bucket-bucket-0001"
    assert outputs["plannerFunction"] == "sync-planner-generated"
    assert outputs["workerFunction"] == "sync-worker-generated"
    assert outputs["cloudfrontDomain"] == "d111111abcdef8.cloudfront.net"


# --- domain + 2 redirectors ----------------------------------------------------------------------------------------


def test_certificate_in_us_east_1_validated_through_route53() -> None:
    stack = report(WITH_REDIRECTORS)
    certificate = one(stack, "aws:acm/certificate:Certificate")
    assert certificate["region"] == "us-east-1"
    assert certificate["domainName"] == CDN_HOST
    assert certificate.get("subjectAlternativeNames", []) == []
    assert certificate["validationMethod"] == "DNS"
    record = named(stack, "aws:route53/record:Record", "cdn-validation-0")
    assert (record["zoneId"], record["name"], record["type"]) == (ZONE_ID, f"_x0.{CDN_HOST}.", "CNAME")
    validation = one(stack, "aws:acm/certificateValidation:CertificateValidation")
    assert validation["region"] == "us-east-1"
    assert validation["validationRecordFqdns"] == [f"_x0.{CDN_HOST}."]
    distribution = one(stack, "aws:cloudfront/distribution:Distribution")
    assert distribution["aliases"] == [CDN_HOST]
    viewer = distribution["viewerCertificate"]
    assert viewer["acmCertificateArn"] == f"arn:aws:acm:us-east-1:{ACCOUNT_ID}:cdn-certificate"
    assert viewer["sslSupportMethod"] == "sni-only"
    assert viewer["minimumProtocolVersion"] == "TLSv1.2_2021"
    assert viewer["minimumProtocolVersion"] in enum("cloudfront", "MinimumProtocolVersion")
    assert "cloudfrontDefaultCertificate" not in viewer


def test_health_checks_and_multivalue_records_per_redirector() -> None:
    stack = report(WITH_REDIRECTORS)
    addresses = resources(stack, "aws:ec2/eip:Eip")
    assert [a["domain"] for a in addresses] == ["vpc", "vpc"]
    ips = stack["outputs"]["redirectorIps"]
    assert len(ips) == 2
    assert len(set(ips)) == 2
    checks = {r["name"]: r for r in stack["resources"] if r["type"] == "aws:route53/healthCheck:HealthCheck"}
    for index, ip in enumerate(ips):
        check = named(stack, "aws:route53/healthCheck:HealthCheck", f"dns-redirector-{index}-health")
        assert check["type"] == "HTTPS"
        assert check["type"] in enum("route53", "HealthCheckType")
        assert check["resourcePath"] == "/health"
        assert check["port"] == 443
        assert check["requestInterval"] == 10
        assert check["failureThreshold"] == 3
        assert check["ipAddress"] == ip
        assert check["fqdn"] == DOMAIN
        assert check["enableSni"] is True
        record = named(stack, "aws:route53/record:Record", f"dns-redirector-{index}-a")
        assert record["zoneId"] == ZONE_ID
        assert record["name"] == DOMAIN
        assert record["type"] == "A"
        assert record["ttl"] <= 60
        assert record["records"] == [ip]
        assert record["multivalueAnswerRoutingPolicy"] is True
        assert record["setIdentifier"] == f"redirector-{index}"
        assert record["healthCheckId"].startswith(f"dns-redirector-{index}-health-")
        alarm = named(stack, "aws:cloudwatch/metricAlarm:MetricAlarm", f"dns-redirector-{index}-unhealthy")
        assert alarm["region"] == "us-east-1"
        assert (alarm["namespace"], alarm["metricName"]) == ("AWS/Route53", "HealthCheckStatus")
        assert alarm["dimensions"] == {"HealthCheckId": record["healthCheckId"]}
        assert (alarm["threshold"], alarm["comparisonOperator"]) == (1, "LessThanThreshold")
        assert alarm["alarmActions"] == [f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:alarms-us-east-1"]
    assert len(checks) == 2
    topic = named(stack, "aws:sns/topic:Topic", "alarms-us-east-1")
    assert topic["region"] == "us-east-1"
    subscription = named(stack, "aws:sns/topicSubscription:TopicSubscription", "alarms-us-east-1-email")
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "ops@example.org")


def test_cdn_hostname_aliases_the_distribution() -> None:
    stack = report(WITH_REDIRECTORS)
    aliases = [r for r in resources(stack, "aws:route53/record:Record") if "aliases" in r]
    assert sorted((r["name"], r["type"]) for r in aliases) == [(CDN_HOST, "A"), (CDN_HOST, "AAAA")]
    for record in aliases:
        assert record["aliases"] == [
            {"name": "d111111abcdef8.cloudfront.net", "zoneId": CLOUDFRONT_ZONE_ID, "evaluateTargetHealth": False}
        ]


def test_redirector_instances() -> None:
    stack = report(WITH_REDIRECTORS)
    instances = [named(stack, "aws:ec2/instance:Instance", f"redirectors-{i}") for i in range(2)]
    assert [i["availabilityZone"] for i in instances] == AVAILABILITY_ZONES[:2]
    expected_user_data = render_user_data(
        RedirectorSettings(
            domain=DOMAIN,
            cdn_hostname=CDN_HOST,
            dynamic_origin="https://pypi.org",
            hosted_zone_id=ZONE_ID,
            acme_email="ops@example.org",
        )
    )
    for instance in instances:
        assert instance["ami"] == AMI_ID
        assert instance["instanceType"] == "t4g.micro"
        assert instance["metadataOptions"] == {
            "httpEndpoint": "enabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        }
        assert instance["userData"] == expected_user_data
        assert instance["userDataReplaceOnChange"] is True
        assert instance["rootBlockDevice"]["encrypted"] is True
        assert "keyName" not in instance
        assert instance["iamInstanceProfile"] == "redirectors-profile-generated"
    ami_lookup = next(i["args"] for i in stack["invokes"] if i["token"] == "aws:ec2/getAmi:getAmi")
    filters = {f["name"]: f["values"] for f in ami_lookup["filters"]}
    assert filters["name"] == ["al2023-ami-2023.*-kernel-*-arm64"]
    assert filters["architecture"] == ["arm64"]
    assert ami_lookup["owners"] == ["amazon"]
    assert ami_lookup["mostRecent"] is True
    for index in range(2):
        association = named(stack, "aws:ec2/eipAssociation:EipAssociation", f"redirectors-{index}-ip")
        assert association["instanceId"].startswith(f"redirectors-{index}-0")
        assert association["allocationId"].startswith(f"eipalloc-dns-redirector-{index}-ip-")


def test_security_group_opens_80_and_443_only() -> None:
    stack = report(WITH_REDIRECTORS)
    ingress = resources(stack, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert sorted((r["ipProtocol"], r["fromPort"], r["toPort"], r["cidrIpv4"]) for r in ingress) == [
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
    ]
    group = one(stack, "aws:ec2/securityGroup:SecurityGroup")
    assert "ingress" not in group
    assert group["vpcId"] == "vpc-0123456789abcdef0"
    egress = resources(stack, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert sorted(r["fromPort"] for r in egress) == [80, 443]


def test_redirector_role_is_session_manager_plus_acme_challenge_only() -> None:
    stack = report(WITH_REDIRECTORS)
    role = named(stack, "aws:iam/role:Role", "redirectors-role")
    assert json.loads(role["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    assert resources(stack, "aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []  # no AWS-managed policy
    session_manager = named(stack, "aws:iam/rolePolicy:RolePolicy", "redirectors-ssm")
    certbot = named(stack, "aws:iam/rolePolicy:RolePolicy", "redirectors-certbot")
    assert session_manager["role"] == certbot["role"]
    assert session_manager["role"].startswith("redirectors-role-")
    assert statements(session_manager["policy"]) == {
        "SessionChannels": {
            "Sid": "SessionChannels",
            "Effect": "Allow",
            "Action": SESSION_CHANNEL_ACTIONS,
            "Resource": "*",
        },
        "RegisterInstance": {
            "Sid": "RegisterInstance",
            "Effect": "Allow",
            "Action": "ssm:UpdateInstanceInformation",
            "Resource": f"arn:aws:ec2:eu-west-1:{ACCOUNT_ID}:instance/*",
        },
    }
    policy = statements(certbot["policy"])
    assert policy["WriteAcmeChallengeOnly"] == {
        "Sid": "WriteAcmeChallengeOnly",
        "Effect": "Allow",
        "Action": "route53:ChangeResourceRecordSets",
        "Resource": f"arn:aws:route53:::hostedzone/{ZONE_ID}",
        "Condition": {
            "ForAllValues:StringEquals": {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": [f"_acme-challenge.{DOMAIN}"],
                "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
            }
        },
    }
    assert (policy["WatchChange"]["Action"], policy["WatchChange"]["Resource"]) == (
        "route53:GetChange",
        "arn:aws:route53:::change/*",
    )
    assert (policy["FindHostedZone"]["Action"], policy["FindHostedZone"]["Resource"]) == (
        "route53:ListHostedZones",
        "*",
    )
    assert set(policy) == {"WriteAcmeChallengeOnly", "WatchChange", "FindHostedZone"}


# --- no domain -----------------------------------------------------------------------------------------------------


def test_without_a_domain_only_cloudfront_s_own_name_is_used() -> None:
    stack = report(NO_DOMAIN)
    types = {r["type"] for r in stack["resources"]}
    for absent in (
        "aws:route53/record:Record",
        "aws:route53/healthCheck:HealthCheck",
        "aws:ec2/eip:Eip",
        "aws:ec2/instance:Instance",
        "aws:acm/certificate:Certificate",
        "aws:ec2/securityGroup:SecurityGroup",
    ):
        assert absent not in types
    assert "aws:route53/getZone:getZone" not in {i["token"] for i in stack["invokes"]}
    distribution = one(stack, "aws:cloudfront/distribution:Distribution")
    assert distribution["viewerCertificate"] == {"cloudfrontDefaultCertificate": True}
    assert distribution.get("aliases", []) == []
    assert stack["outputs"]["cdnUrl"] == "https://d111111abcdef8.cloudfront.net"
    assert stack["outputs"]["indexUrl"] == "https://d111111abcdef8.cloudfront.net/simple/"
    assert stack["outputs"]["redirectorIps"] == []
    assert len(resources(stack, "aws:sns/topic:Topic")) == 1
    assert resources(stack, "aws:sns/topicSubscription:TopicSubscription") == []


# --- domain + 0 redirectors + allowlist ----------------------------------------------------------------------------


def test_without_redirectors_the_domain_aliases_cloudfront() -> None:
    stack = report(NO_REDIRECTORS)
    types = {r["type"] for r in stack["resources"]}
    for absent in ("aws:route53/healthCheck:HealthCheck", "aws:ec2/eip:Eip", "aws:ec2/instance:Instance"):
        assert absent not in types
    aliases = [r for r in resources(stack, "aws:route53/record:Record") if "aliases" in r]
    assert sorted((r["name"], r["type"]) for r in aliases) == [
        (CDN_HOST, "A"),
        (CDN_HOST, "AAAA"),
        (DOMAIN, "A"),
        (DOMAIN, "AAAA"),
    ]
    certificate = one(stack, "aws:acm/certificate:Certificate")
    assert [certificate["domainName"], *certificate["subjectAlternativeNames"]] == [CDN_HOST, DOMAIN]
    assert one(stack, "aws:acm/certificateValidation:CertificateValidation")["validationRecordFqdns"] == [
        f"_x0.{CDN_HOST}.",
        f"_x1.{DOMAIN}.",
    ]
    assert one(stack, "aws:cloudfront/distribution:Distribution")["aliases"] == [CDN_HOST, DOMAIN]
    assert stack["outputs"]["redirectorIps"] == []
    assert len(resources(stack, "aws:sns/topic:Topic")) == 1  # no us-east-1 topic without health checks


def test_allowlist_reaches_the_functions_normalized() -> None:
    stack = report(NO_REDIRECTORS)
    for name in ("sync-planner", "sync-worker"):
        env = named(stack, "aws:lambda/function:Function", name)["environment"]["variables"]
        assert env["PYPI_CDN_PROJECTS"] == "requests,urllib3"


# --- failure modes -------------------------------------------------------------------------------------------------


def test_invalid_config_fails_naming_the_key_before_any_resource() -> None:
    result = run_stack({"redirectors": 9, "domain": DOMAIN, "zoneName": "example.org"}, stack="invalid")
    assert result["error"] is not None
    assert result["error"].startswith("RunError: pypi-cdn:redirectors: 9 is not between 0 and 8")
    assert result["resources"] == []
    assert result["invokes"] == []


def test_the_warning_capture_sees_a_deprecated_resource(tmp_path: Path) -> None:
    program = tmp_path / "__main__.py"
    program.write_text("import pulumi_aws as aws\n\naws.s3.BucketV2('legacy')\n")
    result = run_stack({}, stack="deprecated", program_path=program)
    assert result["error"] is None
    assert any("BucketV2 is deprecated" in warning for warning in result["warnings"])


# --- the component ---------------------------------------------------------------------------------------------


def test_the_mirror_s_children_keep_the_urns_they_had_before_the_component(stack: dict[str, Any]) -> None:
    registrations = stack["registrations"]
    (mirror,) = [r["urn"] for r in registrations if r["urn"].endswith("pypi-cdn:index:PypiMirror::mirror")]
    children = {r["urn"].rsplit("::", 1)[1]: r for r in registrations if r["parent"] == mirror}
    assert {"alarms", "origin", "cdn", "sync", "mirror-dashboard"} <= set(children)
    for name, child in children.items():
        # The dashboard is new; everything else was a top-level resource, and its children follow it (the engine
        # applies a parent's aliases to its children).
        expected = [] if name == "mirror-dashboard" else [{"spec": {"noParent": True}}]
        assert child["aliases"] == expected, name
    grandchildren = [r for r in registrations if r["parent"] in {c["urn"] for c in children.values()}]
    assert len(grandchildren) > 20
    for grandchild in grandchildren:  # only the provider's own type aliases (BucketV2 -> Bucket), no parent change
        assert all(set(alias["spec"]) == {"type", "parentUrn"} for alias in grandchild["aliases"]), grandchild
