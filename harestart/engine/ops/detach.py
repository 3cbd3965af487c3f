"""Detaching replicas before the source's restart (IO threads stopped, senders gone) and
attaching them again."""

from __future__ import annotations

from harestart.adapters.protocols import UNKNOWN_THREAD
from harestart.domain.actions import (
    THREAD_ID,
    KillBinlogDumps,
    PlanAction,
    StartIoThread,
    StopIoThread,
)
from harestart.domain.gates import (
    Gate,
    SendersGone,
)
from harestart.engine.ops.base import Evaluator, Looking, Performer, StepRun, send
from harestart.engine.sequencer.waits import Waiter


def _stop_io_thread(w: Waiter, act: StopIoThread, st: StepRun) -> None:
    # Journalled first: a resume after a kill starts it again.
    w.scope.remember(lambda m: m.with_detached(act.host), durable=True)
    send(w, act)
    w.scope.log.info("replica.detached", host=act.host)


def _kill_binlog_dumps(w: Waiter, act: KillBinlogDumps, st: StepRun) -> None:
    killed = 0
    for thread_id in w.scope.sql(act.host).binlog_dump_threads():
        # A sender gone by itself meanwhile is fine.
        if send(w, act, {THREAD_ID: thread_id}, tolerate=frozenset({UNKNOWN_THREAD})):
            killed += 1
    w.scope.log.info("replica.senders_killed", host=act.host, count=killed)


def _start_io_thread(w: Waiter, act: StartIoThread, st: StepRun) -> None:
    """Only for an IO thread this run (or the interrupted attempt) stopped."""
    if act.host not in w.scope.memory.detached:
        return
    send(w, act)
    w.scope.log.info("replica.reattached", host=act.host)
    # Journalled by the next save, not one of its own: a resume after a kill in between starts
    # this IO thread again, which is running (a no-op, best effort).
    w.scope.remember(lambda m: m.without_detached(act.host))


def _senders_gone(w: Looking, gate: SendersGone, st: StepRun) -> None:
    source = w.scope.sql(gate.source)
    w.wait(
        lambda: True if not source.binlog_dump_threads() else None,
        what=f"{gate.source}: no Binlog Dump thread listed",
        host=gate.source,
        timeout=gate.timeout,
        describe=lambda: f"{len(source.binlog_dump_threads())} Binlog Dump thread(s)",
    )


PERFORMERS: dict[type[PlanAction], Performer] = {
    StopIoThread: _stop_io_thread,
    KillBinlogDumps: _kill_binlog_dumps,
    StartIoThread: _start_io_thread,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    SendersGone: _senders_gone,
}
