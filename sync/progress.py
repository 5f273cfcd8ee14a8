"""The sync's one event path: a `Reporter` writes each event as a JSON line, as a line above a live status line on a
terminal, or as a powertools structured log line (Lambda); `LogRoute` routes the `sync` package's logged warnings and
stamina's retries into it."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

from stamina.instrumentation import RetryDetails, RetryHook, get_on_retry_hooks, set_on_retry_hooks

STATUS_INTERVAL = 0.2  # seconds between status-line redraws
# LogRecord's own attributes: an event field of one of these names is logged as `field_<name>` (logging refuses it).
RESERVED_LOG_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


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
    """Thread-safe sink for run events: to `logger` (a powertools Logger: one JSON object each, in CloudWatch) when
    given, else to `stream`, as JSON lines or, on a terminal (`json_lines` None decides by it), a status line."""

    def __init__(self, stream: TextIO = sys.stderr, *, json_lines: bool | None = None, logger: Any = None) -> None:
        self.stream = stream
        self.logger = logger
        self.json_lines = logger is not None or (not stream.isatty() if json_lines is None else json_lines)
        self.counters = Counters()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._status = StatusLine(stream)

    def event(self, event: str, *, level: str = "info", **fields: Any) -> None:
        """Record one event; on a terminal only warnings and errors print as lines."""
        if self.logger is not None:
            log = {"warning": self.logger.warning, "error": self.logger.error}.get(level, self.logger.info)
            extra = {(f"field_{k}" if k in RESERVED_LOG_FIELDS else k): v for k, v in fields.items()}
            log(event, extra=extra, stacklevel=3)  # the location logged is the caller's, not this method's
            return
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


class LogRoute(logging.Handler):
    """While installed, the warnings the `sync` package logs (an upstream file entry dropped as unsafe, a listed name
    refused) and stamina's scheduled retries become events of `reporter`, so every rejected input and every retry is
    named in the run's log. The CLI installs it around a run, the Lambda runtime around each invocation."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter
        self._previous_hooks: tuple[RetryHook, ...] = ()

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.event("warning", level=record.levelname.lower(), logger=record.name, message=record.getMessage())

    def _retry_scheduled(self, details: RetryDetails) -> None:
        self.reporter.event(
            "retry_scheduled",
            level="warning",
            callable=details.name,
            retry=details.retry_num,
            wait_seconds=round(details.wait_for, 3),
            error=repr(details.caused_by),
        )

    def install(self) -> LogRoute:
        logging.getLogger("sync").addHandler(self)
        self._previous_hooks = get_on_retry_hooks()
        set_on_retry_hooks([self._retry_scheduled])
        return self

    def remove(self) -> None:
        logging.getLogger("sync").removeHandler(self)
        set_on_retry_hooks(self._previous_hooks)

    def __enter__(self) -> LogRoute:
        return self.install()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.remove()
