"""The fault, kill and hostile-input figures of the suite: how many of each the tests try.

Run from the repository root: `.venv/bin/python bench/faults_report.py`. Counts come from the test modules' own case
tables and pytest's collection, so they stay true as cases are added. (Whether each passed — `verify` sound after
each — is what `pytest tests/test_faults_*.py tests/test_kill_resume.py tests/test_hostile_input.py
tests/test_concurrency.py tests/test_hostile_upstream.py tests/test_upstream_fuzz.py` reports.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import test_hostile_input, test_hostile_upstream, test_kill_resume, test_upstream_fuzz  # noqa: E402


def collected(module: str) -> int:
    """Test cases pytest collects from tests/<module>.py."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n0", f"tests/{module}.py"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return sum(1 for line in result.stdout.splitlines() if "::" in line)


def main() -> None:
    hostile_entries = len(test_hostile_input.hostile_entries("http://upstream")) + 1  # + an entry that is no object
    names = test_hostile_input.HOSTILE_NAMES
    feed_names = [name for name in names if not test_hostile_input.XML_FORBIDDEN.search(name)]
    rows = [
        ("upstream faults (one test each)", collected("test_faults_upstream")),
        ("storage faults: S3 and disk full (one test each)", collected("test_faults_storage")),
        ("kill -9 trials", test_kill_resume.TRIALS),
        ("concurrency cases (folder and S3)", collected("test_concurrency")),
        ("hostile file entries (dropped, page kept)", hostile_entries),
        ("hostile pages (refused whole)", len(test_hostile_input.HOSTILE_PAGES)),
        ("hostile project names (feed + root listing)", len(feed_names) + len(names)),
        ("HTML pages with script in attributes", 1),
        ("feed answers that are not XML", 1),
        ("hostile request paths at the edge", test_hostile_input.EDGE_TARGETS),
        (
            "hostile upstream: names, serials, SSRF, deadlines, signals (one test each)",
            collected("test_hostile_upstream"),
        ),
        ("hostile answers measured for memory (of those)", len(test_hostile_upstream.MEMORY_CASES)),
        (
            "property-based examples over the parsers",
            collected("test_upstream_fuzz") * test_upstream_fuzz.FUZZ_EXAMPLES,
        ),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"{'tried':<{width}}  count")
    for label, count in rows:
        print(f"{label:<{width}}  {count:5}")


if __name__ == "__main__":
    main()
