"""The persistent hook programs of one run (``hooks.mode: persistent``).

Each program (a command in a directory) starts at the first event that names it and answers
harestart's hello (``harestart.domain.hook_protocol``); events then go to it one at a time (a
parallel batch's replicas queue behind each other), and it is stopped when the run ends
(``stop_all``: its stdin closed, then SIGTERM, then SIGKILL). A program that dies, answers
outside the protocol or answers late is stopped at once, and is not started again in this run:
its event failed, so the run stops at that step, and an event of the same batch still queued
fails as "not sent" (``resume`` is a new run with a new program). Starting it again in the
middle of a run would hide a program that crashes after it acted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harestart.adapters.protocols import HookProgram, HookRunner
from harestart.domain.group import Group
from harestart.domain.hook_protocol import (
    EventOutcome,
    answer_outcome,
    event_line,
    hello,
    hello_outcome,
    unavailable,
)
from harestart.domain.hooks import RunHook, hook_event, program_environment


@dataclass
class _Slot:
    """One program of the run: not started yet, running, or stopped after ``failed``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    program: HookProgram | None = None
    failed: EventOutcome | None = None
    sent: int = 0  # events sent to it (the next one's id is sent + 1)


class HookPrograms:
    """Starts, talks to and stops the run's persistent hook programs (thread-safe)."""

    def __init__(self, group: Group, log: Any) -> None:
        self.group, self.log = group, log
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._lock = threading.Lock()

    def send(
        self, runner: HookRunner, act: RunHook, run_id: str, environ: Mapping[str, str]
    ) -> EventOutcome:
        """Send ``act``'s event to its program (started first if need be) and judge the
        answer. Raises ``RemoteError`` only when the program could not be started."""
        spec = act.hook
        with self._lock:
            slot = self._slots.setdefault(spec.program, _Slot())
        with slot.lock:
            if slot.failed is not None:
                return unavailable(spec.command, spec.timeout, slot.failed)
            if slot.program is None:
                slot.program = runner.start(
                    spec.command, cwd=spec.cwd, env=program_environment(act, environ)
                )
                self.log.info("hook.program_started", point=act.point.value, host=act.host)
                refused = self._hello(slot.program, act)
                if refused is not None:
                    return self._retire(slot, refused)
            slot.sent += 1
            line = event_line(slot.sent, hook_event(self.group, act, run_id))
            answer = slot.program.exchange(line, timeout=spec.timeout)
            outcome = answer_outcome(spec.command, answer, spec.timeout, slot.sent)
            return self._retire(slot, outcome) if outcome.broken else outcome

    def _hello(self, program: HookProgram, act: RunHook) -> EventOutcome | None:
        spec = act.hook
        points = self.group.hooks.points_of(spec.program) or (act.point,)
        x = program.exchange(hello(points), timeout=spec.timeout)
        return hello_outcome(spec.command, x, spec.timeout, points)

    def _retire(self, slot: _Slot, outcome: EventOutcome) -> EventOutcome:
        """Stop a program that failed the protocol; later events are not sent to it."""
        slot.failed = outcome
        if slot.program is not None:
            how = slot.program.stop(polite=False)
            self.log.warning("hook.program_stopped", why=outcome.ending.value, ended=how)
        return outcome

    def stop_all(self) -> None:
        """The end of the run: every program still running is told so and ends."""
        with self._lock:
            slots = list(self._slots.values())
        for slot in slots:
            with slot.lock:
                if slot.program is not None and slot.failed is None:
                    how = slot.program.stop(polite=True)
                    self.log.info("hook.program_stopped", why="end of the run", ended=how)
                    slot.program = None
