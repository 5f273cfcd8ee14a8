"""Shared fixtures: a local upstream index (tests/fixtures/upstream.py) and a moto S3 server (tests/fixtures/s3.py).

At the end of a run, one line says what was skipped and why, so a partial run is never mistaken for a whole one.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest_plugins = ["tests.fixtures.upstream", "tests.fixtures.s3"]


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped test gave (`nginx is not installed (apt-get install nginx-light)`)."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if isinstance(report, pytest.TestReport)]
    if not skipped:
        return
    reasons = Counter(skip_reason(report) for report in skipped)
    summary = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
    terminalreporter.write_line(f"PARTIAL RUN: {len(skipped)} skipped — {summary}", yellow=True, bold=True)
