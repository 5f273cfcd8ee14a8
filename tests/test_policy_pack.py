"""The security policy pack as Pulumi runs it: its policies served to the engine, and the program as shipped."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policy.pack import PACK_NAME, POLICIES
from policy.resource_rules import (
    RESOURCE_RULES,
)
from policy.resources import (
    BUCKET,
    BUCKET_POLICY,
    DISTRIBUTION,
    IAM_ROLE,
    IAM_ROLE_POLICY,
    INSTANCE,
    DeclaredResource,
)
from policy.stack_rules import (
    STACK_RULES,
)

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policy"

# --- the pack as pulumi runs it ------------------------------------------------------------------------------


def test_every_rule_is_a_mandatory_policy_with_a_unique_name() -> None:
    names = [policy.name for policy in POLICIES]
    assert names == [rule.name for rule in (*RESOURCE_RULES, *STACK_RULES)]
    assert len(set(names)) == len(names) == 12
    assert {str(policy.enforcement_level) for policy in POLICIES} == {"EnforcementLevel.MANDATORY"}


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """The pack started as `pulumi preview --policy-pack policy` starts it: `python -m pulumi.policy` in policy/."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=POLICY_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), process.stderr.read() if process.stderr else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.terminate()
        process.wait(timeout=10)


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, props: dict) -> list[tuple[str, str, int]]:
    properties = struct_pb2.Struct()
    properties.update(props)
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type, properties=properties, name="r", urn=f"urn:pulumi:ci::pypi-cdn::{resource_type}::r"
    )
    response = stub.Analyze(request, timeout=20)
    return [(d.policyName, d.message, d.enforcementLevel) for d in response.diagnostics]


def test_pack_serves_its_policies_to_the_engine(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
    assert info.name == PACK_NAME
    assert [policy.name for policy in info.policies] == [policy.name for policy in POLICIES]


def test_pack_reports_a_violation_as_mandatory(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    diagnostics = analyze(
        analyzer,
        INSTANCE,
        {"metadataOptions": {"httpTokens": "optional"}, "rootBlockDevice": {"encrypted": True}},
    )
    assert diagnostics == [
        (
            "ec2-imdsv2-required",
            "instances accept only IMDSv2\nmetadataOptions.httpTokens must be 'required' (IMDSv2 only), not 'optional'",
            analyzer_pb2.MANDATORY,
        )
    ]
    assert (
        analyze(
            analyzer,
            INSTANCE,
            {"metadataOptions": {"httpTokens": "required"}, "rootBlockDevice": {"encrypted": True}},
        )
        == []
    )


def test_pack_defers_a_rule_whose_input_is_unknown_in_preview(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    diagnostics = analyze(analyzer, BUCKET_POLICY, {"bucket": "b", "policy": UNKNOWN_STRING_VALUE})
    assert [(name, level) for name, _, level in diagnostics] == [("s3-bucket-policy-tls-only", analyzer_pb2.ADVISORY)]
    assert "can't be known during preview" in diagnostics[0][1]


# --- the program as shipped, under mocks ---------------------------------------------------------------------

# tests/infra_mocks.py reports each resource's inputs; stack rules also need its id and computed outputs, so the
# harness runs with its mocks' new_resource wrapped to keep them. Pulumi registers resources from several threads at
# once, so the record is found by its type and name (unique in a stack), not as the last one appended.
HARNESS_WITH_OUTPUTS = """
from tests import infra_mocks
answer = infra_mocks.RecordingMocks.new_resource
def new_resource(self, args):
    resource_id, state = answer(self, args)
    record = next(r for r in reversed(self.resources) if (r["type"], r["name"]) == (args.typ, args.name))
    record["outputs"] = {**state, "id": resource_id}
    return resource_id, state
infra_mocks.RecordingMocks.new_resource = new_resource
infra_mocks.main()
"""
DOMAIN = {"domain": "pypi.example.org", "zoneName": "example.org", "alarmEmail": "ops@example.org"}


def pack_violations(config: dict[str, object], region: str) -> list[tuple[str, str, str]]:
    """(policy, resource, message) for every violation the pack finds in the mocked program with `config`."""
    request = json.dumps({"config": config, "stack": "policy", "region": region, "program": str(ROOT / "__main__.py")})
    result = subprocess.run(
        [sys.executable, "-c", HARNESS_WITH_OUTPUTS],
        input=request,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["error"] is None, report["error"]
    judged = {resource["type"] for resource in report["resources"]}
    assert {BUCKET, BUCKET_POLICY, DISTRIBUTION, IAM_ROLE, IAM_ROLE_POLICY} <= judged
    found = [
        (rule.name, resource["name"], message)
        for resource in report["resources"]
        for rule in RESOURCE_RULES
        for message in rule.check(resource["type"], resource["inputs"])
    ]
    declared = [
        DeclaredResource(resource["type"], resource["name"], resource["outputs"], resource["name"])
        for resource in report["resources"]
    ]
    found += [
        (rule.name, violation.urn, violation.message) for rule in STACK_RULES for violation in rule.check(declared)
    ]
    return found


@pytest.mark.parametrize(
    ("config", "region"),
    [
        ({**DOMAIN, "redirectors": 0}, "eu-west-1"),
        ({**DOMAIN, "redirectors": 2}, "eu-west-1"),
        ({**DOMAIN, "redirectors": 3}, "us-east-1"),
        ({}, "eu-west-1"),
    ],
    ids=["domain-no-redirectors", "domain-2-redirectors", "domain-3-redirectors-us-east-1", "no-domain"],
)
def test_program_as_shipped_passes_the_pack(config: dict[str, object], region: str) -> None:
    assert pack_violations(config, region) == []
