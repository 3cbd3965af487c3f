"""What a run produced: per-step records and the group's result, as text and JSON."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass, field, replace
from typing import Any

from harestart.domain.plan.model import Action


class GroupStatus(enum.StrEnum):
    """The seed API's HA instance states."""

    ACTIVE = "ACTIVE"
    REBOOT = "REBOOT"
    ERROR = "ERROR"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StepRecord:
    number: int
    action: Action
    host: str | None
    status: StepStatus = StepStatus.PENDING
    started_at: str | None = None
    duration_s: float | None = None
    detail: str = ""

    @property
    def key(self) -> str:
        return f"{self.action.value}:{self.host}" if self.host else self.action.value

    def evolve(self, **changes: Any) -> StepRecord:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "action": self.action.value,
            "host": self.host,
            "status": self.status.value,
            "started_at": self.started_at,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Failure:
    step: str
    host: str | None
    reason: str
    next_steps: tuple[str, ...] = ()
    failover_note: str = ""  # what the failure policy did with MHA, in one sentence

    def with_note(self, note: str) -> Failure:
        return replace(self, failover_note=note)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "host": self.host,
            "reason": self.reason,
            "failover": self.failover_note,
            "next_steps": list(self.next_steps),
        }


@dataclass(frozen=True)
class Interruption:
    """Where SIGINT/SIGTERM stopped a run: a safe point, not a failure (``resume`` continues).

    ``before``: the run stopped between steps and ``step`` never started (it is still pending);
    otherwise ``step`` was running and stopped inside (between two polls of a wait, or at once
    on a second signal). ``untouched`` are the nodes whose restart had not begun.
    """

    signal: str
    step: str
    host: str | None
    before: bool
    last_done: str | None = None  # the last step that finished
    untouched: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    failover_note: str = ""

    def with_note(self, note: str) -> Interruption:
        return replace(self, failover_note=note)

    def describe(self) -> str:
        """``by SIGINT before restart_source:db1, after restart_replica:db3 finished``"""
        if self.before:
            where = f"before {self.step}"
            if self.last_done:
                where += f", after {self.last_done} finished"
            where += " (nothing from there on was started)"
        else:
            where = f"during {self.step} (it did not finish)"
        return f"by {self.signal} {where}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "step": self.step,
            "host": self.host,
            "before_step": self.before,
            "last_done": self.last_done,
            "untouched": list(self.untouched),
            "failover": self.failover_note,
            "next_steps": list(self.next_steps),
        }


@dataclass(frozen=True)
class RunResult:
    group: str
    account: str
    state: GroupStatus
    started_at: str
    finished_at: str
    duration_s: float
    steps: tuple[StepRecord, ...]
    mha_before: str | None
    mha_after: str | None
    failure: Failure | None = None
    nodes: tuple[dict[str, Any], ...] = field(default=())
    log_file: str | None = None
    failover_enabled: bool | None = None  # is MHA running at the end?
    interrupted: str | None = None  # the signal that stopped the run
    resumed: bool = False
    interruption: Interruption | None = None  # where that signal stopped it

    @property
    def ok(self) -> bool:
        return (
            self.state is GroupStatus.ACTIVE and self.failure is None and self.interruption is None
        )

    def with_log_file(self, path: str) -> RunResult:
        return replace(self, log_file=path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "account": self.account,
            "state": self.state.value,
            "ok": self.ok,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_s": round(self.duration_s, 3),
            "mha_before": self.mha_before,
            "mha_after": self.mha_after,
            "failover_enabled": self.failover_enabled,
            "interrupted": self.interrupted,
            "resumed": self.resumed,
            "steps": [s.to_dict() for s in self.steps],
            "failure": self.failure.to_dict() if self.failure else None,
            "interruption": self.interruption.to_dict() if self.interruption else None,
            "nodes": list(self.nodes),
            "log_file": self.log_file,
        }


def render_results_json(results: list[RunResult], *, force_list: bool = False) -> str:
    """One object for one group; a list (one entry per group) with --all."""
    if len(results) == 1 and not force_list:
        doc: Any = results[0].to_dict()
    else:
        doc = [r.to_dict() for r in results]
    return json.dumps(doc, indent=2)


def render_summary(result: RunResult) -> str:
    """A summary table for people, ending in one sentence."""
    rows = [("#", "action", "host", "status", "time", "detail")]
    for s in result.steps:
        rows.append(
            (
                str(s.number),
                s.action.value,
                s.host or "-",
                s.status.value,
                "-" if s.duration_s is None else f"{s.duration_s:.1f}s",
                _clip(s.detail, 70),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    lines.insert(1, "-" * min(120, sum(widths) + 2 * len(widths) + 6))
    head = f"group {result.group} (account {result.account}): {result.state.value}"
    lines.insert(0, head)
    lines.append(f"MHA before: {result.mha_before or 'unknown'}")
    lines.append(f"MHA after:  {result.mha_after or 'unknown'}")
    f, stop = result.failure, result.interruption
    if f is not None or stop is not None:
        if f is not None:
            lines.append(f"FAILED at {f.step}{' on ' + f.host if f.host else ''}: {f.reason}")
        if stop is not None:
            lines.append(f"INTERRUPTED {stop.describe()}")
        notes = [x.failover_note for x in (f, stop) if x is not None and x.failover_note]
        for note in dict.fromkeys(notes):
            lines.append(f"MHA: {note}")
        if result.failover_enabled is False:
            lines.append("*** automatic failover is OFF (MHA is not running) ***")
        for n in result.nodes:
            lines.append(f"  node {n.get('summary', n.get('name'))}")
        hints = (*(f.next_steps if f else ()), *(stop.next_steps if stop else ()))
        for hint in dict.fromkeys(hints):
            lines.append(f"  next: {hint}")
    else:
        lines.append(
            f"Restarted {sum(1 for s in result.steps if s.action.value.startswith('restart_'))}"
            f" nodes in {result.duration_s:.1f} s; group is {result.state.value}."
        )
    if result.log_file:
        lines.append(f"log: {result.log_file}")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
