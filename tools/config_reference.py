"""The stack configuration reference in README.md, rendered from the `config:` schema of Pulumi.yaml.

`python tools/config_reference.py` prints the Markdown table (key, type, default, description); `--write` puts it
into README.md between `<!-- config-reference:start -->` and `<!-- config-reference:end -->`, or, the first time,
in place of the single line `<!-- config-reference -->`. tests/test_readme.py fails when the two drift apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = ROOT / "Pulumi.yaml"
README = ROOT / "README.md"
PLACEHOLDER = "<!-- config-reference -->"
START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
WRITE_COMMAND = "python tools/config_reference.py --write"


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


def replace_block(readme: str, table: str) -> str:
    """`readme` with the generated block (markers included) holding `table`, in place of the old block or marker."""
    block = "\n".join(
        [START, f"<!-- generated from Pulumi.yaml by `{WRITE_COMMAND}`; edit Pulumi.yaml, not this -->", table, END]
    )
    if START in readme or END in readme:
        if not readme.count(START) == readme.count(END) == 1 or readme.index(END) < readme.index(START):
            raise ConfigReferenceError(f"README.md: needs {START} once, followed by {END} once")
        before, _, rest = readme.partition(START)
        return before + block + rest.partition(END)[2]
    lines = readme.splitlines(keepends=True)
    markers = [index for index, line in enumerate(lines) if line.strip() == PLACEHOLDER]
    if len(markers) != 1:
        raise ConfigReferenceError(
            f"README.md: needs exactly one {PLACEHOLDER} line (or the {START} ... {END} block), found {len(markers)}"
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
    except ConfigReferenceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
