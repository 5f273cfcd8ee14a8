"""The fault, kill and hostile-input figures of the suite: how many of each the tests try.

Run from the repository root: `.venv/bin/python bench/faults_report.py`. Counts come from the test modules' own case
tables and pytest's collection, so they stay true as cases are added. (Whether each passed — `verify` sound after
each — is what `pytest tests/test_faults_*.py tests/test_kill_resume.py tests/test_hostile_input.py
tests/test_concurrency.py tests/test_hostile_upstream.py tests/test_upstream_fuzz.py` reports.)

Issue 13's cases (a hostile upstream) are counted by class wherever they live: a test marked
`@pytest.mark.hostile_class(n)` is one case of class n per collected parameter set.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import (  # noqa: E402
    test_hostile_input,
    test_hostile_upstream,
    test_kill_resume,
    test_storage_properties,
    test_upstream_fuzz,
)


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


# Issue 13's classes, as the rows of the report name them.
HOSTILE_CLASSES = {
    1: "two projects claiming one storage key",
    2: "names that stop the whole mirror",
    3: "small input, unbounded memory",
    4: "SSRF: ports, redirects, metadata addresses",
    5: "state poisoning: absurd serials",
    6: "no overall deadline; lease on SIGTERM",
    7: "a transient 404 or empty file list",
    8: "immutable objects overwritten",
    9: "file names too long for the destination",
    10: "edge function cost per header",
}


class _HostileClassCounter:
    """A pytest plugin counting the collected tests marked `hostile_class(n)`, by n."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            marker = item.get_closest_marker("hostile_class")
            if marker is not None:
                self.counts[int(marker.args[0])] += 1


def hostile_cases() -> Counter[int]:
    """Collected tests of each issue 13 class, over the whole suite."""
    counter = _HostileClassCounter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main(["--collect-only", "-q", "-n0", "-m", "hostile_class", "-p", "no:cacheprovider"], [counter])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise SystemExit(f"collecting the tests failed (pytest exit code {code})")
    return counter.counts


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
        (
            "random storage keys and file URLs (hypothesis examples)",
            test_storage_properties.MAX_EXAMPLES * collected("test_storage_properties"),
        ),
    ]
    by_class = hostile_cases()
    rows += [(f"hostile class {n}: {label}", by_class[n]) for n, label in HOSTILE_CLASSES.items()]
    width = max(len(label) for label, _ in rows)
    print(f"{'tried':<{width}}  count")
    for label, count in rows:
        print(f"{label:<{width}}  {count:5}")


if __name__ == "__main__":
    main()
