"""README.md's generated references: the stack configuration (from Pulumi.yaml's `config:` schema) and PypiMirror's
inputs and outputs (from PypiMirrorArgs and OUTPUTS in infra/).

`python tools/config_reference.py` prints both; `--write` puts each into README.md between its markers
(`<!-- config-reference:start -->` ... `:end -->`, `<!-- interface-reference:start -->` ... `:end -->`), or, the
first time, in place of the single line `<!-- config-reference -->` / `<!-- interface-reference -->`.
tests/test_readme.py fails when README.md and the sources drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.config import KEYS, PypiMirrorArgs
from infra.stack import OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = ROOT / "Pulumi.yaml"
README = ROOT / "README.md"
PLACEHOLDER = "<!-- config-reference -->"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
WRITE_COMMAND = "python tools/config_reference.py --write"
INTERFACE = "interface-reference"
INTERFACE_START = f"<!-- {INTERFACE}:start -->"
INTERFACE_PLACEHOLDER = f"<!-- {INTERFACE} -->"
INTERFACE_SOURCE = "infra/config.py and infra/stack.py"


class ConfigReferenceError(ValueError):
    """Pulumi.yaml or README.md is not in a shape the reference can be rendered from or written into."""


def load_project(path: Path) -> Mapping[str, Any]:
    """Pulumi.yaml as a mapping; errors name the file."""
    try:
        project = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigReferenceError(f"{path}: cannot read the project file ({error})") from error
    if not isinstance(project, Mapping):
        raise ConfigReferenceError(f"{path}: not a YAML mapping")
    return project


def project_settings(project: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The project's own config keys with their declarations; namespaced keys (`pulumi:`, `aws:`) are not ours."""
    config = project.get("config")
    if not isinstance(config, Mapping):
        raise ConfigReferenceError("Pulumi.yaml: has no `config:` mapping")
    settings = {}
    for key, declaration in config.items():
        if ":" in str(key):
            continue
        if not isinstance(declaration, Mapping) or not declaration.get("type") or not declaration.get("description"):
            raise ConfigReferenceError(f"Pulumi.yaml: config key {key!r} needs a type and a description")
        settings[str(key)] = declaration
    if not settings:
        raise ConfigReferenceError("Pulumi.yaml: declares no config keys of its own")
    return settings


def _type_name(declaration: Mapping[str, Any]) -> str:
    items = declaration.get("items")
    if declaration["type"] == "array" and isinstance(items, Mapping):
        return f"array of {_type_name(items)}"
    return str(declaration["type"])


def _default(declaration: Mapping[str, Any]) -> str:
    if "default" not in declaration:
        return "(required)"
    value = declaration["default"]
    text = value if isinstance(value, str) and value else json.dumps(value)
    return f"`{text}`".replace("|", "\\|")  # a code span shows everything literally, except a column break


# Characters a table cell shows literally only when escaped: `<domain>` would be an HTML tag, `|` a column break.
CELL_ESCAPES = str.maketrans({"<": "&lt;", ">": "&gt;", "|": "\\|", "*": "\\*"})


def _cell(text: str) -> str:
    return " ".join(text.split()).translate(CELL_ESCAPES)


def render_table(project: Mapping[str, Any]) -> str:
    """The reference: one sentence on how to set a key, then one table row per key, in declaration order."""
    name = project.get("name", "<project>")
    rows = [
        f"| `{key}` | {_type_name(declaration)} | {_default(declaration)} | {_cell(str(declaration['description']))} |"
        for key, declaration in project_settings(project).items()
    ]
    return "\n".join(
        [
            f"Stack settings, declared in `Pulumi.yaml`; set one with `pulumi config set {name}:<key> <value>`.",
            "",
            "| key | type | default | description |",
            "| --- | --- | --- | --- |",
            *rows,
        ]
    )


def render_interface() -> str:
    """PypiMirror's inputs (PypiMirrorArgs fields, with the config key each comes from) and outputs (OUTPUTS)."""
    config_keys = {field: key for key, (field, _) in KEYS.items()}
    inputs = [
        f"| `{field.name}` | `{str(field.type).replace('|', chr(92) + '|')}` | `{field.default!r}` "
        f"| `{config_keys[field.name]}` | {_cell(field.metadata['doc'])} |"
        for field in dataclasses.fields(PypiMirrorArgs)
    ]
    outputs = [f"| `{spec.name}` | `{spec.attribute}` | {_cell(spec.description)} |" for spec in OUTPUTS]
    return "\n".join(
        [
            "`PypiMirror(name, PypiMirrorArgs(...), opts)` (`infra/stack.py`) takes these inputs (`infra/config.py`); "
            "`__main__.py` reads each from the config key named beside it.",
            "",
            "| input | type | default | config key | description |",
            "| --- | --- | --- | --- | --- |",
            *inputs,
            "",
            "Its outputs are attributes; `__main__.py` exports each under its stack output name.",
            "",
            "| output | attribute | description |",
            "| --- | --- | --- |",
            *outputs,
        ]
    )


def replace_block(readme: str, table: str, *, marker: str = "config-reference", source: str = "Pulumi.yaml") -> str:
    """`readme` with the generated block (markers included) holding `table`, in place of the old block or marker."""
    placeholder, start, end = f"<!-- {marker} -->", f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    block = "\n".join(
        [start, f"<!-- generated from {source} by `{WRITE_COMMAND}`; edit {source}, not this -->", table, end]
    )
    if start in readme or end in readme:
        if not readme.count(start) == readme.count(end) == 1 or readme.index(end) < readme.index(start):
            raise ConfigReferenceError(f"README.md: needs {start} once, followed by {end} once")
        before, _, rest = readme.partition(start)
        return before + block + rest.partition(end)[2]
    lines = readme.splitlines(keepends=True)
    markers = [index for index, line in enumerate(lines) if line.strip() == placeholder]
    if len(markers) != 1:
        raise ConfigReferenceError(
            f"README.md: needs exactly one {placeholder} line (or the {start} ... {end} block), found {len(markers)}"
        )
    index = markers[0]
    ending = "\n" if lines[index].endswith("\n") else ""
    return "".join([*lines[:index], block + ending, *lines[index + 1 :]])


def write_reference(project_file: Path, readme_file: Path) -> bool:
    """Render the table from `project_file` into `readme_file`; True when the file changed."""
    table = render_table(load_project(project_file))
    try:
        current = readme_file.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigReferenceError(f"{readme_file}: cannot read it ({error})") from error
    updated = replace_block(current, table)
    if INTERFACE_START in updated or any(line.strip() == INTERFACE_PLACEHOLDER for line in updated.splitlines()):
        updated = replace_block(updated, render_interface(), marker=INTERFACE, source=INTERFACE_SOURCE)
    if updated == current:
        return False
    readme_file.write_text(updated, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/config_reference.py", description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the table into README.md instead of printing it")
    args = parser.parse_args(argv)
    try:
        if args.write:
            changed = write_reference(PROJECT_FILE, README)
            print(f"{README.name}: {'updated' if changed else 'already up to date'}")
        else:
            print(render_table(load_project(PROJECT_FILE)))
            print()
            print(render_interface())
    except ConfigReferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
