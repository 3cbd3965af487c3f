"""Step execution: one step's checks before, actions, checks after and cleanup, as planned.

A handler per step kind adds only what the plan cannot know in advance: preflight and the final
verification judge one observation of the whole group (``harestart.domain.judge``); the MHA
steps look at MHA's state first (a failover in progress fails, a stopped MHA stays stopped);
a restart step reports how long its node was down.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from harestart.domain.actions import PlanAction
from harestart.domain.judge import preflight_problems, resume_problems, verify_problems
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Action, Step
from harestart.domain.result import GroupStatus, StepStatus
from harestart.engine.observe import observe_group
from harestart.engine.ops import switchover
from harestart.engine.ops.base import StepRun
from harestart.engine.ops.registry import evaluate, perform, perform_best_effort
from harestart.engine.ops.switchover import ResumePoint
from harestart.engine.sequencer.waits import Waiter
from harestart.engine.state.record import Recorder
from harestart.errors import GateFailed, HarestartError, PreflightRefused

StepHandler = Callable[[Step, StepRun], tuple[StepStatus, str]]


# How long a resume waits for the IO threads it started again to run before judging them.
IO_SETTLE_S = 10.0


class StepRunner:
    def __init__(
        self, waits: Waiter, recorder: Recorder, *, observed: GroupState | None = None
    ) -> None:
        self.waits = waits
        self._observed = observed  # prepare's look, judged once by a new run's preflight
        self.scope = waits.scope
        self.group = waits.scope.group
        self.recorder = recorder
        self._handlers: dict[Action, StepHandler] = {
            Action.PREFLIGHT: self._preflight,
            Action.STOP_FAILOVER: self._stop_failover,
            Action.RESTART_REPLICA: self._restart_node,
            Action.RESTART_SOURCE: self._restart_node,
            Action.SWITCHOVER: self._switchover,
            Action.START_FAILOVER: self._start_failover,
            Action.VERIFY: self._verify,
        }

    def run(self, step: Step) -> tuple[StepStatus, str]:
        """Carry the step out; its status and a one-sentence detail. Raises on failure."""
        return self._handlers[step.action](step, StepRun(step))

    def _carry_out(self, st: StepRun) -> None:
        """The step's checks before, its actions (each followed by its gates), its checks
        after, its closing actions (a hook once the node proved healthy); its cleanup at the
        end whatever happened."""
        step = st.step
        try:
            for gate in step.before:
                evaluate(self.waits, gate, st)
            self._perform(step.actions, st)
            for gate in step.after:
                evaluate(self.waits, gate, st)
            self._perform(step.closing, st)  # only once the checks after held
        finally:
            # Never leave replicas detached from a source because its step failed or was
            # interrupted: they reconnect (or retry) as they would have without harestart.
            for act in step.cleanup:
                perform_best_effort(self.waits, act, st)

    def _perform(self, actions: tuple[PlanAction, ...], st: StepRun) -> None:
        """Each action by the registry, each followed by its own gates."""
        for act in actions:
            perform(self.waits, act, st)
            for gate in act.then:
                evaluate(self.waits, gate, st)

    def _preflight(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        scope = self.scope
        if scope.resume and scope.memory.detached:
            # The earlier attempt stopped these IO threads before the source's restart and
            # died before starting them again: undo that before judging the topology.
            scope.progress(
                None,
                "starting the IO threads the earlier attempt stopped on: "
                + ", ".join(scope.memory.detached),
            )
            started = scope.memory.detached
            for act in step.actions:
                perform_best_effort(self.waits, act, st)
            self._io_threads_settled(started)
        switched = scope.resume and scope.memory.switch is not None
        group = scope.current_group() if switched else self.group
        state, self._observed = self._observed, None
        if state is None or scope.resume:
            state = observe_group(group, scope.connector, scope.mha)
        if switched and scope.memory.switch is not None:
            # The run moved (or was moving) the source role: judge the group as it is now.
            problems = switchover.switch_resume_problems(group, state, scope.memory.switch.phase)
        elif scope.resume:
            host = self.recorder.resumable_host()
            topology = scope.journal.topology if scope.journal is not None else {}
            problems = resume_problems(self.group, state, topology, host)
        else:
            problems = preflight_problems(self.group, state)
        if problems:
            raise PreflightRefused(self.group.id, problems)
        if not scope.resume:
            self.recorder.note_preflight(state)
        return StepStatus.DONE, "; ".join(state.notes())

    def _io_threads_settled(self, replicas: tuple[str, ...]) -> None:
        """IO threads just started are "Preparing" or "Connecting" for a moment: wait (up to
        IO_SETTLE_S) until each runs or has stopped, so the judge sees the topology, not the
        start. A source that is down keeps them connecting: the judge then says so."""

        def settled() -> bool | None:
            for name in replicas:
                try:
                    rs = self.scope.sql(name).replica_status()
                except HarestartError:
                    continue  # unreachable: the observation reports it
                if rs is not None and rs.io_running not in ("Yes", "No"):
                    return None
            return True

        with contextlib.suppress(GateFailed):  # still starting: judged as they are
            self.waits.wait(settled, what="IO threads started", host=None, timeout=IO_SETTLE_S)

    def _stop_failover(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        scope = self.scope
        scope.set_state(GroupStatus.REBOOT)
        status = scope.mha.status()
        if status.failover_in_progress():
            raise GateFailed(step.key, step.host, f"MHA is failing over: {status.describe()}")
        if status.stopped():
            scope.facts.failover_enabled = False
            return StepStatus.DONE, "MHA was not running; nothing to stop (it stays stopped)"
        t0 = scope.clock.now()
        self._carry_out(st)
        scope.facts.failover_enabled = False
        exit_status = st.command_result.exit_status if st.command_result else None
        return (
            StepStatus.DONE,
            f"MHA stopped in {scope.clock.now() - t0:.1f} s (masterha_stop exited "
            f"{exit_status}; confirmed by masterha_check_status NOT_RUNNING)",
        )

    def _start_failover(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        scope = self.scope
        if not scope.facts.mha_was_running:
            return StepStatus.SKIPPED, "MHA was not running before the restart; left stopped"
        t0 = scope.clock.now()
        self._carry_out(st)
        scope.facts.failover_enabled = True
        return (
            StepStatus.DONE,
            f"MHA monitoring again (PING_OK) after {scope.clock.now() - t0:.1f} s",
        )

    def _restart_node(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        self._carry_out(st)
        if st.restarted_before:
            how = "already restarted by the earlier attempt; not restarted again"
        elif st.issued_at is not None and st.back_at is not None:
            how = f"mysqld restarted and back in {st.back_at - st.issued_at:.1f} s"
        else:  # pragma: no cover - the Restarted gate sets both
            how = "mysqld restarted"
        return StepStatus.DONE, f"{how}; all gates held"

    def _switchover(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        t0 = self.scope.clock.now()
        point = switchover.where_to_resume(self.waits, step) if self.scope.resume else None
        if point is not None and point is not ResumePoint.REDO:
            # The interrupted attempt was promoting the candidate or made it the writable
            # source: finish the switch with the step's own actions from there.
            proof, actions = switchover.resumed_part(step, point)
            try:
                for gate in proof:
                    evaluate(self.waits, gate, st)
                self._perform(actions, st)
                for gate in step.after:
                    evaluate(self.waits, gate, st)
            finally:
                for act in step.cleanup:
                    perform_best_effort(self.waits, act, st)
            return StepStatus.DONE, f"{step.host} is the source (the resumed switch finished)"
        self._carry_out(st)
        return (
            StepStatus.DONE,
            f"{step.host} is the source (switch took {self.scope.clock.now() - t0:.1f} s); "
            "exactly one writable node; every replica replicates from it",
        )

    def _verify(self, step: Step, st: StepRun) -> tuple[StepStatus, str]:
        scope = self.scope
        group = scope.current_group()  # the final topology (a switch may have moved the source)
        state = observe_group(group, scope.connector, scope.mha)
        problems = verify_problems(group, state, mha_expected=scope.facts.mha_was_running)
        if problems:
            raise GateFailed(step.key, None, "; ".join(problems))
        return StepStatus.DONE, "; ".join(state.notes())
