"""MHA's manager, stopped and started as the plan says, and the gates that prove it."""

from __future__ import annotations

from harestart.domain.actions import (
    PlanAction,
    StartMha,
    StopMha,
)
from harestart.domain.gates import (
    Gate,
    MhaRunning,
    MhaStopped,
)
from harestart.engine.ops.base import Evaluator, Performer, StepRun
from harestart.engine.sequencer.waits import Waiter


def _stop_mha(w: Waiter, act: StopMha, st: StepRun) -> None:
    st.command_result = w.scope.mha.stop()


def _start_mha(w: Waiter, act: StartMha, st: StepRun) -> None:
    status = w.scope.mha.status()
    if status.running():  # e.g. started by an earlier, interrupted attempt: never twice
        w.scope.log.info("mha.already_running", status=status.describe())
        return
    st.command_result = w.scope.mha.start()


def _mha_stopped(w: Waiter, gate: MhaStopped, st: StepRun) -> None:
    w.mha_stopped(w.scope.group.health.failover_timeout)


def _mha_running(w: Waiter, gate: MhaRunning, st: StepRun) -> None:
    w.mha_running(w.scope.group.health.failover_timeout)


PERFORMERS: dict[type[PlanAction], Performer] = {
    StopMha: _stop_mha,
    StartMha: _start_mha,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    MhaStopped: _mha_stopped,
    MhaRunning: _mha_running,
}
