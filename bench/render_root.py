"""Benchmark 2: render and store the root pages (HTML and JSON) for 1,000,000 projects, as `sync.run.publish_root`
does: streamed in batches through a spool into a folder destination.

Peak memory is the process's high-water mark (VmHWM) after rendering, less the one before (names already built).
Run: .venv/bin/python -m bench.render_root [--projects N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sync import render
from sync.folder_storage import FolderStorage
from sync.layout import content_type_for
from sync.storage import put_chunks


def high_water_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1_000_000)
    args = parser.parse_args()
    names = sorted(f"project-{i:07d}-{'abcdefgh'[i % 8] * (i % 13)}".rstrip("-") for i in range(args.projects))
    baseline = high_water_mb()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        storage = FolderStorage(Path(folder))
        for key, page in (
            ("simple/index.html", lambda: render.root_html((name, None) for name in names)),
            ("simple/index.v1_json", lambda: render.root_json(((name, None) for name in names), None)),
        ):
            started = time.perf_counter()
            size = put_chunks(storage, key, page(), content_type=content_type_for(key), cache_control="no-cache")
            rows.append((key, time.perf_counter() - started, size / 1e6, high_water_mb() - baseline))
    print(f"root pages for {args.projects:,} projects (names: {baseline:.0f} MB of process before rendering)")
    print(f"{'page':<22} {'seconds':>8} {'size MB':>8} {'peak +MB':>9}")
    for label, seconds, size, peak in rows:
        print(f"{label:<22} {seconds:>8.2f} {size:>8.1f} {peak:>9.0f}")


if __name__ == "__main__":
    main()
