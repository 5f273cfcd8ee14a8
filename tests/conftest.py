"""Shared fixtures: a local upstream index (tests/fixtures/upstream.py) and a moto S3 server (tests/fixtures/s3.py)."""

pytest_plugins = ["tests.fixtures.upstream", "tests.fixtures.s3"]
