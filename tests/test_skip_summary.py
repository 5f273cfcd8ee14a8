"""tests/fixtures/skip_summary.py: a partial run ends with one line naming each skip reason and its count."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "tests.fixtures.skip_summary"


@pytest.fixture(autouse=True)
def importable_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_skips_are_counted_by_reason_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skipif(True, reason="nginx is not installed (apt-get install nginx-light)")
        def test_a(): pass

        @pytest.mark.skipif(True, reason="nginx is not installed (apt-get install nginx-light)")
        def test_b(): pass

        def test_c():
            pytest.skip("node is not installed (apt-get install nodejs)")

        def test_d(): pass
        """
    )
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3)
    lines = [line for line in result.outlines if line.startswith("PARTIAL RUN")]
    assert lines == [
        "PARTIAL RUN: 3 skipped — 2 x nginx is not installed (apt-get install nginx-light); "
        "1 x node is not installed (apt-get install nodejs)"
    ]


def test_a_whole_run_says_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(): pass\n")
    result = pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not [line for line in result.outlines if "PARTIAL RUN" in line]
