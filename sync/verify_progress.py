"""What a long verify shows while it runs and keeps so that it can stop and resume.

Progress: a status line on a terminal, one JSON line per PROGRESS_SECONDS otherwise, and a summary with the rate in
objects per second. Checkpoint: a local folder holding the claims sorted so far (sync/claims.py) and `progress.json`,
rewritten atomically every CHECKPOINT_SECONDS. Both passes walk in key order, so "everything up to this project" and
"everything up to this key" say all that is done; a resumed verify starts after them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO, cast

from sync.claims import ClaimSpill
from sync.progress import StatusLine

CHECKPOINT_FORMAT = 1
CHECKPOINT_SECONDS = 30.0
PROGRESS_SECONDS = 10.0
STATUS_SECONDS = 0.2


class CheckpointError(ValueError):
    """The checkpoint folder cannot be used: unwritable, damaged, or another verify's (destination, mode, shard)."""


class Checkpoint:
    """Where a verify keeps its claims and how far it got. Without a folder, claims go to a temporary one and
    nothing is kept. `claims` and `parts` put the claims elsewhere, split by shard (sync/verify_share.py)."""

    def __init__(self, directory: Path | None, identity: dict[str, Any], *, claims: Path | None = None, parts: int = 1):
        self.kept = directory is not None
        self._temp = None if directory else tempfile.TemporaryDirectory(prefix="pypi-cdn-verify-")
        self.directory = Path(self._temp.name) if self._temp else cast(Path, directory)
        self.identity = identity
        self.saved: dict[str, Any] = {}
        try:
            if self.kept:
                self.directory.mkdir(parents=True, exist_ok=True)
                self.saved = self._load()
            spill_to = claims or self.directory / "claims"
            self.spill = ClaimSpill(spill_to, keep=self.saved.get("runs", 0), parts=parts)
        except OSError as error:
            raise CheckpointError(f"checkpoint {self.directory}: {error}") from None
        self._last_save = time.monotonic()

    @property
    def path(self) -> Path:
        return self.directory / "progress.json"

    def _load(self) -> dict[str, Any]:
        try:
            saved = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise CheckpointError(f"checkpoint {self.path}: unreadable ({error})") from None
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {self.path}: not a verify checkpoint")
        if saved.get("identity") != self.identity:
            raise CheckpointError(
                f"checkpoint {self.path} is of another verify ({saved.get('identity')}), not {self.identity}"
            )
        return {} if saved.get("done") else saved  # a finished verify is not resumed: a new one starts over

    def due(self) -> bool:
        return self.kept and time.monotonic() - self._last_save >= CHECKPOINT_SECONDS

    def save(self, progress: dict[str, Any]) -> None:
        """Write `progress` after the claims it counts on: a crash in between leaves the previous checkpoint."""
        if not self.kept:
            return
        self.spill.flush()
        record = {"format": CHECKPOINT_FORMAT, "identity": self.identity, "runs": self.spill.runs, **progress}
        temp = self.path.with_suffix(".tmp")
        with temp.open("w") as out:
            json.dump(record, out)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self.path)
        self.saved = record
        self._last_save = time.monotonic()

    def close(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()


class VerifyProgress:
    """Counts shown while a verify runs; thread-compatible (only the consuming thread calls it)."""

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool | None = None):
        self.stream = stream or sys.stderr
        self.json_lines = not self.stream.isatty() if json_lines is None else json_lines
        self.started = time.monotonic()
        self._last = 0.0
        self._status = StatusLine(self.stream)

    def update(self, counts: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        interval = PROGRESS_SECONDS if self.json_lines else STATUS_SECONDS
        if not force and now - self._last < interval:
            return
        self._last = now
        if self.json_lines:
            self._write_json("progress", counts)
            return
        rate = counts.get("objects_per_second", 0)
        line = (
            f"{counts['phase']}: projects {counts['projects']}  objects {counts['objects']}  "
            f"problems {counts['problems']}  {rate:.0f} objects/s"
        )
        self._status.show(line)

    def clear(self) -> None:
        """Clear the status line before a finding is printed to the same terminal."""
        self._status.clear()

    def summary(self, counts: dict[str, Any]) -> None:
        if self.json_lines:
            self._write_json("summary", counts)
        else:
            self._status.end()
        self.stream.flush()

    def _write_json(self, event: str, counts: dict[str, Any]) -> None:
        self.stream.write(json.dumps({"ts": round(time.time(), 3), "event": event, **counts}) + "\n")
        self.stream.flush()
