"""Run the whole Pulumi program (`__main__.py`) under Pulumi's mocks and report what it declared, as JSON.

One mocked program per process (Pulumi's runtime is process-global), so tests call `run_stack`, which starts
`python -m tests.infra_mocks` with the stack's config on stdin. The report lists every resource (type, name,
inputs as the engine received them, camelCase), every invoke, the resolved stack outputs, and every warning the
program or the SDK logged. The mocks invent plausible ids and computed outputs; they accept any input, so tests
assert values.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import subprocess
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf.json_format import MessageToDict
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks, set_all_config, set_mocks
from pulumi.runtime.mocks import MockMonitor

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
ZONE_ID = "Z0123456789EXAMPLE"
AMI_ID = "ami-0123456789abcdef0"
CLOUDFRONT_ZONE_ID = "Z2FDTNDATAQYW2"
AVAILABILITY_ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


class RecordingMocks(Mocks):
    """Answers every resource and invoke with plausible values and records what it was asked."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.resources: list[dict[str, Any]] = []
        self.invokes: list[dict[str, Any]] = []
        self._counter = 0

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self._counter += 1
        self.resources.append({"type": args.typ, "name": args.name, "inputs": args.inputs})
        resource_id = f"{args.name}-{self._counter:04d}"
        return resource_id, {**args.inputs, **self._computed(args, resource_id)}

    def _computed(self, args: MockResourceArgs, resource_id: str) -> dict[str, Any]:
        inputs, name = args.inputs, args.name
        service = args.typ.split(":")[1].split("/")[0]
        region = inputs.get("region", self.region)
        state: dict[str, Any] = {
            "arn": f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{name}",
            "name": inputs.get("name", f"{name}-generated"),
        }
        match args.typ:
            case "aws:s3/bucket:Bucket":
                bucket = f"{name}-bucket-0001"
                state |= {
                    "bucket": bucket,
                    "arn": f"arn:aws:s3:::{bucket}",
                    "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
                }
            case "aws:cloudfront/distribution:Distribution":
                state |= {
                    "arn": f"arn:aws:cloudfront::{ACCOUNT_ID}:distribution/E1EXAMPLE",
                    "domainName": "d111111abcdef8.cloudfront.net",
                    "hostedZoneId": CLOUDFRONT_ZONE_ID,
                }
            case "aws:acm/certificate:Certificate":
                names = [inputs["domainName"], *inputs.get("subjectAlternativeNames", [])]
                state["domainValidationOptions"] = [
                    {
                        "domainName": domain,
                        "resourceRecordName": f"_x{index}.{domain}.",
                        "resourceRecordType": "CNAME",
                        "resourceRecordValue": f"_y{index}.acm-validations.aws.",
                    }
                    for index, domain in enumerate(names)
                ]
            case "aws:acm/certificateValidation:CertificateValidation":
                state["certificateArn"] = inputs["certificateArn"]
            case "aws:route53/record:Record":
                state["fqdn"] = inputs.get("name", "")
            case "aws:ec2/eip:Eip":
                state |= {"publicIp": f"203.0.113.{self._counter % 250}", "allocationId": f"eipalloc-{resource_id}"}
            case "aws:sqs/queue:Queue":
                state["url"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{state['name']}"
            case _:
                pass
        return state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.invokes.append({"token": args.token, "args": args.args})
        answers: dict[str, dict[str, Any]] = {
            "aws:route53/getZone:getZone": {
                "zoneId": ZONE_ID,
                "arn": f"arn:aws:route53:::hostedzone/{ZONE_ID}",
                "name": args.args.get("name", ""),
            },
            "aws:ec2/getAmi:getAmi": {"id": AMI_ID, "imageId": AMI_ID},
            "aws:ec2/getVpc:getVpc": {"id": "vpc-0123456789abcdef0"},
            "aws:index/getAvailabilityZones:getAvailabilityZones": {"names": AVAILABILITY_ZONES},
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
                "userId": "AIDAEXAMPLE",
            },
            "aws:index/getRegion:getRegion": {"region": self.region, "name": self.region, "id": self.region},
        }
        if args.token not in answers:
            raise KeyError(f"infra_mocks: no answer for invoke {args.token}")
        return answers[args.token], []


class RecordingMonitor(MockMonitor):
    """The mock monitor, also recording each registration's URN, parent and alias specs (the URN history)."""

    def __init__(self, mocks: Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[dict[str, Any]] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.registrations.append(
            {
                "urn": response.urn,
                "parent": request.parent,
                "aliases": [MessageToDict(alias) for alias in request.aliases],
            }
        )
        return response


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(f"{record.levelname}: {record.getMessage()}")


def _plain(value: Any) -> Any:
    """JSON for what the engine hands the mocks (assets and archives become their path)."""
    if isinstance(value, pulumi.FileArchive | pulumi.FileAsset):
        return {"path": value.path}
    return repr(value)


def _config_value(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_in_process(
    config: dict[str, object],
    *,
    stack: str,
    region: str,
    program_path: Path = REPO_ROOT / "__main__.py",
    project: str = "pypi-cdn",
) -> dict[str, Any]:
    """Run the program (`__main__.py`) with `config` (the project's keys without the prefix); return the report."""
    mocks = RecordingMocks(region)
    handler = ListHandler()
    logger = logging.getLogger(f"infra-mocks-{stack}")
    logger.addHandler(handler)
    monitor = RecordingMonitor(mocks)
    set_mocks(mocks, project=project, stack=stack, preview=False, logger=logger, monitor=monitor)
    set_all_config({"aws:region": region, **{f"{project}:{key}": _config_value(v) for key, v in config.items()}})
    outputs: dict[str, Any] = {}
    error: str | None = None

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        runpy.run_path(str(program_path), run_name="__main__")
        exported = pulumi.runtime.get_root_resource().outputs  # type: ignore[union-attr]
        return pulumi.Output.all(**exported).apply(outputs.update)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            program()
        except Exception as exc:  # reported to the test, which asserts on it
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    # The SDK warns about its own deprecated aliases when a module is first imported; what our code triggers it
    # reports through pulumi.log (captured above), and what our own files raise is kept here.
    python_warnings = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if Path(w.filename).resolve().is_relative_to(REPO_ROOT / "infra") or Path(w.filename) == program_path
    ]
    return {
        "resources": mocks.resources,
        "invokes": mocks.invokes,
        "registrations": monitor.registrations,
        "outputs": outputs,
        "warnings": handler.messages + python_warnings,
        "error": error,
    }


def run_stack(
    config: dict[str, object],
    *,
    stack: str = "test",
    region: str = "eu-west-1",
    program_path: Path = REPO_ROOT / "__main__.py",
    project: str = "pypi-cdn",
) -> dict[str, Any]:
    """Run the program in a fresh interpreter (offline: uv installs from its cache only) and return the report."""
    request = json.dumps(
        {"config": config, "stack": stack, "region": region, "program": str(program_path), "project": project}
    )
    environment = {**os.environ, "UV_OFFLINE": "1", "PULUMI_CONFIG": "{}"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.infra_mocks"],
        input=request,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=environment,
        timeout=240,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"mocked program crashed ({result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def main() -> None:
    request = json.loads(sys.stdin.read())
    report = run_in_process(
        request["config"],
        stack=request["stack"],
        region=request["region"],
        program_path=Path(request["program"]),
        project=request.get("project", "pypi-cdn"),
    )
    sys.stdout.write(json.dumps(report, default=_plain))


if __name__ == "__main__":
    main()
