"""Runs a plan through the adapters, proving every gate; stops at the first failed gate.

The executor never decides *what* to do (the plan did) and never imports paramiko or pymysql:
it talks to ``Connector``/``RemoteShell``/``MysqlProbe``/``FailoverManager`` Protocols, so the
unit tests drive it with scripted fakes and the integration tests with real clusters.
"""

from __future__ import annotations

import contextvars
import enum
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, MysqlProbe, RemoteShell
from harestart.domain.commands import surviving_disconnect
from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.group import Group, Node
from harestart.domain.judge import (
    mha_safe_problems,
    preflight_problems,
    resume_problems,
    verify_problems,
)
from harestart.domain.observation import GroupState
from harestart.domain.plan import (
    Action,
    CaughtUp,
    DirtyPagesFlushed,
    Gate,
    LagWithin,
    MhaRunning,
    MhaStopped,
    Plan,
    ReplicasCaughtUp,
    ReplicasDetached,
    ReplicasReconnected,
    Restarted,
    Step,
    ThreadsRunning,
    WritableAsBefore,
)
from harestart.domain.result import (
    Failure,
    GroupStatus,
    Interruption,
    RunResult,
    StepRecord,
    StepStatus,
    utc_now,
)
from harestart.domain.topology import MhaState, MhaStatus, ReadOnlyState, ReplicaStatus
from harestart.engine.interrupts import InterruptFlag
from harestart.engine.journal import Journal
from harestart.engine.observe import observe_group
from harestart.engine.waiting import SYSTEM_CLOCK, Clock, poll_until
from harestart.errors import (
    GateFailed,
    HarestartError,
    Interrupted,
    PreflightRefused,
    WaitTimeout,
)
from harestart.inventory.credentials import mysql_endpoint

T = TypeVar("T")
log = structlog.get_logger("harestart.engine.executor")

# Uptime has one-second resolution; below this many seconds a restart cannot be told apart
# from the old process, so the executor first lets a very fresh mysqld age a little.
MIN_PROVABLE_UPTIME = 3


class FailurePolicy(enum.StrEnum):
    """What happens to MHA when a run fails after stopping it."""

    # Start MHA again only when every replica replicates from the source (MHA is safe then).
    RESTORE_IF_HEALTHY = "restore-mha-if-healthy"
    # Always leave MHA stopped for a human to decide.
    LEAVE_STOPPED = "leave-mha-stopped"


# Steps that restart a node (each touches exactly its own host).
RESTARTS = (Action.RESTART_REPLICA, Action.RESTART_SOURCE)
# Gates checked before a restart command is sent; the others prove what happened after it.
BEFORE_RESTART = (ReplicasCaughtUp, DirtyPagesFlushed, ReplicasDetached)
# ctx.notes key: replicas whose IO threads this run stopped and has not started again yet
# (journalled, so a resume after kill -9 starts them again before judging the topology).
DETACHED = "detached"

# Uptime is whole seconds; this margin covers its rounding when comparing with elapsed time.
UPTIME_SLACK = 1.5


class Reporter(Protocol):
    """Where progress goes (a terminal, stderr, nowhere). Never decides anything."""

    def step_started(self, group: str, step: Step) -> None: ...

    def step_finished(self, group: str, record: StepRecord) -> None: ...

    def progress(self, group: str, host: str | None, text: str) -> None: ...


class SilentReporter:
    def step_started(self, group: str, step: Step) -> None:
        pass

    def step_finished(self, group: str, record: StepRecord) -> None:
        pass

    def progress(self, group: str, host: str | None, text: str) -> None:
        pass


