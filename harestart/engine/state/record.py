"""Journal recording: the run's step records, saved durably before and after each step acts.

``Recorder`` owns the per-step records (what the result shows) and mirrors them, the group's
state and the run memory into the journal. On resume it reads the memory back and marks the
steps an earlier attempt finished.
"""

from __future__ import annotations

import threading

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Action, Plan, Step
from harestart.domain.result import GroupStatus, StepRecord, StepStatus
from harestart.engine.sequencer.memory import RunMemory
from harestart.engine.sequencer.scope import RunScope


class Recorder:
    def __init__(self, scope: RunScope, plan: Plan) -> None:
        self.scope = scope
        self.journal = scope.journal
        self.records: list[StepRecord] = [
            StepRecord(number=s.number, action=s.action, host=s.host) for s in plan.steps
        ]
        self._plan = plan
        self._lock = threading.RLock()
        scope.persist = self.persist

    def begin(self, started_at: str) -> None:
        j, scope = self.journal, self.scope
        if j is None:
            return
        if scope.resume:
            j.attempts += 1
            scope.facts.mha_was_running = bool(j.mha_was_running)
            scope.facts.mha_before = j.mha_before
            scope.memory = RunMemory.from_dict(j.memory)
        else:
            j.started_at = started_at
            for s in self._plan.steps:
                j.step(s.key)
        j.finished = False
        j.outcome = ""
        j.state = GroupStatus.REBOOT.value
        # Not saved yet: a first preflight that refuses leaves no journal behind.
        if scope.resume:
            j.save()

    def persist(self) -> None:
        with self._lock:
            j = self.journal
            if j is None:
                return
            for rec in self.records:
                js = j.step(rec.key)
                if rec.status is StepStatus.PENDING and js.status in ("done", "skipped"):
                    continue  # done in an earlier attempt
                js.status = rec.status.value
                js.started_at = rec.started_at
                js.duration_s = rec.duration_s
                js.detail = rec.detail
            j.state = self.scope.facts.state.value
            j.memory = self.scope.memory.to_dict()
            j.save()

    def end(self, outcome: str) -> None:
        if self.journal is None:
            return
        self.journal.outcome = outcome
        self.journal.finished = outcome == "done"
        self.persist()

    def close(self) -> None:
        """The run is over: the journal's file is let go."""
        if self.journal is not None:
            self.journal.close()

    def remove(self) -> None:
        """A refused first preflight changed nothing: nothing to resume."""
        if not self.scope.resume and self.journal is not None:
            self.journal.remove()

    def update(self, index: int, **changes: object) -> StepRecord:
        with self._lock:
            self.records[index] = self.records[index].evolve(**changes)
            return self.records[index]

    def done_earlier(self, index: int, step: Step) -> bool:
        """On resume: a step the earlier attempt finished is not run again (preflight is)."""
        j = self.journal
        if not self.scope.resume or j is None or step.action is Action.PREFLIGHT:
            return False
        js = j.step(step.key)
        if js.status not in ("done", "skipped"):
            return False
        record = self.update(
            index,
            status=StepStatus(js.status),
            started_at=js.started_at,
            duration_s=js.duration_s,
            detail=f"(earlier attempt) {js.detail}",
        )
        self.scope.reporter.step_finished(self.scope.group.id, record)
        return True

    def note_preflight(self, state: GroupState) -> None:
        """A new run's MHA state and topology, for the failure policy and a later resume."""
        facts, j = self.scope.facts, self.journal
        # Preflight refuses an unknown MHA state before this is called.
        facts.mha_before = state.mha_text()
        facts.mha_was_running = state.mha is not None and state.mha.running()
        if j is not None:
            j.mha_before = facts.mha_before
            j.mha_was_running = facts.mha_was_running
            j.topology = topology(self.scope.group, state)

    def resumable_host(self) -> str | None:
        """The node whose restart the earlier attempt left unfinished (it may be down)."""
        js = self.journal.first_unfinished() if self.journal is not None else None
        if js is None or ":" not in js.key or not js.key.startswith("restart_"):
            return None
        return js.key.split(":", 1)[1]


def topology(group: Group, state: GroupState) -> dict[str, object]:
    """What resume must find again: the source, its server_id, the replicas' server_ids."""
    ids = {n.name: (n.info.server_id if n.info else None) for n in state.nodes}
    return {
        "source": group.source.name,
        "source_server_id": ids.get(group.source.name),
        "replicas": {r.name: ids.get(r.name) for r in group.replicas},
    }
