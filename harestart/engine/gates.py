"""Gate evaluation: one evaluator per gate type, looked up in a registry.

Evaluators only look (and wait): every change a run makes is an action of the plan
(``harestart.engine.actions``). A gate that does not hold raises ``GateFailed``; a soft gate
(``SOFT_GATES``) that does not hold in time logs a warning and lets the run go on.
Preflight and the final verification judge one observation of the whole group instead
(``harestart.domain.judge``), so their gates have no evaluator here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harestart.adapters.protocols import CommandResult
from harestart.domain.gates import (
    SOFT_GATES,
    CaughtUp,
    DirtyPagesFlushed,
    Gate,
    LagWithin,
    MhaRunning,
    MhaStopped,
    ReplicasCaughtUp,
    ReplicasReconnected,
    Restarted,
    SendersGone,
    ThreadsRunning,
    WritableAsBefore,
)
from harestart.domain.plan import Step
from harestart.engine import switchover
from harestart.engine.waits import Waiter
from harestart.errors import GateFailed


@dataclass
class StepRun:
    """What one step's gates need to know about that step's own actions."""

    step: Step
    issued_at: float | None = None  # clock time the restart command was sent
    back_at: float | None = None  # clock time the restart was proven
    restarted_before: bool = False  # resume: the interrupted attempt already restarted it
    command_result: CommandResult | None = None  # of the step's MHA command, if it sent one


Evaluator = Callable[[Waiter, Any, StepRun], None]


def _mha_stopped(w: Waiter, gate: MhaStopped, st: StepRun) -> None:
    w.mha_stopped(w.scope.group.health.failover_timeout)


def _mha_running(w: Waiter, gate: MhaRunning, st: StepRun) -> None:
    w.mha_running(w.scope.group.health.failover_timeout)


def _restarted(w: Waiter, gate: Restarted, st: StepRun) -> None:
    if st.restarted_before:  # proven when the resumed run looked before restarting
        return
    if st.issued_at is None:
        raise RuntimeError(f"{gate.host}: the Restarted gate comes after the restart command")
    w.restarted(gate.host, st.issued_at, w.scope.group.health.restart_timeout)
    st.back_at = w.scope.clock.now()


def _threads(w: Waiter, gate: ThreadsRunning, st: StepRun) -> None:
    w.threads(gate.host, w.scope.group.health.catchup_timeout)


def _caught_up(w: Waiter, gate: CaughtUp, st: StepRun) -> None:
    position = w.scope.memory.node(gate.host).catch_up or ""
    w.caught_up(gate.host, position, w.scope.group.health.catchup_timeout)


def _lag(w: Waiter, gate: LagWithin, st: StepRun) -> None:
    w.lag(gate.host, gate.max_lag, w.scope.group.health.catchup_timeout)


def _replicas_caught_up(w: Waiter, gate: Gate, st: StepRun) -> None:
    """Every replica applied the source's position as read now (before a restart, or once
    the restarted source answers)."""
    timeout = w.scope.group.health.catchup_timeout
    position = w.scope.source_position()
    for r in w.scope.current_group().replicas:
        w.threads(r.name, timeout)
        w.caught_up(r.name, position, timeout)


def _flushed(w: Waiter, gate: DirtyPagesFlushed, st: StepRun) -> None:
    probe = w.scope.sql(gate.host)

    def dirty() -> tuple[int, int]:
        d = int(probe.global_status("Innodb_buffer_pool_pages_dirty") or 0)
        t = int(probe.global_status("Innodb_buffer_pool_pages_total") or 1)
        return d, t

    def check() -> bool | None:
        d, t = dirty()
        return True if d * 100 <= gate.max_dirty_pct * t else None

    w.wait(
        check,
        what=f"{gate.host}: dirty pages <= {gate.max_dirty_pct:g}%",
        host=gate.host,
        timeout=w.scope.group.health.catchup_timeout,
        describe=lambda: "{} of {} pages dirty".format(*dirty()),
    )


def _senders_gone(w: Waiter, gate: SendersGone, st: StepRun) -> None:
    source = w.scope.sql(gate.source)
    w.wait(
        lambda: True if source.binlog_dump_threads() == 0 else None,
        what=f"{gate.source}: no Binlog Dump thread listed",
        host=gate.source,
        timeout=gate.timeout,
        describe=lambda: f"{source.binlog_dump_threads()} Binlog Dump thread(s)",
    )


def _writable(w: Waiter, gate: WritableAsBefore, st: StepRun) -> None:
    wanted = w.scope.memory.node(gate.host).read_only
    if wanted is None:
        raise GateFailed("writable", gate.host, "read_only before the restart is unknown")
    now = w.scope.sql(gate.host).read_only()
    if now != wanted:
        raise GateFailed(
            "writable", gate.host, f"{now.describe()}, was {wanted.describe()} before the restart"
        )


EVALUATORS: dict[type[Gate], Evaluator] = {
    MhaStopped: _mha_stopped,
    MhaRunning: _mha_running,
    Restarted: _restarted,
    ThreadsRunning: _threads,
    CaughtUp: _caught_up,
    LagWithin: _lag,
    ReplicasCaughtUp: _replicas_caught_up,
    ReplicasReconnected: _replicas_caught_up,
    DirtyPagesFlushed: _flushed,
    SendersGone: _senders_gone,
    WritableAsBefore: _writable,
}
EVALUATORS.update(switchover.EVALUATORS)

# What a soft gate's warning is logged as (tools and tests read these event names).
_SOFT_EVENTS = {DirtyPagesFlushed: "preflush.timeout", SendersGone: "replica.senders_linger"}
_SOFT_TEXT = {
    DirtyPagesFlushed: "pre-flush incomplete, restarting anyway",
    SendersGone: "restarting anyway",
}


def evaluate(w: Waiter, gate: Gate, st: StepRun) -> None:
    """Evaluate one typed gate, waiting up to its deadline. Raises GateFailed."""
    log = w.scope.log
    kind = type(gate).__name__  # stable for tools reading the log (the bench does)
    evaluator = EVALUATORS.get(type(gate))
    if evaluator is None:  # a new gate type without an evaluator is a programming error
        raise TypeError(f"no evaluator for gate {gate!r}")
    log.info("gate.start", step=st.step.key, gate=gate.describe(), kind=kind)
    try:
        evaluator(w, gate, st)
    except GateFailed as exc:
        if not isinstance(gate, SOFT_GATES):
            raise
        host = getattr(gate, "host", None) or getattr(gate, "source", None)
        log.warning(_SOFT_EVENTS[type(gate)], host=host, reason=exc.reason)
        w.scope.progress(host, f"{_SOFT_TEXT[type(gate)]}: {exc.reason}")
        return
    log.info("gate.held", step=st.step.key, gate=gate.describe(), kind=kind)
