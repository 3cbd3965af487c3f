"""The engine's small units: the registries, the typed run memory, poll_until's early stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harestart.domain import actions as plan_actions
from harestart.domain import gates as plan_gates
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import PlanOptions
from harestart.domain.topology import ReadOnlyState
from harestart.engine.ops.registry import EVALUATORS, PERFORMERS
from harestart.engine.sequencer.memory import NodeMemory, RunMemory
from harestart.engine.sequencer.waiting import ManualClock, StopWaiting, poll_until
from harestart.engine.state.journal import Journal, journal_path
from harestart.errors import HarestartError
from tests.unit.test_executor import lab_group

# Judged as a whole by preflight/verify (harestart.domain.judge), not one by one.
JUDGED = {plan_gates.AllReachable, plan_gates.TopologyMatches, plan_gates.FailoverQuiet}


def _subclasses(base: type) -> set[type]:
    out: set[type] = set()
    subs: list[type] = base.__subclasses__()
    for sub in subs:
        out |= {sub, *_subclasses(sub)}
    return out


def test_every_gate_type_has_an_evaluator_and_every_action_type_a_performer() -> None:
    assert _subclasses(plan_gates.Gate) - JUDGED == set(EVALUATORS)
    concrete = _subclasses(plan_actions.PlanAction) - {plan_actions.RunCommand}
    assert concrete == set(PERFORMERS)


@pytest.mark.parametrize(
    "options",
    [PlanOptions(), PlanOptions(preflush=True), PlanOptions(detach_replicas=False)],
)
def test_every_gate_and_action_of_a_plan_can_be_carried_out(options: PlanOptions) -> None:
    plan = build_plan(lab_group(2), options)
    for step in plan.steps:
        judged = step.action.value in ("preflight", "verify")
        assert all(judged or type(g) in EVALUATORS for g in step.gates)
        assert all(type(a) in PERFORMERS for a in (*step.actions, *step.cleanup))


def test_stop_waiting_ends_the_wait_at_once_without_retrying() -> None:
    clock = ManualClock()
    calls = []

    def check() -> bool | None:
        calls.append(clock.now())
        if len(calls) == 3:
            raise StopWaiting("replication SQL thread failed: boom")
        return None

    with pytest.raises(StopWaiting, match="boom") as info:
        poll_until(check, what="x", timeout=60, clock=clock)
    assert len(calls) == 3 and clock.now() < 1  # stopped at the third look, not at 60 s
    assert info.value.reason == "replication SQL thread failed: boom"
    assert isinstance(info.value, HarestartError)


def test_run_memory_is_frozen_and_survives_the_journal() -> None:
    memory = (
        RunMemory()
        .with_node("db1", read_only=ReadOnlyState(False, False), dirty_pct="90.000000")
        .with_node("db2", catch_up="0-1-10")
        .with_detached("db2")
        .with_detached("db3")
    )
    assert memory.node("db1") == NodeMemory(ReadOnlyState(False, False), None, "90.000000")
    assert memory.node("db9") == NodeMemory()
    assert RunMemory.from_dict(json.loads(json.dumps(memory.to_dict()))) == memory
    assert memory.without_detached("db2").detached == ("db3",)
    with pytest.raises(AttributeError):
        memory.detached = ()  # type: ignore[misc]


def test_a_version_1_journal_is_read_with_its_notes_as_run_memory(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "1", "lab")
    path.parent.mkdir(parents=True)
    notes = {"read_only:db1": "0-", "catch_up:db2": "0-1-9", "detached": "db2,db3"}
    raw = {"version": 1, "group": "lab", "account": "1", "inventory": "inv.yml"}
    path.write_text(json.dumps({**raw, "notes": notes, "steps": []}))
    journal = Journal.load(path)
    assert journal is not None
    memory = RunMemory.from_dict(journal.memory)
    assert memory.detached == ("db2", "db3")
    assert memory.node("db1").read_only == ReadOnlyState(False, False)
    assert memory.node("db2").catch_up == "0-1-9"
