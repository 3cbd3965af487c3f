"""The source's pre-flush: dirty pages written out before its restart, and the setting put
back when mysqld was not restarted after it."""

from __future__ import annotations

from harestart.domain.actions import (
    VALUE_BEFORE,
    PlanAction,
    RestoreGlobal,
    SetGlobal,
)
from harestart.domain.gates import (
    DirtyPagesFlushed,
    Gate,
)
from harestart.engine.ops.base import Evaluator, Looking, Performer, StepRun, send
from harestart.engine.sequencer.waits import Waiter
from harestart.errors import HarestartError


def _set_global(w: Waiter, act: SetGlobal, st: StepRun) -> None:
    original = w.scope.sql(act.host).global_variable(act.name)
    w.scope.remember(lambda m: m.with_node(act.host, dirty_pct=original))
    send(w, act)
    w.scope.log.info("preflush.start", host=act.host, was=original)


def _restore_global(w: Waiter, act: RestoreGlobal, st: StepRun) -> None:
    """Best effort: put the pre-flush setting back if mysqld was not restarted after it."""
    scope, host = w.scope, act.host
    original = scope.memory.node(host).dirty_pct
    if original is None:
        return
    scope.remember(lambda m: m.with_node(host, dirty_pct=None))
    try:
        if float(scope.sql(host).global_variable(act.name)) != float(original):
            send(w, act, {VALUE_BEFORE: float(original)})
            scope.log.info("preflush.restored", host=host, value=original)
    except HarestartError as exc:
        scope.log.warning("preflush.restore_failed", host=host, reason=str(exc))
    except ValueError:  # a value read from the server (or the journal) that is not a number
        scope.log.warning("preflush.restore_failed", host=host, reason="not a number")


def _flushed(w: Looking, gate: DirtyPagesFlushed, st: StepRun) -> None:
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


PERFORMERS: dict[type[PlanAction], Performer] = {
    SetGlobal: _set_global,
    RestoreGlobal: _restore_global,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    DirtyPagesFlushed: _flushed,
}
