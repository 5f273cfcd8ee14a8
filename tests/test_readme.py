"""README.md and docs/*.md against the code: the configuration reference and every CLI command they show."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import KEYS, PypiMirrorArgs
from infra.stack import OUTPUTS, PypiMirror
from sync.cli import build_parser
from tools import config_reference
from tools.config_reference import ConfigReferenceError, render_table, replace_block

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `python -m sync ...`, `.venv/bin/python -m devstack ...`: the module, then the rest of the command.
MODULE_COMMAND = re.compile(r"(?<![\w-])python(?:3(?:\.\d+)?)? -m (sync|devstack)\b([^`\n]*)")
MAKE_COMMAND = re.compile(r"(?<![\w/-])make ([a-z][\w-]*)")
FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")
MAKE_RULE = re.compile(r"^([\w.-]+(?: [\w.-]+)*) *:(?!=)", re.MULTILINE)
SHELL_COMMENT = re.compile(r"\s#.*$")
WRITE = config_reference.WRITE_COMMAND


# --- configuration reference ---------------------------------------------------------------------------------


def project() -> dict:
    return dict(config_reference.load_project(ROOT / "Pulumi.yaml"))


def test_readme_holds_the_configuration_reference_generated_from_pulumi_yaml() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_reference.START in readme, (
        f"README.md has no configuration reference: run `{config_reference.WRITE_COMMAND}`"
    )
    assert replace_block(readme, render_table(project())) == readme, (
        f"README.md's configuration reference differs from Pulumi.yaml: run `{config_reference.WRITE_COMMAND}`"
    )


def test_the_table_has_a_row_per_project_key_in_declaration_order() -> None:
    table = render_table(project())
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    own_keys = [key for key in project()["config"] if ":" not in key]
    assert [row.split("`")[1] for row in rows] == own_keys
    assert "pulumi:autonaming" in project()["config"]  # Pulumi's own setting: not a key of this stack
    assert "autonaming" not in table
    assert (
        "| `redirectors` | integer | `2` | Redirector instances, one per availability zone in turn (0-8). "
        "0 = domain aliases straight to CloudFront. |"
    ) in rows
    assert (
        "| `projects` | array of string | `[]` | Allowlist of project names to mirror. Empty = the whole index. |"
        in rows
    )
    assert any(row.startswith('| `domain` | string | `""` |') for row in rows)
    assert any(row.endswith("Empty = cdn.&lt;domain&gt;. |") for row in rows)  # not an HTML tag on GitHub


def test_cells_escape_what_markdown_would_swallow() -> None:
    table = render_table(
        {
            "name": "demo",
            "config": {
                "mode": {"type": "string", "default": "a|b", "description": "one | two\n  and  *all* of <it>"},
                "token": {"type": "string", "description": "required: no default"},
            },
        }
    )
    assert table.splitlines() == [
        "Stack settings, declared in `Pulumi.yaml`; set one with `pulumi config set demo:<key> <value>`.",
        "",
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
        r"| `mode` | string | `a\|b` | one \| two and \*all\* of &lt;it&gt; |",
        "| `token` | string | (required) | required: no default |",
    ]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "Pulumi.yaml: has no `config:` mapping"),
        ({"aws:region": "eu-west-1"}, "Pulumi.yaml: declares no config keys of its own"),
        ({"domain": {"type": "string"}}, "Pulumi.yaml: config key 'domain' needs a type and a description"),
        ({"domain": "pypi.example.org"}, "Pulumi.yaml: config key 'domain' needs a type and a description"),
    ],
)
def test_a_project_without_declared_keys_is_refused_by_name(config: object, message: str) -> None:
    with pytest.raises(ConfigReferenceError) as caught:
        render_table({"name": "demo", "config": config})
    assert str(caught.value) == message


def test_write_replaces_the_marker_line_then_only_its_own_block(tmp_path: Path) -> None:
    project_file = tmp_path / "Pulumi.yaml"
    project_file.write_text(
        "name: demo\nruntime: python\nconfig:\n  size:\n    type: integer\n    default: 1\n    description: How big.\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text("# demo\n\n<!-- config-reference -->\n\nafter\n")
    assert config_reference.write_reference(project_file, readme) is True
    written = readme.read_text()
    assert written == (
        "# demo\n\n"
        f"{config_reference.START}\n"
        f"<!-- generated from Pulumi.yaml by `{config_reference.WRITE_COMMAND}`; edit Pulumi.yaml, not this -->\n"
        "Stack settings, declared in `Pulumi.yaml`; set one with `pulumi config set demo:<key> <value>`.\n"
        "\n"
        "| key | type | default | description |\n"
        "| --- | --- | --- | --- |\n"
        "| `size` | integer | `1` | How big. |\n"
        f"{config_reference.END}\n"
        "\nafter\n"
    )
    assert config_reference.write_reference(project_file, readme) is False
    project_file.write_text(project_file.read_text().replace("default: 1", "default: 2"))
    assert config_reference.write_reference(project_file, readme) is True
    assert readme.read_text() == written.replace("`1`", "`2`")


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        ("no marker\n", "README.md: needs exactly one <!-- config-reference --> line"),
        ("<!-- config-reference -->\n<!-- config-reference -->\n", "README.md: needs exactly one"),
        ("<!-- config-reference:start -->\nno end\n", "README.md: needs <!-- config-reference:start --> once"),
        ("<!-- config-reference:end -->\n<!-- config-reference:start -->\n", "README.md: needs <!-- config-reference:"),
    ],
)
def test_a_readme_without_a_single_place_for_the_table_is_refused(readme: str, message: str) -> None:
    with pytest.raises(ConfigReferenceError, match=re.escape(message)):
        replace_block(readme, "| table |")


def test_the_tool_prints_the_table_and_names_a_missing_file() -> None:
    script = ROOT / "tools" / "config_reference.py"
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_table(project()) + "\n\n" + config_reference.render_interface() + "\n"
    with pytest.raises(ConfigReferenceError, match=re.escape("nowhere.yaml: cannot read the project file")):
        config_reference.load_project(ROOT / "nowhere.yaml")


# --- PypiMirror's inputs and outputs ----------------------------------------------------------------------------


def test_readme_holds_the_component_reference_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_reference.INTERFACE_START in readme, f"README.md has no component reference: run `{WRITE}`"
    regenerated = replace_block(
        readme,
        config_reference.render_interface(),
        marker=config_reference.INTERFACE,
        source=config_reference.INTERFACE_SOURCE,
    )
    assert regenerated == readme, f"README.md's component reference differs from infra/: run `{WRITE}`"


def test_the_component_reference_has_a_row_per_input_and_output() -> None:
    rows = [line for line in config_reference.render_interface().splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    fields = [field.name for field in dataclasses.fields(PypiMirrorArgs)]
    assert names == fields + [spec.name for spec in OUTPUTS]
    assert (
        "| `redirectors` | `int` | `2` | `redirectors` | Redirector instances, one per availability zone in turn "
        "(0-8). 0 = domain aliases straight to CloudFront. |"
    ) in rows
    assert r"| `domain` | `str \| None` | `None` | `domain` |" in rows[0]
    assert "| `uvProjectConfig` | `uv_project_config` |" in rows[len(fields) + 3]


def test_every_output_is_an_attribute_of_the_component_and_every_input_documents_its_config_key() -> None:
    annotations = PypiMirror.__annotations__
    assert [spec.attribute for spec in OUTPUTS] == list(annotations)
    declared = project()["config"]
    for key, (field_name, _) in KEYS.items():
        field = next(f for f in dataclasses.fields(PypiMirrorArgs) if f.name == field_name)
        assert field.metadata["doc"] == declared[key]["description"], key


# --- commands in the documentation ---------------------------------------------------------------------------


def code_fragments(text: str) -> list[str]:
    """Each line of a fenced code block (shell comments cut) and each inline code span elsewhere."""
    fragments: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            fragments.append(SHELL_COMMENT.sub("", line))
        else:
            fragments.extend(re.findall(r"`([^`]+)`", line))
    return fragments


def documented_commands() -> list[tuple[str, str, str | None, list[str]]]:
    """(document, CLI, subcommand or None, flags) for every `python -m sync|devstack` and `make` command."""
    commands = []
    for document in DOCUMENTS:
        name = document.relative_to(ROOT).as_posix()
        for fragment in code_fragments(document.read_text(encoding="utf-8")):
            for cli, rest in MODULE_COMMAND.findall(fragment):
                first = rest.split()[0] if rest.split() else "-"
                subcommand = None if first.startswith(("-", "[")) else first
                commands.append((name, cli, subcommand, FLAG.findall(rest)))
            commands += [(name, "make", target, []) for target in MAKE_COMMAND.findall(fragment)]
    return commands


def parser_surface(parser: argparse.ArgumentParser) -> dict[str | None, set[str]]:
    """Options of the parser (key None) and of each subcommand."""
    surface: dict[str | None, set[str]] = {None: set()}
    for action in parser._actions:
        surface[None].update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                surface[name] = {option for sub in subparser._actions for option in sub.option_strings}
    return surface


def cli_help(module: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", module, *args, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"python -m {module} {' '.join(args)} --help: {result.stderr}"
    assert result.stdout.startswith(f"usage: python -m {module}"), result.stdout
    return result.stdout


def usage(help_text: str) -> str:
    return help_text.split("\n\n", 1)[0]


def help_surface(module: str) -> dict[str | None, set[str]]:
    """The options of a CLI and of each subcommand its usage line lists, read from `--help` as users see it."""
    top = usage(cli_help(module))
    choices = re.search(r"\{([\w,-]+)\}", top)
    surface: dict[str | None, set[str]] = {None: set(FLAG.findall(top)) | {"-h", "--help"}}
    for subcommand in choices.group(1).split(",") if choices else []:
        surface[subcommand] = set(FLAG.findall(usage(cli_help(module, subcommand)))) | {"-h", "--help"}
    return surface


def make_targets() -> set[str]:
    rules = MAKE_RULE.findall((ROOT / "Makefile").read_text(encoding="utf-8"))
    return {target for rule in rules for target in rule.split() if not target.startswith((".", "$"))}


def test_the_documents_show_commands_of_each_cli() -> None:
    commands = documented_commands()
    assert {(cli, subcommand) for _, cli, subcommand, _ in commands} >= {
        ("sync", "mirror"),
        ("sync", "verify"),
        ("make", "demo"),
        ("make", "test"),
        ("make", "venv"),
    }
    assert ("README.md", "sync", "mirror", ["--upstream", "--dest", "--project", "--workers", "--config"]) in commands


Surfaces = dict[str, dict[str | None, set[str]]]


def command_problems(commands: list[tuple[str, str, str | None, list[str]]], surfaces: Surfaces, targets: set[str]):
    """One line per documented subcommand, flag or make target the CLIs do not have."""
    problems = []
    for document, cli, subcommand, flags in commands:
        if cli == "make":
            if subcommand not in targets:
                problems.append(f"{document}: `make {subcommand}`: the Makefile has no such target")
            continue
        surface = surfaces[cli]
        if subcommand not in surface:
            problems.append(f"{document}: `python -m {cli} {subcommand}`: no such subcommand")
            continue
        shown = f"python -m {cli} {subcommand}" if subcommand else f"python -m {cli}"
        problems += [f"{document}: `{shown}` has no flag {flag}" for flag in flags if flag not in surface[subcommand]]
    return problems


def test_every_documented_subcommand_and_flag_exists() -> None:
    surfaces = {"sync": parser_surface(build_parser()), "devstack": help_surface("devstack")}
    assert {"demo", "test", "venv"} <= make_targets()
    assert command_problems(documented_commands(), surfaces, make_targets()) == []


def test_made_up_subcommands_flags_and_targets_are_caught() -> None:
    surfaces = {"sync": parser_surface(build_parser()), "devstack": help_surface("devstack")}
    assert {"--upstream", "--dest", "--project", "--keep-latest", "--port", "--help"} <= surfaces["devstack"]["demo"]
    made_up = [
        ("README.md", "sync", "mirror", ["--dest", "--sizes-only"]),
        ("README.md", "sync", "shrink", ["--dest"]),
        ("docs/x.md", "sync", None, ["--help", "--dest"]),
        ("docs/x.md", "devstack", "demo", ["--port", "--workers"]),
        ("docs/x.md", "make", "deploy", []),
    ]
    assert command_problems(made_up, surfaces, make_targets()) == [
        "README.md: `python -m sync mirror` has no flag --sizes-only",
        "README.md: `python -m sync shrink`: no such subcommand",
        "docs/x.md: `python -m sync` has no flag --dest",
        "docs/x.md: `python -m devstack demo` has no flag --workers",
        "docs/x.md: `make deploy`: the Makefile has no such target",
    ]


@pytest.mark.parametrize(
    "command",
    [("sync",), ("sync", "mirror"), ("sync", "verify"), ("devstack",), ("devstack", "demo")],
    ids=" ".join,
)
def test_each_cli_answers_help(command: tuple[str, ...]) -> None:
    assert "--help" in cli_help(*command)
