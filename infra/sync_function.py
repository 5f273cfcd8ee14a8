"""The sync function: a scheduled planner Lambda, an SQS-fed worker Lambda, their queue, alarms and one IAM role.

The planner runs at `syncSchedule`, reads the upstream change feed and syncs a few projects itself or enqueues
them; workers take project names off the queue (partial batch failures: only the failed messages come back, and
after 5 receives a message goes to the dead-letter queue). Both run the same bundle of `sync/` (Python 3.13 on
arm64). The role grants exactly: objects under the mirror's three prefixes, listing the bucket, invalidations of
this distribution, this queue, and the two log groups; the planner also writes the public status object.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.bundle import Bundle
from infra.redirectors import assume_role_policy
from sync.config import MirrorConfig
from sync.invalidation import EdgeSettings, InvalidationMode
from sync.lambda_settings import (
    DEFAULT_LEASE_TTL,
    DEFAULT_MAX_WORKERS,
    DEFAULT_UPSTREAM_CONCURRENCY,
    LAG_METRIC,
    METRICS_NAMESPACE,
    SERVICE_NAME,
    HandlerSettings,
    per_invocation_concurrency,
)
from sync.layout import MIRROR_PREFIXES, STATUS_KEY

RUNTIME = "python3.13"
ARCHITECTURE = "arm64"
LOG_RETENTION_DAYS = 30
PLANNER_TIMEOUT = 240  # seconds; the planner's lease (DEFAULT_LEASE_TTL, 300 s) must outlive its longest run
PLANNER_MEMORY = 512
WORKER_TIMEOUT = 900  # Lambda's maximum: a worker may stream files of up to 1 GiB
WORKER_MEMORY = 1024  # network throughput grows with memory
# Concurrent worker invocations (DEFAULT_MAX_WORKERS, 4): with the planner, within PyPI's 10 concurrent requests.
QUEUE_VISIBILITY_TIMEOUT = 6 * WORKER_TIMEOUT  # AWS: at least six times the function timeout
MAX_RECEIVES = 5  # then the message moves to the dead-letter queue
WORKER_BATCH_SIZE = 5
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS maximum: two weeks to look at what failed


def sync_role_policy(
    bucket_arn: str, distribution_arn: str, queue_arn: str, log_group_arns: Sequence[str]
) -> dict[str, Any]:
    """Least privilege for both functions. Listing is bucket-wide so a missing key reads as 404, not 403."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MirrorObjects",
                "Effect": "Allow",
                "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                "Resource": [*(f"{bucket_arn}/{prefix}*" for prefix in MIRROR_PREFIXES), f"{bucket_arn}/{STATUS_KEY}"],
            },
            {"Sid": "ListMirror", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn},
            {
                "Sid": "InvalidateThisDistribution",
                "Effect": "Allow",
                "Action": [
                    "cloudfront:CreateInvalidation",
                    "cloudfront:GetInvalidation",
                    "cloudfront:ListInvalidations",
                ],
                "Resource": distribution_arn,
            },
            {
                "Sid": "ThisQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ],
                "Resource": queue_arn,
            },
            {
                "Sid": "OwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [f"{arn}:*" for arn in log_group_arns],
            },
        ],
    }


