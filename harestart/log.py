"""structlog configuration: human lines on stderr, a JSON file per run, secrets masked.

Every event passes ``mask_secrets`` last-but-one, so a ``Secret`` anywhere in an event renders
as ``***`` and any known secret value inside a string is replaced too.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import structlog

from harestart.domain.secret import MASK, Secret, scrub
from harestart.engine.state.private import open_private_file, write_all
from harestart.group_commit import GroupCommit

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def mask_secrets(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _mask(value)
    return event


def _mask(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mask(v) for v in value)
    return value


class LogFile:
    """The run's JSON log file, appended to by the threads that log (``GroupCommit``). A file
    that cannot be written (disk full) is reported once on stderr and the run goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # owner-only, never through a symbolic link, only a regular file of ours (exit 2)
        self._fd = open_private_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._failed = False
        self._lines = GroupCommit(self._write)

    def write(self, line: str) -> None:
        self._lines.write(line)

    def close(self) -> None:
        self._lines.close()
        os.close(self._fd)

    def _write(self, text: str) -> None:
        if self._failed:
            return
        try:
            write_all(self._fd, text.encode("utf-8", "backslashreplace"))
        except OSError as exc:
            self._failed = True  # said once; the run goes on without its log
            print(
                f"harestart: cannot write the log file {self.path} ({exc.strerror}); "
                "records from now on are lost",
                file=sys.stderr,
            )


_current: LogFile | None = None  # the log file ``configure`` set up last


def configure(*, log_file: Path | None = None, verbose: bool = False) -> LogFile | None:
    """Configure structlog once per process (again: the previous log file is written out and
    closed). Returns the log file being written."""
    global _current  # noqa: PLW0603 - structlog's configuration is per process too
    handle = LogFile(log_file) if log_file else None
    if _current is not None:
        _current.close()
    _current = handle
    json_renderer = structlog.processors.JSONRenderer(default=str)
    console_renderer = structlog.dev.ConsoleRenderer(colors=False)
    console_min = 10 if verbose else 30  # debug when verbose, else warnings and above

    def emit(logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        level = _LEVELS.get(str(event.get("level", "info")), 20)
        if handle is not None:
            handle.write(str(json_renderer(logger, name, dict(event))) + "\n")
        if level >= console_min:
            sys.stderr.write(str(console_renderer(logger, name, dict(event))) + "\n")
        return ""

    _install(emit)
    return handle


def close() -> None:
    """Write out and close the log file (the command's end)."""
    global _current  # noqa: PLW0603 - see configure
    if _current is not None:
        _current.close()
        _current = None


def configure_json_stream(stream: TextIO, *, verbose: bool = False) -> None:
    """Every event as one JSON line on ``stream`` (``harestart serve``: access log and runs).

    Info and above (debug too when verbose), with the same secret masking as ``configure``."""
    json_renderer = structlog.processors.JSONRenderer(default=str)
    minimum = 10 if verbose else 20
    lock = threading.Lock()  # handler threads and restart threads log concurrently

    def emit(logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        if _LEVELS.get(str(event.get("level", "info")), 20) >= minimum:
            line = str(json_renderer(logger, name, dict(event)))
            with lock:
                stream.write(line + "\n")
                stream.flush()
        return ""

    _install(emit)


def _install(emit: Any) -> None:
    """The one processor chain: context, level, time, tracebacks, masking last, then ``emit``."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_secrets,
            emit,
        ],
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=False,
    )
