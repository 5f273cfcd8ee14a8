"""One page pass shared by the N shards of a verify, through a folder they all reach (one machine's disk, EFS, NFS).

Without it every shard reads every project's JSON page for its claims: N x 930,000 GETs at PyPI's size. With it
shard i reads only the pages of the projects it owns (`Shard.owns`, a stable hash of the name), spills their claims
split by key shard into `from-<i>/` (sync/claims.py), and marks `from-<i>/done`; the object pass of shard j waits
for every shard's mark and merges part j of all their runs. Each page is read once in all. The folder belongs to one
verify: start each new verify with a new folder, and reuse it only to resume that verify.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sync.claims import Shard, run_path

DONE_FORMAT = 1
WAIT_SECONDS = 6 * 3600.0  # how long a shard waits for the others' page passes before it gives up
POLL_SECONDS = 2.0


class ShareError(ValueError):
    """The shared folder cannot be used: another verify's marks, or shards that did not finish in time."""


class SharedPages:
    def __init__(self, directory: Path, shard: Shard, dest: str, *, wait_seconds: float = WAIT_SECONDS):
        self.directory, self.shard, self.wait_seconds = directory, shard, wait_seconds
        self.identity = {"dest": dest, "shards": shard.count}

    def claims_dir(self, index: int | None = None) -> Path:
        """Where shard `index` (this one by default) spills the claims of the pages it reads."""
        return self.directory / f"from-{self.shard.index if index is None else index:03d}"

    def _done(self, index: int | None = None) -> Path:
        return self.claims_dir(index) / "done"

    def begin(self) -> None:
        """This shard (re)starts its page pass: its earlier mark, if any, no longer holds."""
        self._done().unlink(missing_ok=True)

    def finish(self, runs: int, pages_started: float) -> None:
        """Mark this shard's page pass done: its first `runs` runs hold the claims of every page it owns."""
        mark = {"format": DONE_FORMAT, "identity": self.identity, "runs": runs, "pages_started": pages_started}
        temp = self._done().with_suffix(".tmp")
        with temp.open("w") as out:
            json.dump(mark, out)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self._done())

    def wait(self) -> list[dict[str, Any]]:
        """Every shard's mark, once all exist (polling, at most `wait_seconds`); raises ShareError naming the shards
        not done, or a mark of another verify."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            marks = {index: self._read(index) for index in range(self.shard.count)}
            missing = [index for index, mark in marks.items() if mark is None]
            if not missing:
                return [mark for mark in marks.values() if mark is not None]
            if time.monotonic() >= deadline:
                names = ", ".join(f"{index}/{self.shard.count}" for index in missing)
                raise ShareError(
                    f"shared pages {self.directory}: shards {names} did not finish their page pass within "
                    f"{self.wait_seconds:.0f} s"
                )
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def _read(self, index: int) -> dict[str, Any] | None:
        try:
            mark = json.loads(self._done(index).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise ShareError(f"shared pages {self._done(index)}: unreadable ({error})") from None
        if not isinstance(mark, dict) or mark.get("format") != DONE_FORMAT or mark.get("identity") != self.identity:
            raise ShareError(
                f"shared pages {self._done(index)}: the mark of another verify "
                f"({mark.get('identity') if isinstance(mark, dict) else mark!r:.200}), not {self.identity}"
            )
        if not isinstance(mark.get("runs"), int) or not isinstance(mark.get("pages_started"), int | float):
            raise ShareError(f"shared pages {self._done(index)}: not a page pass mark")
        return mark

    def runs(self, marks: list[dict[str, Any]]) -> list[Path]:
        """This shard's part of every shard's claim runs, as their marks count them."""
        part, parts = self.shard.index, self.shard.count
        return [
            run_path(self.claims_dir(index), run, part, parts)
            for index, mark in enumerate(marks)
            for run in range(mark["runs"])
        ]
