"""Progress for people: each step as it starts and ends, and what long waits wait for."""

from __future__ import annotations

import datetime as dt
from typing import TextIO

from harestart.domain.plan.model import Step
from harestart.domain.result import StepRecord, StepStatus
from harestart.group_commit import GroupCommit

_MARK = {
    StepStatus.DONE: "ok",
    StepStatus.SKIPPED: "skipped",
    StepStatus.FAILED: "FAILED",
    StepStatus.INTERRUPTED: "INTERRUPTED",
}


class TextReporter:
    """Writes one line per event to ``stream`` (stdout for text output, stderr for JSON), at
    once: by the group's thread, or, when another group's thread is writing, by that one in
    the same write (``GroupCommit``: hundreds of groups do not queue on the terminal)."""

    def __init__(self, stream: TextIO, *, prefix_group: bool = False) -> None:
        self.stream = stream
        self.prefix_group = prefix_group
        self._lines = GroupCommit(self._write)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _line(self, group: str, text: str) -> None:
        stamp = dt.datetime.now().strftime("%H:%M:%S")
        who = f"[{group}] " if self.prefix_group else ""
        self._lines.write(f"{stamp} {who}{text}\n")

    def step_started(self, group: str, step: Step) -> None:
        self._line(group, f"{step.number}. {step.summary} ...")

    def step_finished(self, group: str, record: StepRecord) -> None:
        took = "" if record.duration_s is None else f" in {record.duration_s:.1f}s"
        mark = _MARK.get(record.status, record.status.value)
        where = f" {record.host}" if record.host else ""
        self._line(
            group, f"{record.number}. {record.action.value}{where}: {mark}{took}: {record.detail}"
        )

    def progress(self, group: str, host: str | None, text: str) -> None:
        self._line(group, f"   {host + ': ' if host else ''}{text}")
