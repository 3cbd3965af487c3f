"""Restarting mysqld on a node, and the gates that prove it came back as it was:
restarted, replicating, caught up, writable as before."""

from __future__ import annotations

from harestart.domain.actions import (
    READ_ONLY_BEFORE,
    SUPER_READ_ONLY_BEFORE,
    PlanAction,
    RestartIoThread,
    RestartMysqld,
    RestoreReadOnly,
)
from harestart.domain.gates import (
    CaughtUp,
    Gate,
    LagWithin,
    NotPending,
    ReplicasCaughtUp,
    ReplicasReconnected,
    Restarted,
    ThreadsRunning,
    WritableAsBefore,
)
from harestart.domain.plan.only import CLEARED_BY_RESTART
from harestart.engine.ops.base import Evaluator, Looking, Performer, StepRun, on_off, send
from harestart.engine.sequencer.waits import UPTIME_SLACK, Waiter
from harestart.errors import GateFailed, HarestartError


def _restart_mysqld(w: Waiter, act: RestartMysqld, st: StepRun) -> None:
    scope, host = w.scope, act.host
    probe = scope.sql(host)
    earlier = _earlier_restart(w, st)
    if earlier is not None and _restarted_since(w, host, earlier):
        st.restarted_before = True
        return
    _note_before_restart(w, host)
    if scope.journal is not None:  # durable before the command is sent
        scope.journal.step(st.step.key).restart_issued_at = scope.wall()
        scope.persist()
    # harestart's own idle session must not be one more thing the shutdown waits for.
    probe.close()
    st.issued_at = scope.clock.now()
    result = scope.shell(host).run(act.command, timeout=scope.group.health.restart_timeout)
    scope.log.info(
        "restart.command", host=host, exit_status=result.exit_status, duration_s=result.duration_s
    )


def _restart_io_thread(w: Waiter, act: RestartIoThread, st: StepRun) -> None:
    rs = w.replica_status(act.host)
    if not rs.threads_running():
        # Reconnect now instead of after Connect_Retry (60 s by default).
        w.scope.log.info("replica.reconnect", host=act.host, io=rs.io_running)
        send(w, act)


def _restore_read_only(w: Waiter, act: RestoreReadOnly, st: StepRun) -> None:
    wanted = w.scope.memory.node(act.host).read_only
    if wanted is None:
        return  # unknown: WritableAsBefore fails the step
    now = w.scope.sql(act.host).read_only()
    if now != wanted:
        w.scope.log.warning("read_only.restore", host=act.host, was=wanted.token(), now=now.token())
        w.scope.progress(act.host, f"came back {now.describe()}; restoring {wanted.describe()}")
        before = {
            READ_ONLY_BEFORE: on_off(wanted.read_only),
            SUPER_READ_ONLY_BEFORE: on_off(bool(wanted.super_read_only)),
        }
        send(w, act, before)


def _restarted(w: Looking, gate: Restarted, st: StepRun) -> None:
    if st.restarted_before:  # proven when the resumed run looked before restarting
        return
    if st.issued_at is None:
        raise RuntimeError(f"{gate.host}: the Restarted gate comes after the restart command")
    w.restarted(gate.host, st.issued_at, w.scope.group.health.restart_timeout)
    st.back_at = w.scope.clock.now()


def _threads(w: Looking, gate: ThreadsRunning, st: StepRun) -> None:
    w.threads(gate.host, w.scope.group.health.catchup_timeout)


def _caught_up(w: Looking, gate: CaughtUp, st: StepRun) -> None:
    position = w.scope.memory.node(gate.host).catch_up or ""
    w.caught_up(gate.host, position, w.scope.group.health.catchup_timeout)


def _lag(w: Looking, gate: LagWithin, st: StepRun) -> None:
    w.lag(gate.host, gate.max_lag, w.scope.group.health.catchup_timeout)


def _replicas_caught_up(w: Looking, gate: Gate, st: StepRun) -> None:
    """Every replica applied the source's position as read now (before a restart, or once
    the restarted source answers)."""
    timeout = w.scope.group.health.catchup_timeout
    position = w.scope.source_position()
    for r in w.scope.current_group().replicas:
        w.threads(r.name, timeout)
        w.caught_up(r.name, position, timeout)


def _writable(w: Looking, gate: WritableAsBefore, st: StepRun) -> None:
    wanted = w.scope.memory.node(gate.host).read_only
    if wanted is None:
        raise GateFailed("writable", gate.host, "read_only before the restart is unknown")
    now = w.scope.sql(gate.host).read_only()
    if now != wanted:
        raise GateFailed(
            "writable", gate.host, f"{now.describe()}, was {wanted.describe()} before the restart"
        )


def _not_pending(w: Looking, gate: NotPending, st: StepRun) -> None:
    """--only-pending: what the node was restarted for is gone (a value mysqld refused, a
    file replaced again meanwhile: the step fails with the reason)."""
    report = w.scope.pending(gate.host)
    left = [r.describe() for r in report.pending_restart if r.kind in CLEARED_BY_RESTART]
    if left:
        raise GateFailed(
            "not_pending", gate.host, "still pending after its restart: " + "; ".join(left)
        )


def _earlier_restart(w: Waiter, st: StepRun) -> float | None:
    """On resume: when the interrupted attempt sent this step's restart command, if it did."""
    if not w.scope.resume or w.scope.journal is None:
        return None
    return w.scope.journal.step(st.step.key).restart_issued_at


def _restarted_since(w: Waiter, host: str, issued_wall: float) -> bool:
    try:
        uptime = w.scope.sql(host).uptime()
    except HarestartError:
        return False  # down: it has to be (re)started
    return uptime < (w.scope.wall() - issued_wall) + UPTIME_SLACK


def _note_before_restart(w: Waiter, host: str) -> None:
    """What must change (Uptime) and what must be kept (read_only, the catch-up target)."""
    scope = w.scope
    probe = scope.sql(host)
    if host != scope.source_name:  # a replica (the old source too, after a switch)
        position = scope.source_position()
        scope.remember(lambda m: m.with_node(host, catch_up=position))
    if probe.ping():
        w.provable_uptime(host)
        # On resume keep the value noted before the first attempt touched the node.
        if scope.memory.node(host).read_only is None:
            state = probe.read_only()
            scope.remember(lambda m: m.with_node(host, read_only=state))
    noted = scope.memory.node(host)
    scope.log.info(
        "restart.before",
        host=host,
        read_only=noted.read_only.token() if noted.read_only else None,
        source_position=noted.catch_up,
    )


PERFORMERS: dict[type[PlanAction], Performer] = {
    RestartMysqld: _restart_mysqld,
    RestartIoThread: _restart_io_thread,
    RestoreReadOnly: _restore_read_only,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    Restarted: _restarted,
    ThreadsRunning: _threads,
    CaughtUp: _caught_up,
    LagWithin: _lag,
    ReplicasCaughtUp: _replicas_caught_up,
    ReplicasReconnected: _replicas_caught_up,
    WritableAsBefore: _writable,
    NotPending: _not_pending,
}
