"""Shared fixtures: a local upstream index (tests/fixtures/upstream.py), a moto S3 server (tests/fixtures/s3.py), a
closing line naming what was skipped and why (tests/fixtures/skip_summary.py), and the synthetic mirror the verify and
reclaim tests break (tests/fixtures/verify_rig.py)."""

pytest_plugins = [
    "tests.fixtures.upstream",
    "tests.fixtures.s3",
    "tests.fixtures.skip_summary",
    "tests.fixtures.verify_rig",
    "pytester",
]
