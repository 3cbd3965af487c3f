"""Detaching replicas before the source's restart (IO threads stopped, senders gone) and
attaching them again."""

from __future__ import annotations

from harestart.domain.actions import (
    KillBinlogDumps,
    PlanAction,
    StartIoThread,
    StopIoThread,
)
from harestart.domain.gates import (
    Gate,
    SendersGone,
)
from harestart.engine.ops.base import Evaluator, Performer, StepRun
from harestart.engine.sequencer.waits import Waiter


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


def _senders_gone(w: Waiter, gate: SendersGone, st: StepRun) -> None:
    source = w.scope.sql(gate.source)
    w.wait(
        lambda: True if source.binlog_dump_threads() == 0 else None,
        what=f"{gate.source}: no Binlog Dump thread listed",
        host=gate.source,
        timeout=gate.timeout,
        describe=lambda: f"{source.binlog_dump_threads()} Binlog Dump thread(s)",
    )


PERFORMERS: dict[type[PlanAction], Performer] = {
    StopIoThread: _stop_io_thread,
    KillBinlogDumps: _kill_binlog_dumps,
    StartIoThread: _start_io_thread,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    SendersGone: _senders_gone,
}
