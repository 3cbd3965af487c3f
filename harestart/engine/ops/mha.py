"""MHA's manager, stopped and started with exactly the plan's commands, and the gates that
prove it."""

from __future__ import annotations

from harestart.domain.actions import (
    PlanAction,
    StartMha,
    StopMha,
)
from harestart.domain.commands import started_pid
from harestart.domain.gates import (
    Gate,
    MhaRunning,
    MhaStopped,
)
from harestart.engine.ops.base import Evaluator, Looking, Performer, StepRun
from harestart.engine.sequencer.waits import Waiter


def _stop_mha(w: Waiter, act: StopMha, st: StepRun) -> None:
    st.command_result = w.scope.mha.stop(act.command)


def _start_mha(w: Waiter, act: StartMha, st: StepRun) -> None:
    status = w.scope.mha.status()
    if status.running():  # e.g. started by an earlier, interrupted attempt: never twice
        w.scope.log.info("mha.already_running", status=status.describe())
        return
    st.command_result = w.scope.mha.start(act.command)


def _mha_stopped(w: Looking, gate: MhaStopped, st: StepRun) -> None:
    w.mha_stopped(w.scope.group.health.failover_timeout)


def _mha_running(w: Looking, gate: MhaRunning, st: StepRun) -> None:
    # the manager this step started, if it did (its detached command printed the process id)
    started = started_pid(st.command_result.stdout) if st.command_result else None
    w.mha_running(w.scope.group.health.failover_timeout, started)


PERFORMERS: dict[type[PlanAction], Performer] = {
    StopMha: _stop_mha,
    StartMha: _start_mha,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    MhaStopped: _mha_stopped,
    MhaRunning: _mha_running,
}
