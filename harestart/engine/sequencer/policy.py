"""Failure policy and what people are told after a failed or interrupted run.

After a failure MHA is started again only when that is safe (and wanted), by the plan's own
start_failover action (its ``when`` says so) performed by the registry; an interrupt leaves it
as it is (``resume`` finishes the run). The hints name what to look at next, and never send
the operator to a node this run did not touch.
"""

from __future__ import annotations

import enum

from harestart.domain.group import Group, HookPoint
from harestart.domain.judge import mha_safe_problems
from harestart.domain.plan.model import Action, Plan, Step
from harestart.domain.result import Failure, Interruption, StepRecord, StepStatus
from harestart.engine.observe import observe_group
from harestart.engine.ops.base import StepRun
from harestart.engine.ops.hooks import HookFailed
from harestart.engine.ops.registry import evaluate, perform
from harestart.engine.sequencer.waits import Waiter
from harestart.errors import HarestartError

# Steps that restart a node (each touches exactly its own host).
RESTARTS = (Action.RESTART_REPLICA, Action.RESTART_SOURCE)
_OFF = "automatic failover is OFF"


class FailurePolicy(enum.StrEnum):
    """What happens to MHA when a run fails after stopping it."""

    # Start MHA again only when every replica replicates from the source (MHA is safe then).
    RESTORE_IF_HEALTHY = "restore-mha-if-healthy"
    # Always leave MHA stopped for a human to decide.
    LEAVE_STOPPED = "leave-mha-stopped"


def apply_failure_policy(w: Waiter, policy: FailurePolicy, failure: Failure, plan: Plan) -> Failure:
    """Start MHA again after a failure only when that is safe (and wanted), with the plan's
    start_failover step's actions (and their gates)."""
    scope = w.scope
    if not scope.facts.mha_was_running:
        return failure.with_note("MHA was not running before the run; it stays stopped")
    if mha_running(w):
        return failure.with_note("MHA is running; automatic failover is ON")
    if failure.step.startswith(Action.START_FAILOVER.value):
        return failure.with_note(f"MHA did not start again: {_OFF}")
    if policy is FailurePolicy.LEAVE_STOPPED:
        return failure.with_note(f"MHA left stopped (--on-failure {policy}): {_OFF}")
    group = scope.current_group()  # after a switch: its new source
    state = observe_group(group, scope.connector, scope.mha, check_ssh=False)
    problems = mha_safe_problems(group, state)
    if problems:
        return failure.with_note(
            "MHA left stopped because the topology is not healthy enough for it to be safe ("
            + "; ".join(problems)
            + f"): {_OFF}"
        )
    try:
        _start_failover(w, plan)
    except HarestartError as exc:
        return failure.with_note(f"starting MHA again failed ({exc}): {_OFF}")
    return failure.with_note(
        f"every replica replicates from {group.source.name}, so MHA was started "
        "again: automatic failover is ON"
    )


def _start_failover(w: Waiter, plan: Plan) -> None:
    """The plan's start_failover step's actions, each followed by its gates (MHA monitoring)."""
    step = next(s for s in plan.steps if s.action is Action.START_FAILOVER)
    st = StepRun(step)
    for act in step.actions:
        perform(w, act, st)
        for gate in act.then:
            evaluate(w, gate, st)


def mha_running(w: Waiter) -> bool | None:
    try:
        return w.scope.mha.status().running()
    except HarestartError:
        return None


def mha_text(w: Waiter) -> str | None:
    try:
        return w.scope.mha.status().describe()
    except HarestartError as exc:
        return f"unknown ({exc})"


def failure_hints(
    group: Group, step: Step, *, mha_was_running: bool, error: HarestartError | None = None
) -> tuple[str, ...]:
    hints: list[str] = []
    if isinstance(error, HookFailed):
        hints.append(_hook_hint(error, step))
    elif step.host and step.action in RESTARTS:
        hints.append(
            f"look at mysqld on {step.host} (its error log, `{step.command}` by hand) "
            "and its replication status"
        )
    if step.action in (*RESTARTS, Action.VERIFY):
        hints.append("nodes after the failed step were not touched")
    if mha_was_running and step.action is not Action.START_FAILOVER:
        hints.append(
            f"MHA was stopped by this run: once the group is healthy, start it on "
            f"{group.mha.manager.name} (`{group.mha.start_command}`) or re-run harestart"
        )
    if step.action is Action.START_FAILOVER:
        hints.append(f"read the MHA log {group.mha.log} on {group.mha.manager.name}")
    hints.append(f"`harestart status` shows the state of every node of group {group.id}")
    return tuple(hints)


def _hook_hint(error: HookFailed, step: Step) -> str:
    old, new = error.old_source, error.new_source
    if error.point is HookPoint.BEFORE_NODE_RESTART:
        done = f"{step.host} was not restarted"
    elif error.point is HookPoint.BEFORE_SWITCH:
        done = f"the switch from {old} to {new} did not begin: {old} is still the writable source"
    elif error.point is HookPoint.AFTER_SWITCH:
        done = f"{new} is the writable source; the other nodes were not re-pointed to it yet"
    else:
        done = f"{step.host} was restarted and passed its checks"
    return (
        f"the {error.point.value} hook failed ({done}): fix what it needs (its output is "
        "above), then `harestart resume` runs that step again, its hooks included (a node "
        "already restarted is not restarted again)"
    )


def interruption(
    group: Group, records: list[StepRecord], step: Step, signal: str, *, before: bool
) -> Interruption:
    """Where a signal stopped the run (``records`` already say so)."""
    done = [r.key for r in records if r.status in (StepStatus.DONE, StepStatus.SKIPPED)]
    untouched = tuple(
        r.host
        for r in records
        if r.host and r.action in RESTARTS and r.status is StepStatus.PENDING
    )
    return Interruption(
        signal=signal,
        step=step.key,
        host=step.host,
        before=before,
        last_done=done[-1] if done else None,
        untouched=untouched,
        next_steps=interrupt_hints(group, step, before=before, untouched=untouched),
    )


def interrupt_hints(
    group: Group, step: Step, *, before: bool, untouched: tuple[str, ...]
) -> tuple[str, ...]:
    where = "from" if before else "with"
    hints = [f"`harestart resume` continues the run {where} {step.key} (the journal says where)"]
    if untouched:
        hints.append(f"not touched by this run: {', '.join(untouched)}")
    if not before and step.host and step.action in RESTARTS:
        hints.append(
            f"{step.host}'s step did not finish: `harestart status` shows whether its mysqld "
            "is up; resume checks whether its restart already happened before sending one"
        )
    hints.append(f"`harestart status` shows the state of every node of group {group.id}")
    return tuple(hints)


def mha_after_interrupt(
    running: bool | None, *, mha_was_running: bool, why: str = "after an interrupt"
) -> str:
    if running:
        return "MHA is running: automatic failover is ON"
    if running is None:
        return "MHA's state is unknown (its status could not be read)"
    if not mha_was_running:
        return "MHA was not running before the run; it stays stopped"
    return (
        f"MHA was stopped by this run and is not started again {why}: "
        "automatic failover is OFF until `harestart resume` completes the run"
    )
