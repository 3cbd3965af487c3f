"""Carrying out the plan's actions through the adapters: one performer per action type.

A performer sends exactly what its action shows in the plan, and decides the action's
condition (``when``) from what the run sees and remembers; it never sends anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harestart.domain.actions import (
    KillBinlogDumps,
    PlanAction,
    RestartIoThread,
    RestartMysqld,
    RestoreGlobal,
    RestoreReadOnly,
    SetGlobal,
    StartIoThread,
    StartMha,
    StopIoThread,
    StopMha,
)
from harestart.domain.hooks import RunHook
from harestart.engine import switchover
from harestart.engine.gates import StepRun
from harestart.engine.hooks import run_hook
from harestart.engine.waits import UPTIME_SLACK, Waiter
from harestart.errors import HarestartError

Performer = Callable[[Waiter, Any, StepRun], None]


def _stop_mha(w: Waiter, act: StopMha, st: StepRun) -> None:
    st.command_result = w.scope.mha.stop()


def _start_mha(w: Waiter, act: StartMha, st: StepRun) -> None:
    status = w.scope.mha.status()
    if status.running():  # e.g. started by an earlier, interrupted attempt: never twice
        w.scope.log.info("mha.already_running", status=status.describe())
        return
    st.command_result = w.scope.mha.start()


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


def _set_global(w: Waiter, act: SetGlobal, st: StepRun) -> None:
    probe = w.scope.sql(act.host)
    original = probe.global_variable(act.name)
    w.scope.remember(lambda m: m.with_node(act.host, dirty_pct=original))
    probe.set_global(act.name, act.value)
    w.scope.log.info("preflush.start", host=act.host, was=original)


def _restore_global(w: Waiter, act: RestoreGlobal, st: StepRun) -> None:
    """Best effort: put the pre-flush setting back if mysqld was not restarted after it."""
    scope, host = w.scope, act.host
    original = scope.memory.node(host).dirty_pct
    if original is None:
        return
    scope.remember(lambda m: m.with_node(host, dirty_pct=None))
    try:
        probe = scope.sql(host)
        if float(probe.global_variable(act.name)) != float(original):
            probe.set_global(act.name, float(original))
            scope.log.info("preflush.restored", host=host, value=original)
    except HarestartError as exc:
        scope.log.warning("preflush.restore_failed", host=host, reason=str(exc))
    except ValueError:  # a value read from the server (or the journal) that is not a number
        scope.log.warning("preflush.restore_failed", host=host, reason="not a number")


def _stop_io_thread(w: Waiter, act: StopIoThread, st: StepRun) -> None:
    # Journalled first: a resume after a kill starts it again.
    w.scope.remember(lambda m: m.with_detached(act.host), durable=True)
    w.scope.sql(act.host).stop_io_thread()
    w.scope.log.info("replica.detached", host=act.host)


def _kill_binlog_dumps(w: Waiter, act: KillBinlogDumps, st: StepRun) -> None:
    killed = w.scope.sql(act.host).kill_binlog_dump_threads()
    w.scope.log.info("replica.senders_killed", host=act.host, count=killed)


def _start_io_thread(w: Waiter, act: StartIoThread, st: StepRun) -> None:
    """Only for an IO thread this run (or the interrupted attempt) stopped."""
    if act.host not in w.scope.memory.detached:
        return
    w.scope.sql(act.host).start_io_thread()
    w.scope.log.info("replica.reattached", host=act.host)
    w.scope.remember(lambda m: m.without_detached(act.host), durable=True)


def _restart_io_thread(w: Waiter, act: RestartIoThread, st: StepRun) -> None:
    rs = w.replica_status(act.host)
    if not rs.threads_running():
        # Reconnect now instead of after Connect_Retry (60 s by default).
        w.scope.log.info("replica.reconnect", host=act.host, io=rs.io_running)
        w.scope.sql(act.host).restart_io_thread()


def _restore_read_only(w: Waiter, act: RestoreReadOnly, st: StepRun) -> None:
    wanted = w.scope.memory.node(act.host).read_only
    if wanted is None:
        return  # unknown: WritableAsBefore fails the step
    probe = w.scope.sql(act.host)
    now = probe.read_only()
    if now != wanted:
        w.scope.log.warning("read_only.restore", host=act.host, was=wanted.token(), now=now.token())
        w.scope.progress(act.host, f"came back {now.describe()}; restoring {wanted.describe()}")
        probe.set_read_only(wanted)


PERFORMERS: dict[type[PlanAction], Performer] = {
    StopMha: _stop_mha,
    StartMha: _start_mha,
    RestartMysqld: _restart_mysqld,
    SetGlobal: _set_global,
    RestoreGlobal: _restore_global,
    StopIoThread: _stop_io_thread,
    KillBinlogDumps: _kill_binlog_dumps,
    StartIoThread: _start_io_thread,
    RestartIoThread: _restart_io_thread,
    RestoreReadOnly: _restore_read_only,
    RunHook: run_hook,  # on the bastion (engine/hooks.py)
    **switchover.PERFORMERS,
}


def perform(w: Waiter, act: PlanAction, st: StepRun) -> None:
    performer = PERFORMERS.get(type(act))
    if performer is None:  # a new action type without a performer is a programming error
        raise TypeError(f"no performer for action {act!r}")
    performer(w, act, st)


def perform_best_effort(w: Waiter, act: PlanAction, st: StepRun) -> None:
    """For cleanup: a failure is logged and reported, never raised. An IO thread that could
    not be started again is not retried by a later resume (it is left as a person finds it)."""
    try:
        perform(w, act, st)
    except HarestartError as exc:
        w.scope.log.warning("action.failed", host=act.host, action=act.kind, reason=str(exc))
        w.scope.progress(act.host, f"could not {act.describe()}: {exc}")
        if isinstance(act, StartIoThread):
            w.scope.remember(lambda m: m.without_detached(act.host), durable=True)