def invoke_policy(function_arn: str) -> dict[str, Any]:
    """The scheduler's role: invoke the planner, nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "InvokePlanner", "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function_arn}
        ],
    }


@dataclass(frozen=True)
class SyncFunctionArgs:
    bundle: Bundle
    bucket_name: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    distribution_id: pulumi.Input[str]
    distribution_arn: pulumi.Input[str]
    upstream: str
    projects: Sequence[str]
    schedule: str
    contact: str | None
    invalidation_mode: str
    invalidation_monthly_budget_usd: int
    inline_sync_threshold: int
    lag_alarm_seconds: int
    alarm_topic_arn: pulumi.Input[str]
    public_url: pulumi.Input[str] | None = None  # the CDN's https base URL: where pages point for provenance
    probe_url: pulumi.Input[str] | None = None  # the CDN's URL: the planner reads changed pages back through it

    def handler_settings(
        self, *, bucket_name: str, queue_url: str, distribution_id: str, public_url: str | None, probe_url: str | None
    ) -> HandlerSettings:
        """What both functions run with, once Pulumi knows the bucket, queue, distribution and CDN URL."""
        mirror = MirrorConfig(
            dest=f"s3://{bucket_name}",
            upstream=self.upstream,
            projects=tuple(self.projects),
            contact=self.contact,
            workers=per_invocation_concurrency(DEFAULT_UPSTREAM_CONCURRENCY, DEFAULT_MAX_WORKERS),
            lease_ttl=DEFAULT_LEASE_TTL,
            public_url=public_url or None,
        )
        return HandlerSettings(
            mirror=mirror,
            queue_url=queue_url,
            distribution_id=distribution_id,
            probe_url=probe_url or None,
            inline_threshold=self.inline_sync_threshold,
            edge=EdgeSettings(InvalidationMode(self.invalidation_mode), self.invalidation_monthly_budget_usd),
        )


class SyncFunction(pulumi.ComponentResource):
    """Planner and worker Lambdas, schedule, queue + DLQ, log groups, alarms and IAM."""

    planner_name: pulumi.Output[str]
    worker_name: pulumi.Output[str]
    queue_url: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    dead_letters_name: pulumi.Output[str]

    def __init__(self, name: str, args: SyncFunctionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pypi-cdn:index:SyncFunction", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        dead_letters = aws.sqs.Queue(
            f"{name}-dlq", message_retention_seconds=DLQ_RETENTION_SECONDS, sqs_managed_sse_enabled=True, opts=child
        )
        queue = aws.sqs.Queue(
            f"{name}-queue",
            visibility_timeout_seconds=QUEUE_VISIBILITY_TIMEOUT,
            receive_wait_time_seconds=20,
            sqs_managed_sse_enabled=True,
            redrive_policy=dead_letters.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES})
            ),
            opts=child,
        )
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-redrive-allow",
            queue_url=dead_letters.url,
            redrive_allow_policy=queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        log_groups = {
            role: aws.cloudwatch.LogGroup(
                f"{name}-{role}-logs",
                name=f"/pypi-cdn/{pulumi.get_stack()}/{role}",
                retention_in_days=LOG_RETENTION_DAYS,
                opts=child,
            )
            for role in ("planner", "worker")
        }
        role = aws.iam.Role(
            f"{name}-role",
            description="pypi-cdn sync: mirror prefixes, this distribution's invalidations, this queue, own logs",
            assume_role_policy=assume_role_policy("lambda.amazonaws.com"),
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(
                args.bucket_arn,
                args.distribution_arn,
                queue.arn,
                log_groups["planner"].arn,
                log_groups["worker"].arn,
            ).apply(
                lambda values: json.dumps(
                    sync_role_policy(values[0], values[1], values[2], [values[3], values[4]]), sort_keys=True
                )
            ),
            opts=child,
        )

        # The environment the handlers read their settings from (sync/lambda_settings.py), rendered by those settings.
        variables = pulumi.Output.all(
            bucket_name=args.bucket_name,
            queue_url=queue.url,
            distribution_id=args.distribution_id,
            public_url=args.public_url,
            probe_url=args.probe_url,
        ).apply(lambda values: args.handler_settings(**values).to_env())
        environment = aws.lambda_.FunctionEnvironmentArgs(variables=variables)
        code = pulumi.FileArchive(str(args.bundle.path))

        def function(role_name: str, handler: str, timeout: int, memory: int, concurrency: int) -> aws.lambda_.Function:
            return aws.lambda_.Function(
                f"{name}-{role_name}",
                description=f"pypi-cdn sync {role_name}",
                runtime=RUNTIME,
                architectures=[ARCHITECTURE],
                handler=handler,
                code=code,
                source_code_hash=args.bundle.sha256_base64,
                role=role.arn,
                timeout=timeout,
                memory_size=memory,
                reserved_concurrent_executions=concurrency,
                environment=environment,
                logging_config=aws.lambda_.FunctionLoggingConfigArgs(
                    log_format="Text", log_group=log_groups[role_name].name
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]),
            )

        planner = function("planner", "sync.handlers.planner_handler", PLANNER_TIMEOUT, PLANNER_MEMORY, 1)
        worker = function("worker", "sync.handlers.worker_handler", WORKER_TIMEOUT, WORKER_MEMORY, DEFAULT_MAX_WORKERS)
        # A missed tick is made up by the next one: no retries of a failed or stale scheduled run.
        aws.lambda_.FunctionEventInvokeConfig(
            f"{name}-planner-invoke",
            function_name=planner.name,
            maximum_retry_attempts=0,
            maximum_event_age_in_seconds=60,
            opts=child,
        )
        aws.lambda_.EventSourceMapping(
            f"{name}-worker-queue",
            event_source_arn=queue.arn,
            function_name=worker.arn,
            batch_size=WORKER_BATCH_SIZE,
            function_response_types=["ReportBatchItemFailures"],
            scaling_config=aws.lambda_.EventSourceMappingScalingConfigArgs(maximum_concurrency=DEFAULT_MAX_WORKERS),
            opts=child,
        )
        scheduler_role = aws.iam.Role(
            f"{name}-scheduler-role",
            description="pypi-cdn: EventBridge Scheduler invokes the planner",
            assume_role_policy=assume_role_policy("scheduler.amazonaws.com"),
            opts=child,
        )
        scheduler_policy = aws.iam.RolePolicy(
            f"{name}-scheduler-policy",
            role=scheduler_role.id,
            policy=planner.arn.apply(lambda arn: json.dumps(invoke_policy(arn), sort_keys=True)),
            opts=child,
        )
        aws.scheduler.Schedule(
            f"{name}-schedule",
            description="pypi-cdn: run the sync planner",
            schedule_expression=args.schedule,
            state="ENABLED",
            flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
            target=aws.scheduler.ScheduleTargetArgs(
                arn=planner.arn,
                role_arn=scheduler_role.arn,
                retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                    maximum_retry_attempts=0, maximum_event_age_in_seconds=60
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[scheduler_policy]),
        )
        self._alarms(name, planner, worker, dead_letters, args)

        self.planner_name = planner.name
        self.worker_name = worker.name
        self.queue_url = queue.url
        self.queue_name = queue.name
        self.dead_letters_name = dead_letters.name
        self.register_outputs(
            {
                "planner_name": self.planner_name,
                "worker_name": self.worker_name,
                "queue_url": self.queue_url,
                "queue_name": self.queue_name,
                "dead_letters_name": self.dead_letters_name,
            }
        )

    def _alarms(
        self,
        name: str,
        planner: aws.lambda_.Function,
        worker: aws.lambda_.Function,
        dead_letters: aws.sqs.Queue,
        args: SyncFunctionArgs,
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        actions = [args.alarm_topic_arn]
        for role_name, function in (("planner", planner), ("worker", worker)):
            aws.cloudwatch.MetricAlarm(
                f"{name}-{role_name}-errors",
                alarm_description=f"pypi-cdn sync {role_name} fails repeatedly",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": function.name},
                statistic="Sum",
                period=300,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                threshold=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=child,
            )
        aws.cloudwatch.MetricAlarm(
            f"{name}-dead-letters",
            alarm_description="pypi-cdn sync: projects failed 5 times and wait in the dead-letter queue",
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": dead_letters.name},
            statistic="Maximum",
            period=300,
            evaluation_periods=1,
            threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
        aws.cloudwatch.MetricAlarm(
            f"{name}-mirror-lag",
            alarm_description=f"pypi-cdn mirror lag above {args.lag_alarm_seconds} s, or no lag reported",
            namespace=METRICS_NAMESPACE,
            metric_name=LAG_METRIC,
            dimensions={"service": SERVICE_NAME},
            statistic="Maximum",
            period=300,
            evaluation_periods=2,
            threshold=args.lag_alarm_seconds,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="breaching",  # no metric means no sync
            alarm_actions=actions,
            ok_actions=actions,
            opts=child,
        )
