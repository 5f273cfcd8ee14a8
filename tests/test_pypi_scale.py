"""Memory at PyPI's scale (~930,000 projects): planning from the root listing, and a full mirror's state and root."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sync.folder_storage import FolderStorage
from sync.layout import STATE_KEY, STATE_PREFIX
from sync.state import ProjectState, load_state
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer

REPO = Path(__file__).resolve().parent.parent
PYPI_PROJECTS = 930_000
RSS_BUDGET_MB = 150  # issue 6's goal for the whole sync process
# The child's own high-water mark. Not getrusage: on Linux its ru_maxrss starts from the parent's at exec.
PEAK_MB = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]) / 1024"

PLAN_IN_A_CHILD = """
import json, sys, tempfile
from sync.config import MirrorConfig
from sync.plan import plan_run
from sync.progress import Reporter
from sync.state import MirrorState
from sync.upstream import UpstreamClient
config = MirrorConfig(upstream=sys.argv[1], dest=tempfile.mkdtemp())
plan = plan_run(config, UpstreamClient(config.upstream), MirrorState(), Reporter())
print(json.dumps({
    "planned": len(plan.projects),
    "first": next(iter(plan.projects.items())),
    "peak_mb": PEAK_MB,
}))
""".replace("PEAK_MB", PEAK_MB)


def test_planning_from_a_pypi_sized_root_stays_within_the_memory_budget(tmp_path):
    index = FakeIndex()
    index.add_bulk_names(PYPI_PROJECTS)
    with UpstreamServer(index, xmlrpc_enabled=False) as server:
        output = subprocess.run(
            [sys.executable, "-c", PLAN_IN_A_CHILD, server.url],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=240,
        ).stdout
    found = json.loads(output.strip().splitlines()[-1])
    assert found["planned"] == PYPI_PROJECTS
    assert found["first"] == ["bulk-project-0000000", index.serial - PYPI_PROJECTS + 1]
    assert found["peak_mb"] < RSS_BUDGET_MB, f"planning peaked at {found['peak_mb']:.0f} MB"


STEADY_RUN_IN_A_CHILD = """
import json, sys
from pathlib import Path
from sync.config import MirrorConfig
from sync.run import publish_root
from sync.state import ProjectState, load_state, save_state
from sync.folder_storage import FolderStorage
storage = FolderStorage(Path(sys.argv[1]))
state = load_state(storage)
for i in range(0, len(state.projects), 93):
    state.projects[f"project-{i:07d}"] = ProjectState(40_000_000 + i, None)
del state.projects["project-0000001"]
state.projects["zzz-new-project"] = ProjectState(50_000_000, '"new"')
publish_root(storage, state.projects)
save_state(storage, state)
print(json.dumps({"projects": len(state.projects), "peak_mb": PEAK_MB}))
""".replace("PEAK_MB", PEAK_MB)


def test_a_full_mirrors_state_and_root_stay_within_the_memory_budget(tmp_path):
    """Load the state of a 930,000-project mirror, change 1%, publish the root pages and save: as one run does."""
    header = {"format": 2, "serial": 1, "incomplete": False, "pending": {}, "projects": PYPI_PROJECTS}
    (tmp_path / STATE_PREFIX).mkdir()
    with open(tmp_path / STATE_KEY, "w") as state_file:
        state_file.write(json.dumps(header) + "\n")
        state_file.writelines(f'["project-{i:07d}",{30_000_000 + i},"\\"{i:022x}\\""]\n' for i in range(PYPI_PROJECTS))
    output = subprocess.run(
        [sys.executable, "-c", STEADY_RUN_IN_A_CHILD, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    ).stdout
    found = json.loads(output.strip().splitlines()[-1])
    assert found["projects"] == PYPI_PROJECTS
    assert found["peak_mb"] < RSS_BUDGET_MB, f"the run peaked at {found['peak_mb']:.0f} MB"
    saved = load_state(FolderStorage(tmp_path))
    assert saved is not None
    assert len(saved.projects) == PYPI_PROJECTS
    assert saved.projects["project-0000093"] == ProjectState(40_000_093, None)
    assert saved.projects["project-0000094"] == ProjectState(30_000_094, f'"{94:022x}"')
    assert "project-0000001" not in saved.projects
    root = json.loads((tmp_path / "simple/index.v1_json").read_bytes())
    assert len(root["projects"]) == PYPI_PROJECTS
    assert root["projects"][-1] == {"name": "zzz-new-project"}
