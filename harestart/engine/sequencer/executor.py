"""Runs a plan: step after step (a batch of replicas at once), until it ends, a step fails or
a signal stops it; then the failure policy, and the result.

The executor never decides *what* to do (the plan did; ``harestart plan`` prints it) and
never imports paramiko or pymysql: steps.py carries out each step's gates, actions and cleanup,
the operations' performers and evaluators (``engine.ops``, looked up by type in its registry)
reach the adapter Protocols, so the unit tests drive it with scripted fakes and the
integration tests with real clusters. The other
units: batches.py (parallel replica batches), record.py (journal), policy.py (failure policy
and hints), memory.py (what the run learned), waits.py (polling), scope.py (what they share).
Every change a run makes is an action of the plan performed by the registry
(``engine.ops.registry``), the failure policy's MHA start included.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from functools import partial

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, HookRunner
from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Action, Plan, Step
from harestart.domain.result import (
    Failure,
    GroupStatus,
    Interruption,
    RunResult,
    StepStatus,
    utc_now,
)
from harestart.domain.secret import scrub
from harestart.engine.observe import observe_group
from harestart.engine.sequencer import policy
from harestart.engine.sequencer.batches import batches, run_batch
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.policy import FailurePolicy
from harestart.engine.sequencer.scope import Reporter, RunScope, SilentReporter
from harestart.engine.sequencer.steps import StepRunner
from harestart.engine.sequencer.waiting import SYSTEM_CLOCK, Clock
from harestart.engine.sequencer.waits import Waiter
from harestart.engine.state.journal import Journal
from harestart.engine.state.record import Recorder
from harestart.errors import (
    GateFailed,
    HarestartError,
    Interrupted,
    LeaseLost,
    PreflightRefused,
    StepCrashed,
)

__all__ = ["Executor", "FailurePolicy", "Reporter", "SilentReporter"]


class Executor:
    def __init__(
        self,
        group: Group,
        plan: Plan,
        connector: Connector,
        mha: FailoverManager,
        *,
        clock: Clock = SYSTEM_CLOCK,
        reporter: Reporter | None = None,
        journal: Journal | None = None,
        resume: bool = False,
        interrupts: InterruptFlag | None = None,
        failure_policy: FailurePolicy = FailurePolicy.RESTORE_IF_HEALTHY,
        wall: Callable[[], float] = time.time,
        hooks: HookRunner | None = None,
        observed: GroupState | None = None,
    ) -> None:
        """``observed``: the group as ``engine.prepare`` just observed it, judged by the
        preflight step instead of observing again (a new run only)."""
        if resume and journal is None:
            raise ValueError("resume needs the journal of the earlier attempt")
        self.group = group
        self.plan = plan
        self.scope = RunScope(
            group,
            connector,
            mha,
            clock,
            reporter or SilentReporter(),
            interrupts or InterruptFlag(),
            wall=wall,
            resume=resume,
            journal=journal,
            hooks=hooks,
        )
        self.waits = Waiter(self.scope)
        self.recorder = Recorder(self.scope, plan)
        self.failure_policy = failure_policy
        self.log = self.scope.log
        self.steps = StepRunner(self.waits, self.recorder, observed=observed)
        self.lease_lost = False  # the run stopped because its lock's lease was lost

    # --- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            return self._run()
        finally:  # the end of the run, however it ends: its persistent hook programs too
            self.recorder.close()
            self.scope.programs.stop_all()

    def _run(self) -> RunResult:
        scope, facts = self.scope, self.scope.facts
        started_at, t0 = utc_now(), scope.clock.now()
        self.recorder.begin(started_at)
        failure, stop = self._run_batches()
        mha_running: bool | None = None
        if stop is not None:  # MHA stays as it is: `resume` finishes the run
            mha_running = policy.mha_running(self.waits)
            note = policy.mha_after_interrupt(mha_running, mha_was_running=facts.mha_was_running)
            stop = stop.with_note(note)
            if failure is not None:  # a step of the same batch failed as well
                failure = failure.with_note(stop.failover_note)
        elif failure is not None and self.lease_lost:
            # Without the lock nothing more is changed, MHA included: it stays as it is.
            mha_running = policy.mha_running(self.waits)
            note = policy.mha_after_interrupt(
                mha_running,
                mha_was_running=facts.mha_was_running,
                why="without the group's lock",
            )
            failure = failure.with_note(note)
        elif failure is not None:
            failure = policy.apply_failure_policy(
                self.waits, self.failure_policy, failure, self.plan
            )
        else:
            scope.set_state(GroupStatus.ACTIVE)
        mha_after = policy.mha_text(self.waits)
        nodes: tuple[dict[str, object], ...] = ()
        if failure is not None or stop is not None:
            nodes = self._node_summaries()
            facts.failover_enabled = (
                policy.mha_running(self.waits) if mha_running is None else mha_running
            )
        elif facts.failover_enabled is None:
            facts.failover_enabled = policy.mha_running(self.waits)
        outcome = "done" if failure is None and stop is None else "failed"
        if self.lease_lost:
            outcome = "lease-lost"
        self.recorder.end("interrupted" if stop else outcome)
        return RunResult(
            group=self.group.id,
            account=self.group.account,
            state=facts.state,
            started_at=started_at,
            finished_at=utc_now(),
            duration_s=scope.clock.now() - t0,
            steps=tuple(self.recorder.records),
            mha_before=facts.mha_before,
            mha_after=mha_after,
            failure=failure,
            nodes=nodes,
            failover_enabled=facts.failover_enabled,
            interrupted=stop.signal if stop is not None else None,
            resumed=scope.resume,
            interruption=stop,
        )

    def _run_batches(self) -> tuple[Failure | None, Interruption | None]:
        """Run the plan batch by batch until it ends, a step fails or a signal stops it.

        Between two batches is a safe point: a stop requested there leaves the next step
        pending (it never started); one requested during a step stops that step inside.
        A lost lease is only honoured here, between batches: the steps in flight finish.
        """
        failure: Failure | None = None
        stop: Interruption | None = None
        for batch in batches(self.plan):
            todo = [(i, st) for i, st in batch if not self.recorder.done_earlier(i, st)]
            if not todo:
                continue
            try:
                self.scope.interrupts.check_between_steps()
            except LeaseLost as exc:
                return self._lose_lease(*todo[0], exc.reason), None
            except Interrupted as exc:
                return None, self._interrupt(*todo[0], exc.signal_name, before=True)
            one = partial(self._guarded_step, alone=len(todo) == 1)
            for (index, step), error in run_batch(todo, one):
                if isinstance(error, PreflightRefused):
                    self.recorder.remove()
                    raise error
                if isinstance(error, (Interrupted, KeyboardInterrupt)):
                    sig = error.signal_name if isinstance(error, Interrupted) else "SIGINT"
                    stop = stop or self._interrupt(index, step, sig, before=False)
                elif isinstance(error, HarestartError):
                    failure = failure or self._fail(index, step, error)
                else:  # _guarded_step returns nothing else
                    raise error
            if failure is not None or stop is not None:
                break
        return failure, stop

    def _guarded_step(self, index: int, step: Step, *, alone: bool) -> BaseException | None:
        try:
            with structlog.contextvars.bound_contextvars(group=self.group.id, step=step.key):
                self._run_step(index, step, alone=alone)
        except (HarestartError, KeyboardInterrupt) as exc:
            return exc
        except Exception as exc:  # a bug: fail the step (the policy runs), never a traceback
            error = scrub(f"{type(exc).__name__}: {exc}")
            self.log.error("step.crashed", step=step.key, host=step.host, error=error)
            self.log.debug("step.crashed.traceback", traceback=traceback.format_exc())
            return StepCrashed(step.key, step.host, error)
        return None

    def _run_step(self, index: int, step: Step, *, alone: bool) -> None:
        """``alone``: no other step of its batch runs meanwhile. Its "done" is then journalled
        by the next save, which comes before anything else acts (the next step's "running",
        a failure, an interruption, the end): a crash in between leaves it "running", as a
        crash just before its own save would, and resume runs it again (every step finds
        what it already did)."""
        scope = self.scope
        scope.reporter.step_started(self.group.id, step)
        self.recorder.update(index, status=StepStatus.RUNNING, started_at=utc_now())
        t0 = scope.clock.now()
        slog = self.log.bind(step=step.key, host=step.host)
        slog.info("step.started", summary=step.summary)
        if step.action is not Action.PREFLIGHT:
            self.recorder.persist()  # durable "running" before the step acts
        status, detail = self.steps.run(step)
        record = self.recorder.update(
            index, status=status, duration_s=scope.clock.now() - t0, detail=detail
        )
        if not alone and (step.action is not Action.PREFLIGHT or scope.resume):
            self.recorder.persist()  # durable "done" while the others of its batch still act
        slog.info("step.finished", status=status.value, detail=detail, duration_s=record.duration_s)
        scope.reporter.step_finished(self.group.id, record)

    def _fail(self, index: int, step: Step, exc: HarestartError) -> Failure:
        reason = exc.reason if isinstance(exc, (GateFailed, StepCrashed)) else str(exc)
        self.log.error("step.failed", step=step.key, host=step.host, reason=reason)
        record = self.recorder.update(index, status=StepStatus.FAILED, detail=reason)
        self.scope.reporter.step_finished(self.group.id, record)
        self.scope.set_state(GroupStatus.ERROR)
        self.recorder.persist()
        hints = policy.failure_hints(
            self.group, step, mha_was_running=self.scope.facts.mha_was_running, error=exc
        )
        return Failure(step=step.key, host=step.host, reason=reason, next_steps=hints)

    def _interrupt(self, index: int, step: Step, signal: str, *, before: bool) -> Interruption:
        """Record where a signal stopped the run. Not a failure: a step it stopped before
        stays pending, and no hint sends the operator to a node this run did not touch."""
        self.log.warning("run.interrupted", step=step.key, host=step.host, signal=signal,
                         before_step=before)  # fmt: skip
        if before:
            self.recorder.update(
                index, detail=f"not started: interrupted by {signal} before this step"
            )
        else:
            record = self.recorder.update(
                index, status=StepStatus.INTERRUPTED, detail=f"interrupted by {signal}"
            )
            self.scope.reporter.step_finished(self.group.id, record)
        self.scope.set_state(GroupStatus.ERROR)
        self.recorder.persist()
        return policy.interruption(self.group, self.recorder.records, step, signal, before=before)

    def _lose_lease(self, index: int, step: Step, reason: str) -> Failure:
        """Record that the lock's lease was lost before ``step``: a failure (exit 1) at a safe
        point; ``step`` never started and stays pending, ``resume`` continues from it."""
        self.lease_lost = True
        self.log.error("run.lease_lost", step=step.key, host=step.host, reason=reason)
        self.recorder.update(
            index, detail=f"not started: coordination lease lost before this step ({reason})"
        )
        self.scope.set_state(GroupStatus.ERROR)
        self.recorder.persist()
        where = policy.interruption(
            self.group, self.recorder.records, step, "lease loss", before=True
        )
        after = f", after {where.last_done} finished" if where.last_done else ""
        return Failure(
            step=step.key,
            host=step.host,
            reason=f"coordination lease lost: {reason}; the run stopped at a safe point before "
            f"{step.key}{after} (nothing from there on was started)",
            next_steps=(
                "the group's lock is no longer held: check the coordination service "
                "(`harestart status` names the lock's holder)",
                *where.next_steps,
            ),
        )

    # --- reporting -----------------------------------------------------------------------

    def _node_summaries(self) -> tuple[dict[str, object], ...]:
        scope = self.scope
        try:
            state = observe_group(self.group, scope.connector, scope.mha, check_ssh=False)
        except HarestartError as exc:  # pragma: no cover - observe_group records errors itself
            return ({"name": "?", "summary": f"could not observe the group: {exc}"},)
        out = []
        for n in state.nodes:
            d = n.to_dict()
            d["summary"] = n.describe()
            out.append(d)
        return tuple(out)
