"""Run reporting: a live status line on a terminal, one JSON line per event otherwise."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

STATUS_INTERVAL = 0.2  # seconds between status-line redraws


@dataclass
class Counters:
    projects_total: int = 0
    projects_done: int = 0
    projects_failed: int = 0
    files: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)


def _human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


class StatusLine:
    """One line redrawn in place on a terminal, cleared before other output and ended when the run is."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def show(self, line: str) -> None:
        self.stream.write("\r\x1b[2K" + line)
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.shown = False

    def end(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


class Reporter:
    """Thread-safe sink for run events; `json_lines` is decided by whether the stream is a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, *, json_lines: bool | None = None) -> None:
        self.stream = stream
        self.json_lines = not stream.isatty() if json_lines is None else json_lines
        self.counters = Counters()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._status = StatusLine(stream)

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Record one event; on a terminal only warnings and errors print as lines."""
        with self._lock:
            if self.json_lines:
                record = {"ts": round(time.time(), 3), "level": level, "event": event, **fields}
                self.stream.write(json.dumps(record, default=str) + "\n")
            elif level != "info":
                detail = " ".join(f"{k}={v}" for k, v in fields.items())
                self._status.clear()
                self.stream.write(f"{level}: {event} {detail}\n")
            self.stream.flush()

    def start(self, projects_total: int) -> None:
        with self._lock:
            self.counters.projects_total = projects_total
        self.event("plan", projects=projects_total)

    def file_stored(self, size: int) -> None:
        with self._lock:
            self.counters.files += 1
            self.counters.bytes += size
            self._draw()

    def project_finished(self, *, failed: bool) -> None:
        with self._lock:
            self.counters.projects_done += 1
            self.counters.projects_failed += failed
            self._draw()

    def summary(self) -> dict[str, Any]:
        c = self.counters
        seconds = max(time.monotonic() - c.started, 1e-9)
        return {
            "projects": c.projects_done,
            "failed": c.projects_failed,
            "files": c.files,
            "bytes": c.bytes,
            "seconds": round(seconds, 3),
            "files_per_second": round(c.files / seconds, 1),
            "mb_per_second": round(c.bytes / seconds / 1e6, 2),
        }

    def close(self) -> None:
        with self._lock:
            self._draw(force=True)
            self._status.end()

    def _draw(self, *, force: bool = False) -> None:
        if self.json_lines:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < STATUS_INTERVAL:
            return
        self._last_draw = now
        c = self.counters
        elapsed = max(now - c.started, 1e-9)
        rate = c.projects_done / elapsed
        remaining = c.projects_total - c.projects_done
        eta = f"{remaining / rate:.0f}s" if rate > 0 and remaining > 0 else "-"
        line = (
            f"projects {c.projects_done}/{c.projects_total} ({c.projects_failed} failed)  files {c.files}  "
            f"{_human_bytes(c.bytes)}  {_human_bytes(c.bytes / elapsed)}/s  ETA {eta}"
        )
        self._status.show(line)