@dataclass
class _RunContext:
    """What a run learned along the way (not part of the plan)."""

    mha_was_running: bool = False
    mha_before: str | None = None
    state: GroupStatus = GroupStatus.ACTIVE
    failover_enabled: bool | None = None
    notes: dict[str, str] = field(default_factory=dict)


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
    ) -> None:
        self.group = group
        self.plan = plan
        self.connector = connector
        self.mha = mha
        self.clock = clock
        self.reporter = reporter or SilentReporter()
        self.ctx = _RunContext()
        self.records: list[StepRecord] = [
            StepRecord(number=s.number, action=s.action, host=s.host) for s in plan.steps
        ]
        self.log = log.bind(group=group.id)
        self.journal = journal
        self.resume = resume
        self.interrupts = interrupts or InterruptFlag()
        self.failure_policy = failure_policy
        self.wall = wall
        self._persist_lock = threading.RLock()
        self._endpoints: dict[str, MysqlEndpoint] = {}
        self._source_lock = threading.Lock()  # the source's probe is shared by parallel steps
        if resume and journal is None:
            raise ValueError("resume needs the journal of the earlier attempt")

    # --- adapters ------------------------------------------------------------------------

    def _node(self, name: str) -> Node:
        return self.group.node(name)

    def _shell(self, name: str) -> RemoteShell:
        node = self._node(name)
        return self.connector.shell(node.name, node.ssh)

    def _sql(self, name: str) -> MysqlProbe:
        endpoint = self._endpoints.get(name)
        if endpoint is None:  # resolve the password once per run, not on every poll
            endpoint = self._endpoints[name] = mysql_endpoint(self._node(name))
        return self.connector.mysql(name, endpoint)

    # --- the run -------------------------------------------------------------------------

    def run(self) -> RunResult:
        started_at, t0 = utc_now(), self.clock.now()
        self._journal_begin(started_at)
        failure, stop = self._run_batches()
        interrupted = stop.signal if stop is not None else None
        mha_running: bool | None = None
        if stop is not None:  # MHA stays as it is: `resume` finishes the run
            mha_running = self._mha_running()
            stop = stop.with_note(self._mha_after_interrupt(mha_running))
            if failure is not None:  # a step of the same batch failed as well
                failure = failure.with_note(stop.failover_note)
        elif failure is not None:
            failure = self._apply_failure_policy(failure)
        else:
            self._set_state(GroupStatus.ACTIVE)
        mha_after = self._mha_text()
        nodes: tuple[dict[str, object], ...] = ()
        if failure is not None or stop is not None:
            nodes = self._node_summaries()
            self.ctx.failover_enabled = self._mha_running() if mha_running is None else mha_running
        elif self.ctx.failover_enabled is None:
            self.ctx.failover_enabled = self._mha_running()
        self._journal_end(
            "done" if failure is None and stop is None else ("interrupted" if stop else "failed")
        )
        return RunResult(
            group=self.group.id,
            account=self.group.account,
            state=self.ctx.state,
            started_at=started_at,
            finished_at=utc_now(),
            duration_s=self.clock.now() - t0,
            steps=tuple(self.records),
            mha_before=self.ctx.mha_before,
            mha_after=mha_after,
            failure=failure,
            nodes=nodes,
            failover_enabled=self.ctx.failover_enabled,
            interrupted=interrupted,
            resumed=self.resume,
            interruption=stop,
        )

    def _run_batches(self) -> tuple[Failure | None, Interruption | None]:
        """Run the plan batch by batch until it ends, a step fails or a signal stops it.

        Between two batches is a safe point: a stop requested there leaves the next step
        pending (it never started); one requested during a step stops that step inside.
        """
        failure: Failure | None = None
        stop: Interruption | None = None
        # Adapters log through their own loggers; contextvars give their events group/step too.
        for batch in self._batches():
            todo = [(i, st) for i, st in batch if not self._done_earlier(i, st)]
            if not todo:
                continue
            try:
                self.interrupts.check()
            except Interrupted as exc:
                return None, self._interrupt(*todo[0], exc.signal_name, before=True)
            for (index, step), error in self._run_batch(todo):
                if isinstance(error, PreflightRefused):
                    if not self.resume and self.journal is not None:
                        self.journal.remove()  # nothing was changed: nothing to resume
                    raise error
                if isinstance(error, (Interrupted, KeyboardInterrupt)):
                    sig = error.signal_name if isinstance(error, Interrupted) else "SIGINT"
                    stop = stop or self._interrupt(index, step, sig, before=False)
                else:
                    assert isinstance(error, HarestartError)
                    f = self._fail(index, step, error, StepStatus.FAILED)
                    failure = failure or f
            if failure is not None or stop is not None:
                break
        return failure, stop

    def _batches(self) -> list[list[tuple[int, Step]]]:
        """Steps in order; consecutive replica restarts of one batch form one group."""
        out: list[list[tuple[int, Step]]] = []
        for index, step in enumerate(self.plan.steps):
            prev = out[-1][-1][1] if out else None
            if step.batch is not None and prev is not None and prev.batch == step.batch:
                out[-1].append((index, step))
            else:
                out.append([(index, step)])
        return out

    def _run_batch(
        self, batch: list[tuple[int, Step]]
    ) -> list[tuple[tuple[int, Step], BaseException]]:
        """Run one step, or a batch of replica restarts in parallel; return what failed.

        A batch always runs to its end: a restart that was sent is never abandoned halfway.
        """

        def one(index: int, step: Step) -> BaseException | None:
            try:
                with structlog.contextvars.bound_contextvars(group=self.group.id, step=step.key):
                    self._run_step(index, step)
            except (HarestartError, KeyboardInterrupt) as exc:
                return exc
            return None

        if len(batch) == 1:
            results = [one(*batch[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, one, i, st) for i, st in batch
                ]
                results = [f.result() for f in futures]
        return [(b, r) for b, r in zip(batch, results, strict=True) if r is not None]

    # --- journal -------------------------------------------------------------------------

    def _journal_begin(self, started_at: str) -> None:
        j = self.journal
        if j is None:
            return
        if self.resume:
            j.attempts += 1
            self.ctx.mha_was_running = bool(j.mha_was_running)
            self.ctx.mha_before = j.mha_before
            self.ctx.notes.update(j.notes)
        else:
            j.started_at = started_at
            for s in self.plan.steps:
                j.step(s.key)
        j.finished = False
        j.outcome = ""
        j.state = GroupStatus.REBOOT.value
        # Not saved yet: a first preflight that refuses leaves no journal behind.
        if self.resume:
            j.save()

    def _persist(self) -> None:
        with self._persist_lock:
            self._persist_locked()

    def _persist_locked(self) -> None:
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
        j.state = self.ctx.state.value
        j.notes = dict(self.ctx.notes)
        j.save()

    def _journal_end(self, outcome: str) -> None:
        j = self.journal
        if j is None:
            return
        j.outcome = outcome
        j.finished = outcome == "done"
        self._persist()

    def _done_earlier(self, index: int, step: Step) -> bool:
        """On resume: a step the earlier attempt finished is not run again (preflight is)."""
        if not self.resume or self.journal is None or step.action is Action.PREFLIGHT:
            return False
        js = self.journal.step(step.key)
        if js.status not in ("done", "skipped"):
            return False
        self.records[index] = self.records[index].evolve(
            status=StepStatus(js.status),
            started_at=js.started_at,
            duration_s=js.duration_s,
            detail=f"(earlier attempt) {js.detail}",
        )
        self.reporter.step_finished(self.group.id, self.records[index])
        return True

    def _set_state(self, state: GroupStatus) -> None:
        if state is not self.ctx.state:
            self.log.info("group.state", state=state.value)
            self.ctx.state = state

    def _run_step(self, index: int, step: Step) -> None:
        self.reporter.step_started(self.group.id, step)
        self.records[index] = self.records[index].evolve(
            status=StepStatus.RUNNING, started_at=utc_now()
        )
        t0 = self.clock.now()
        slog = self.log.bind(step=step.key, host=step.host)
        slog.info("step.started", summary=step.summary)
        if step.action is not Action.PREFLIGHT:
            self._persist()  # durable "running" before the step acts
        handler = {
            Action.PREFLIGHT: self._preflight,
            Action.STOP_FAILOVER: self._stop_failover,
            Action.RESTART_REPLICA: self._restart_node,
            Action.RESTART_SOURCE: self._restart_node,
            Action.START_FAILOVER: self._start_failover,
            Action.VERIFY: self._verify,
        }[step.action]
        status, detail = handler(step)
        record = self.records[index].evolve(
            status=status, duration_s=self.clock.now() - t0, detail=detail
        )
        self.records[index] = record
        if step.action is not Action.PREFLIGHT or self.resume:
            self._persist()  # durable "done" before the next step acts
        slog.info("step.finished", status=status.value, detail=detail, duration_s=record.duration_s)
        self.reporter.step_finished(self.group.id, record)

    def _fail(self, index: int, step: Step, exc: HarestartError, status: StepStatus) -> Failure:
        reason = exc.reason if isinstance(exc, GateFailed) else str(exc)
        self.log.error("step.failed", step=step.key, host=step.host, reason=reason)
        rec = self.records[index]
        self.records[index] = rec.evolve(status=status, detail=reason)
        self.reporter.step_finished(self.group.id, self.records[index])
        self._set_state(GroupStatus.ERROR)
        self._persist()
        return Failure(
            step=step.key,
            host=step.host,
            reason=reason,
            next_steps=self._next_steps(step),
        )

    def _interrupt(self, index: int, step: Step, signal: str, *, before: bool) -> Interruption:
        """Record where a signal stopped the run. Not a failure: a step it stopped before
        stays pending, and no hint sends the operator to a node this run did not touch."""
        self.log.warning("run.interrupted", step=step.key, host=step.host, signal=signal,
                         before_step=before)  # fmt: skip
        if before:
            detail = f"not started: interrupted by {signal} before this step"
            self.records[index] = self.records[index].evolve(detail=detail)
        else:
            detail = f"interrupted by {signal}"
            self.records[index] = self.records[index].evolve(
                status=StepStatus.INTERRUPTED, detail=detail
            )
            self.reporter.step_finished(self.group.id, self.records[index])
        self._set_state(GroupStatus.ERROR)
        self._persist()
        done = [r.key for r in self.records if r.status in (StepStatus.DONE, StepStatus.SKIPPED)]
        untouched = tuple(
            r.host
            for r in self.records
            if r.host and r.action in RESTARTS and r.status is StepStatus.PENDING
        )
        return Interruption(
            signal=signal,
            step=step.key,
            host=step.host,
            before=before,
            last_done=done[-1] if done else None,
            untouched=untouched,
            next_steps=self._interrupt_hints(step, before=before, untouched=untouched),
        )

    def _interrupt_hints(
        self, step: Step, *, before: bool, untouched: tuple[str, ...]
    ) -> tuple[str, ...]:
        where = "from" if before else "with"
        hints = [
            f"`harestart resume` continues the run {where} {step.key} (the journal says where)"
        ]
        if untouched:
            hints.append(f"not touched by this run: {', '.join(untouched)}")
        if not before and step.host and step.action in RESTARTS:
            hints.append(
                f"{step.host}'s step did not finish: `harestart status` shows whether its mysqld "
                "is up; resume checks whether its restart already happened before sending one"
            )
        hints.append(f"`harestart status` shows the state of every node of group {self.group.id}")
        return tuple(hints)

    def _mha_after_interrupt(self, running: bool | None) -> str:
        if running:
            return "MHA is running: automatic failover is ON"
        if running is None:
            return "MHA's state is unknown (its status could not be read)"
        if not self.ctx.mha_was_running:
            return "MHA was not running before the run; it stays stopped"
        return (
            "MHA was stopped by this run and is not started again after an interrupt: "
            "automatic failover is OFF until `harestart resume` completes the run"
        )

    def _apply_failure_policy(self, failure: Failure) -> Failure:
        """Start MHA again after a failure only when that is safe (and wanted)."""
        off = "automatic failover is OFF"
        if not self.ctx.mha_was_running:
            return failure.with_note("MHA was not running before the run; it stays stopped")
        if self._mha_running():
            return failure.with_note("MHA is running; automatic failover is ON")
        if failure.step.startswith(Action.START_FAILOVER.value):
            return failure.with_note(f"MHA did not start again: {off}")
        if self.failure_policy is FailurePolicy.LEAVE_STOPPED:
            return failure.with_note(
                f"MHA left stopped (--on-failure {self.failure_policy}): {off}"
            )
        state = observe_group(self.group, self.connector, self.mha, check_ssh=False)
        problems = mha_safe_problems(self.group, state)
        if problems:
            return failure.with_note(
                "MHA left stopped because the topology is not healthy enough for it to be safe ("
                + "; ".join(problems)
                + f"): {off}"
            )
        try:
            self.mha.start()
            self._wait_mha_running(self.group.health.failover_timeout)
        except HarestartError as exc:
            return failure.with_note(f"starting MHA again failed ({exc}): {off}")
        return failure.with_note(
            f"every replica replicates from {self.group.source.name}, so MHA was started "
            "again: automatic failover is ON"
        )

    def _next_steps(self, step: Step) -> tuple[str, ...]:
        hints: list[str] = []
        if step.host and step.action in (Action.RESTART_REPLICA, Action.RESTART_SOURCE):
            hints.append(
                f"look at mysqld on {step.host} (its error log, `{step.command}` by hand) "
                "and its replication status"
            )
        if step.action in (Action.RESTART_REPLICA, Action.RESTART_SOURCE, Action.VERIFY):
            hints.append("nodes after the failed step were not touched")
        if self.ctx.mha_was_running and step.action is not Action.START_FAILOVER:
            hints.append(
                f"MHA was stopped by this run: once the group is healthy, start it on "
                f"{self.group.mha.manager.name} (`{self.group.mha.start_command}`) or re-run "
                "harestart"
            )
        if step.action is Action.START_FAILOVER:
            hints.append(f"read the MHA log {self.group.mha.log} on {self.group.mha.manager.name}")
        hints.append(f"`harestart status` shows the state of every node of group {self.group.id}")
        return tuple(hints)

    def _progress(self, host: str | None, text: str) -> None:
        self.reporter.progress(self.group.id, host, text)

    def _wait(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        host: str | None,
        timeout: float,
        describe: Callable[[], str] | None = None,
    ) -> T:
        """poll_until with progress reporting; a timeout becomes a failed gate."""
        last_report = [self.clock.now()]

        def on_wait(_pause: float) -> None:
            self.interrupts.check()  # a safe point: between two polls
            now = self.clock.now()
            if describe is not None and now - last_report[0] >= 2.0:
                last_report[0] = now
                self._progress(host, f"waiting: {what}: {describe()}")

        try:
            return poll_until(
                check,
                what=what,
                timeout=timeout,
                clock=self.clock,
                describe=describe,
                on_wait=on_wait,
                interval=0.05,
                max_interval=0.5,
            )
        except WaitTimeout as exc:
            raise GateFailed(
                what, host, f"{what}: not reached within {timeout:g} s (last seen: {exc.last})"
            ) from None

    # --- MHA -----------------------------------------------------------------------------

    def _mha_text(self) -> str | None:
        try:
            return self.mha.status().describe()
        except HarestartError as exc:
            return f"unknown ({exc})"

    def _mha_running(self) -> bool | None:
        try:
            return self.mha.status().running()
        except HarestartError:
            return None

    # --- steps ---------------------------------------------------------------------------

    def _observe(self) -> GroupState:
        return observe_group(self.group, self.connector, self.mha)

    def _preflight(self, step: Step) -> tuple[StepStatus, str]:
        if self.resume and DETACHED in self.ctx.notes:
            # The earlier attempt stopped these IO threads before the source's restart and
            # died before starting them again: undo that before judging the topology.
            self._progress(
                None,
                "starting the IO threads the earlier attempt stopped on: "
                + ", ".join(self._detached()),
            )
            self._reattach_replicas()
        state = self._observe()
        if self.resume:
            assert self.journal is not None
            problems = resume_problems(
                self.group, state, self.journal.topology, self._resumable_host()
            )
        else:
            problems = preflight_problems(self.group, state)
        if problems:
            raise PreflightRefused(self.group.id, problems)
        assert state.mha is not None  # both checks refuse an unknown MHA state
        if not self.resume:
            self.ctx.mha_before = state.mha.describe()
            self.ctx.mha_was_running = state.mha.running()
            if self.journal is not None:
                self.journal.mha_before = self.ctx.mha_before
                self.journal.mha_was_running = self.ctx.mha_was_running
                self.journal.topology = _topology(self.group, state)
        return StepStatus.DONE, "; ".join(state.notes())

    def _resumable_host(self) -> str | None:
        """The node whose restart the earlier attempt left unfinished (it may be down)."""
        assert self.journal is not None
        js = self.journal.first_unfinished()
        if js is None or ":" not in js.key or not js.key.startswith("restart_"):
            return None
        return js.key.split(":", 1)[1]

    def _stop_failover(self, step: Step) -> tuple[StepStatus, str]:
        self._set_state(GroupStatus.REBOOT)
        status = self.mha.status()
        if status.failover_in_progress():
            raise GateFailed(step.key, step.host, f"MHA is failing over: {status.describe()}")
        if status.stopped():
            self.ctx.failover_enabled = False
            return StepStatus.DONE, "MHA was not running; nothing to stop (it stays stopped)"
        t0 = self.clock.now()
        result = self.mha.stop()
        self._gate(step, MhaStopped())
        self.ctx.failover_enabled = False
        return (
            StepStatus.DONE,
            f"MHA stopped in {self.clock.now() - t0:.1f} s (masterha_stop exited "
            f"{result.exit_status}; confirmed by masterha_check_status NOT_RUNNING)",
        )

    def _start_failover(self, step: Step) -> tuple[StepStatus, str]:
        if not self.ctx.mha_was_running:
            return StepStatus.SKIPPED, "MHA was not running before the restart; left stopped"
        t0 = self.clock.now()
        status = self.mha.status()
        if status.running():  # e.g. started by an earlier, interrupted attempt: never twice
            self.log.info("mha.already_running", status=status.describe())
        else:
            self.mha.start()
        self._gate(step, MhaRunning())
        self.ctx.failover_enabled = True
        return (
            StepStatus.DONE,
            f"MHA monitoring again (PING_OK) after {self.clock.now() - t0:.1f} s",
        )

    def _restart_node(self, step: Step) -> tuple[StepStatus, str]:
        assert step.host is not None
        assert step.command is not None
        host = step.host
        node = self._node(host)
        probe = self._sql(host)
        try:
            for gate in step.gates:
                if isinstance(gate, BEFORE_RESTART):
                    self._gate(step, gate)
            return self._restart_and_prove(step, node, probe)
        except BaseException:
            # Never leave replicas detached from a source because its step failed or was
            # interrupted: they reconnect (or retry) as they would have without harestart.
            self._reattach_replicas()
            raise
        finally:
            self._restore_preflush(host)

    def _restart_and_prove(
        self, step: Step, node: Node, probe: MysqlProbe
    ) -> tuple[StepStatus, str]:
        assert step.command is not None
        host = node.name
        issued = self._earlier_restart(step)
        if issued is not None and self._restarted_since(probe, issued):
            how = "already restarted by the earlier attempt; not restarted again"
            down = 0.0
        else:
            self._note_before_restart(node, probe)
            if self.journal is not None:  # durable before the command is sent
                self.journal.step(step.key).restart_issued_at = self.wall()
                self._persist()
            # harestart's own idle session must not be one more thing the shutdown waits for.
            probe.close()
            t_cmd = self.clock.now()
            result = self._shell(host).run(
                surviving_disconnect(step.command), timeout=self.group.health.restart_timeout
            )
            self.log.info(
                "restart.command",
                host=host,
                exit_status=result.exit_status,
                duration_s=result.duration_s,
            )
            self._gate(step, Restarted(host), issued_at=t_cmd)
            down = self.clock.now() - t_cmd
            how = f"mysqld restarted and back in {down:.1f} s"
        for gate in step.gates:
            if not isinstance(gate, (Restarted, *BEFORE_RESTART)):
                self._gate(step, gate)
        return StepStatus.DONE, f"{how}; all gates held"

    def _preflush(self, host: str, max_dirty_pct: float, timeout: float) -> None:
        """Let InnoDB flush dirty pages before the restart, so the shutdown is short."""
        probe = self._sql(host)
        original = probe.global_variable("innodb_max_dirty_pages_pct")
        self.ctx.notes[f"dirty_pct:{host}"] = original
        probe.set_global("innodb_max_dirty_pages_pct", 0)
        self.log.info("preflush.start", host=host, was=original)

        def dirty() -> tuple[int, int]:
            d = int(probe.global_status("Innodb_buffer_pool_pages_dirty") or 0)
            t = int(probe.global_status("Innodb_buffer_pool_pages_total") or 1)
            return d, t

        def check() -> bool | None:
            d, t = dirty()
            return True if d * 100 <= max_dirty_pct * t else None

        try:
            self._wait(
                check,
                what=f"{host}: dirty pages <= {max_dirty_pct:g}%",
                host=host,
                timeout=timeout,
                describe=lambda: "{} of {} pages dirty".format(*dirty()),
            )
        except GateFailed as exc:  # a pre-flush that cannot finish only costs time
            self.log.warning("preflush.timeout", host=host, reason=exc.reason)
            self._progress(host, f"pre-flush incomplete, restarting anyway: {exc.reason}")

    def _restore_preflush(self, host: str) -> None:
        """If mysqld was not restarted after a pre-flush, put its setting back (best effort)."""
        original = self.ctx.notes.pop(f"dirty_pct:{host}", None)
        if original is None:
            return
        try:
            probe = self._sql(host)
            if float(probe.global_variable("innodb_max_dirty_pages_pct")) != float(original):
                probe.set_global("innodb_max_dirty_pages_pct", float(original))
                self.log.info("preflush.restored", host=host, value=original)
        except HarestartError as exc:
            self.log.warning("preflush.restore_failed", host=host, reason=str(exc))

    def _earlier_restart(self, step: Step) -> float | None:
        """On resume: when the interrupted attempt sent this step's restart command, if it did."""
        if not self.resume or self.journal is None:
            return None
        return self.journal.step(step.key).restart_issued_at

    def _restarted_since(self, probe: MysqlProbe, issued_wall: float) -> bool:
        try:
            uptime = probe.uptime()
        except HarestartError:
            return False  # down: it has to be (re)started
        return uptime < (self.wall() - issued_wall) + UPTIME_SLACK

    def _note_before_restart(self, node: Node, probe: MysqlProbe) -> None:
        """What must change (Uptime) and what must be kept (read_only, the catch-up target)."""
        host = node.name
        if node.role == "replica":
            with self._source_lock:
                position = self._sql(self.group.source.name).gtid_position()
            self.ctx.notes[f"catch_up:{host}"] = position
        if probe.ping():
            self._ensure_provable_uptime(host, probe)
            # On resume keep the value noted before the first attempt touched the node.
            self.ctx.notes.setdefault(f"read_only:{host}", probe.read_only().token())
        self.log.info(
            "restart.before",
            host=host,
            read_only=self.ctx.notes.get(f"read_only:{host}"),
            source_position=self.ctx.notes.get(f"catch_up:{host}"),
        )

    def _ensure_provable_uptime(self, host: str, probe: MysqlProbe) -> None:
        if probe.uptime() >= MIN_PROVABLE_UPTIME:
            return
        self._wait(
            lambda: True if probe.uptime() >= MIN_PROVABLE_UPTIME else None,
            what=f"{host}: mysqld up for {MIN_PROVABLE_UPTIME} s (so its restart can be proven)",
            host=host,
            timeout=MIN_PROVABLE_UPTIME + 10,
        )

    def _verify(self, step: Step) -> tuple[StepStatus, str]:
        state = self._observe()
        problems = verify_problems(self.group, state, mha_expected=self.ctx.mha_was_running)
        if problems:
            raise GateFailed(step.key, None, "; ".join(problems))
        return StepStatus.DONE, "; ".join(state.notes())

    # --- gates ---------------------------------------------------------------------------

    def _gate(self, step: Step, gate: Gate, *, issued_at: float | None = None) -> None:
        """Evaluate one typed gate, waiting up to its deadline. Raises GateFailed."""
        h = self.group.health
        kind = type(gate).__name__  # stable for tools reading the log (the bench does)
        self.log.info("gate.start", step=step.key, gate=gate.describe(), kind=kind)
        if isinstance(gate, MhaStopped):
            self._wait_mha_stopped(h.failover_timeout)
        elif isinstance(gate, MhaRunning):
            self._wait_mha_running(h.failover_timeout)
        elif isinstance(gate, Restarted):
            assert issued_at is not None
            self._wait_restarted(gate.host, issued_at, timeout=h.restart_timeout)
        elif isinstance(gate, ThreadsRunning):
            self._wait_threads(gate.host, h.catchup_timeout)
        elif isinstance(gate, CaughtUp):
            self._wait_caught_up(
                gate.host, self.ctx.notes[f"catch_up:{gate.host}"], h.catchup_timeout
            )
        elif isinstance(gate, LagWithin):
            self._wait_lag(gate.host, gate.max_lag, h.catchup_timeout)
        elif isinstance(gate, ReplicasCaughtUp):
            position = self._sql(self.group.source.name).gtid_position()
            for r in self.group.replicas:
                self._wait_threads(r.name, h.catchup_timeout)
                self._wait_caught_up(r.name, position, h.catchup_timeout)
        elif isinstance(gate, DirtyPagesFlushed):
            self._preflush(gate.host, gate.max_dirty_pct, h.catchup_timeout)
        elif isinstance(gate, ReplicasDetached):
            self._detach_replicas(gate.source, gate.timeout)
        elif isinstance(gate, WritableAsBefore):
            self._restore_read_only(gate.host)
        elif isinstance(gate, ReplicasReconnected):
            self._reconnect_replicas(h.catchup_timeout)
        else:  # pragma: no cover - a new gate type without an evaluator is a programming error
            raise TypeError(f"no evaluator for gate {gate!r}")
        self.log.info("gate.held", step=step.key, gate=gate.describe(), kind=kind)

    def _wait_mha_stopped(self, timeout: float) -> None:
        seen: dict[str, MhaStatus] = {}

        def check() -> bool | None:
            st = seen["last"] = self.mha.status()
            if st.failover_in_progress():
                raise _Fatal(f"MHA started a failover while stopping: {st.describe()}")
            return True if st.stopped() else None

        self._wait_fatal(
            check,
            what="MHA stopped (NOT_RUNNING)",
            host=self.group.mha.manager.name,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def _wait_mha_running(self, timeout: float) -> None:
        started = self.clock.now()
        seen_alive = [False]

        seen: dict[str, MhaStatus] = {}

        def check() -> bool | None:
            st = seen["last"] = self.mha.status()
            if st.healthy():
                return True
            if st.running():
                seen_alive[0] = True
            if st.failover_in_progress() or st.state is MhaState.FAILOVER_ERROR:
                raise _Fatal(f"MHA is failing over: {st.describe()}")
            if st.stopped() and (seen_alive[0] or self.clock.now() - started > 10):
                raise _Fatal(
                    f"MHA died after starting ({st.describe()}); log tail:\n"
                    + self.mha.log_tail(20)
                )
            if st.state is MhaState.CONFIG_ERROR:
                raise _Fatal(
                    "MHA reports a configuration error; log tail:\n" + self.mha.log_tail(20)
                )
            return None

        self._wait_fatal(
            check,
            what="MHA monitoring (PING_OK)",
            host=self.group.mha.manager.name,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def _wait_fatal(
        self,
        check: Callable[[], bool | None],
        *,
        what: str,
        host: str | None,
        timeout: float,
        describe: Callable[[], str],
    ) -> None:
        """Like _wait, but a ``_Fatal`` raised by check fails the gate at once."""
        fatal: list[str] = []

        def guarded() -> bool | None:
            try:
                return check()
            except _Fatal as exc:
                fatal.append(str(exc))
                return True

        self._wait(guarded, what=what, host=host, timeout=timeout, describe=describe)
        if fatal:
            raise GateFailed(what, host, fatal[0])

    def _wait_restarted(self, host: str, issued_at: float, timeout: float) -> None:
        """mysqld answers and its Uptime is younger than the restart command.

        The old process is at least MIN_PROVABLE_UPTIME seconds older than the command (see
        _ensure_provable_uptime), so it can never pass this test.
        """
        probe = self._sql(host)

        def check() -> int | None:
            uptime = probe.uptime()
            return uptime if uptime < (self.clock.now() - issued_at) + UPTIME_SLACK else None

        def describe() -> str:
            if not probe.ping():
                return "mysqld not answering yet"
            return f"mysqld answers, uptime {probe.uptime()} s (not restarted yet)"

        self._wait(
            check,
            what=f"{host}: mysqld restarted (Uptime reset)",
            host=host,
            timeout=timeout,
            describe=describe,
        )

    def _replica_status(self, host: str) -> ReplicaStatus:
        rs = self._sql(host).replica_status()
        if rs is None:
            raise _Fatal(f"{host} is no longer a replica (no replica status)")
        return rs

    def _unbroken_replica_status(self, host: str, seen: dict[str, ReplicaStatus]) -> ReplicaStatus:
        """The replica's status, remembered in ``seen`` for the wait's progress text; a failed
        SQL thread ends the wait at once with the server's error."""
        rs = seen["last"] = self._replica_status(host)
        if rs.sql_broken():
            raise _Fatal(f"replication SQL thread failed: {rs.error_text()}")
        return rs

    def _wait_threads(self, host: str, timeout: float) -> None:
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            return True if self._unbroken_replica_status(host, seen).threads_running() else None

        self._wait_fatal(
            check,
            what=f"{host}: replication IO and SQL threads running",
            host=host,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def _wait_caught_up(self, host: str, position: str, timeout: float) -> None:
        if not position:
            return
        probe = self._sql(host)
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            self._unbroken_replica_status(host, seen)
            return True if probe.wait_for_gtid(position, 1.0) else None

        self._wait_fatal(
            check,
            what=f"{host}: applied GTID {position}",
            host=host,
            timeout=timeout,
            describe=lambda: "applying, " + _last(seen),
        )

    def _wait_lag(self, host: str, max_lag: float, timeout: float) -> None:
        seen: dict[str, ReplicaStatus] = {}

        def check() -> bool | None:
            rs = self._unbroken_replica_status(host, seen)
            return True if rs.threads_running() and rs.lag_within(max_lag) else None

        self._wait_fatal(
            check,
            what=f"{host}: lag <= {max_lag:g} s",
            host=host,
            timeout=timeout,
            describe=lambda: _last(seen),
        )

    def _restore_read_only(self, host: str) -> None:
        probe = self._sql(host)
        noted = self.ctx.notes.get(f"read_only:{host}")
        if noted is None:
            raise GateFailed("writable", host, "read_only before the restart is unknown")
        wanted = ReadOnlyState.from_token(noted)
        now = probe.read_only()
        if now != wanted:
            self.log.warning("read_only.restore", host=host, was=wanted.token(), now=now.token())
            self._progress(host, f"came back {now.describe()}; restoring {wanted.describe()}")
            probe.set_read_only(wanted)
            now = probe.read_only()
        if now != wanted:
            raise GateFailed(
                "writable", host, f"{now.describe()}, was {wanted.describe()} before the restart"
            )

    def _detach_replicas(self, source_name: str, timeout: float) -> None:
        """Stop every replica's IO thread, then let the source's replication senders go, so
        its shutdown does not wait for them. Journalled first: a resume starts them again."""
        names = [r.name for r in self.group.replicas]
        self.ctx.notes[DETACHED] = ",".join(names)
        self._persist()
        for name in names:
            self._sql(name).stop_io_thread()
            self.log.info("replica.detached", host=name)
        source = self._sql(source_name)
        killed = source.kill_binlog_dump_threads()
        self.log.info("replica.senders_killed", host=source_name, count=killed)
        try:
            self._wait(
                lambda: True if source.binlog_dump_threads() == 0 else None,
                what=f"{source_name}: no Binlog Dump thread listed",
                host=source_name,
                timeout=timeout,
                describe=lambda: f"{source.binlog_dump_threads()} Binlog Dump thread(s)",
            )
        except GateFailed as exc:  # a sender that lingers only makes the shutdown slower
            self.log.warning("replica.senders_linger", host=source_name, reason=exc.reason)
            self._progress(source_name, f"restarting anyway: {exc.reason}")

    def _detached(self) -> list[str]:
        """The replicas whose IO threads this run stopped and has not started again."""
        return [name for name in self.ctx.notes.get(DETACHED, "").split(",") if name]

    def _reattach_replicas(self) -> None:
        """Best effort: start the IO threads this run stopped (after a failure or on resume)."""
        detached = self._detached()
        self.ctx.notes.pop(DETACHED, None)
        for name in detached:
            try:
                self._sql(name).start_io_thread()
                self.log.info("replica.reattached", host=name)
            except HarestartError as exc:
                self.log.warning("replica.reattach_failed", host=name, reason=str(exc))
                self._progress(name, f"could not start its IO thread again: {exc}")
        if detached:
            self._persist()

    def _reconnect_replicas(self, timeout: float) -> None:
        source = self._sql(self.group.source.name)
        position = source.gtid_position()
        detached = set(self._detached())
        for r in self.group.replicas:
            if r.name in detached:  # the source answers: receive again at once
                self._sql(r.name).start_io_thread()
                self.log.info("replica.reattached", host=r.name)
                continue
            rs = self._replica_status(r.name)
            if not rs.threads_running():
                # Reconnect now instead of after Connect_Retry (60 s by default).
                self.log.info("replica.reconnect", host=r.name, io=rs.io_running)
                self._sql(r.name).restart_io_thread()
        if self.ctx.notes.pop(DETACHED, None) is not None:
            self._persist()
        for r in self.group.replicas:
            self._wait_threads(r.name, timeout)
            self._wait_caught_up(r.name, position, timeout)

    # --- reporting -----------------------------------------------------------------------

    def _node_summaries(self) -> tuple[dict[str, object], ...]:
        try:
            state = observe_group(self.group, self.connector, self.mha, check_ssh=False)
        except HarestartError as exc:  # pragma: no cover - observe_group records errors itself
            return ({"name": "?", "summary": f"could not observe the group: {exc}"},)
        out = []
        for n in state.nodes:
            d = n.to_dict()
            d["summary"] = n.describe()
            out.append(d)
        return tuple(out)


def _last(seen: dict[str, ReplicaStatus] | dict[str, MhaStatus]) -> str:
    """What a wait's check saw last, without asking the host again just to describe it."""
    last = seen.get("last")
    return last.describe() if last is not None else "no answer yet"


def _topology(group: Group, state: GroupState) -> dict[str, object]:
    """What resume must find again: the source, its server_id, the replicas' server_ids."""
    ids = {n.name: (n.info.server_id if n.info else None) for n in state.nodes}
    return {
        "source": group.source.name,
        "source_server_id": ids.get(group.source.name),
        "replicas": {r.name: ids.get(r.name) for r in group.replicas},
    }


class _Fatal(HarestartError):
    """Raised inside a wait's check: the gate can no longer hold, stop waiting."""
