"""Benchmark 6: a first whole-index sync of a PyPI-sized index, to a folder: peak RSS and time of the whole run.

The fake PyPI lists `--projects` file-less projects and has no change feed, so the run reads the root listing, plans
every project, fetches every page, publishes it, records it in the state and writes the root pages: all that grows
with the number of projects, without the files' transfer time. `python -m sync mirror` runs as a child process,
measured by `wait4` (bench.compare's wrapper). Run: .venv/bin/python -m bench.full_sync [--projects 930000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.compare import run_child
from tests.upstream.index import FakeIndex
from tests.upstream.server import UpstreamServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=930_000)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    index = FakeIndex()
    index.add_bulk_names(args.projects)
    with UpstreamServer(index, xmlrpc_enabled=False) as server, tempfile.TemporaryDirectory() as work:
        dest = Path(work) / "mirror"
        command = [
            sys.executable,
            "-m",
            "sync",
            "mirror",
            "--upstream",
            server.url,
            "--dest",
            str(dest),
            "--workers",
            str(args.workers),
        ]
        seconds, cpu, peak_mb, code = run_child(command, dict(os.environ), Path(work) / "run.log", timeout=4 * 3600)
        published = sum(1 for _ in (dest / "simple").iterdir()) - 2 if code == 0 else 0  # less the two root pages
    print(f"{'projects':>9} {'exit':>4} {'published':>9} {'wall s':>7} {'CPU s':>6} {'peak RSS MB':>11}")
    print(f"{args.projects:>9,} {code:>4} {published:>9,} {seconds:>7.0f} {cpu:>6.0f} {peak_mb:>11.0f}")


if __name__ == "__main__":
    main()
