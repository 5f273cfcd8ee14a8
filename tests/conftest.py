"""Shared fixtures: a local upstream index (tests/fixtures/upstream.py), a moto S3 server (tests/fixtures/s3.py), and
a closing line naming what was skipped and why (tests/fixtures/skip_summary.py)."""

pytest_plugins = ["tests.fixtures.upstream", "tests.fixtures.s3", "tests.fixtures.skip_summary", "pytester"]
