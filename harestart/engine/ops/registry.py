"""The registry: each action type's performer and each gate type's evaluator, gathered from
the operation modules (``mha``, ``restart``, ``preflush``, ``detach``, ``offline``,
``switchover``, ``hooks``).

A performer sends exactly what its action shows in the plan, and decides the action's
condition (``when``) from what the run sees and remembers; it never sends anything else.
Evaluators only look (and wait). A gate that does not hold raises ``GateFailed``; a soft gate
(``SOFT_GATES``) that does not hold in time logs a warning and lets the run go on. Preflight
and the final verification judge one observation of the whole group instead
(``harestart.domain.judge``), so their gates have no evaluator here.
"""

from __future__ import annotations

from harestart.domain.actions import PlanAction, StartIoThread
from harestart.domain.gates import SOFT_GATES, DirtyPagesFlushed, Gate, SendersGone
from harestart.engine.ops import detach, hooks, mha, offline, preflush, restart, switchover
from harestart.engine.ops.base import Evaluator, Performer, StepRun
from harestart.engine.sequencer.waits import Waiter
from harestart.errors import GateFailed, HarestartError

_OPERATIONS = (mha, restart, preflush, detach, offline, switchover)
PERFORMERS: dict[type[PlanAction], Performer] = {
    **{k: v for op in _OPERATIONS for k, v in op.PERFORMERS.items()},
    **hooks.PERFORMERS,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    k: v for op in _OPERATIONS for k, v in op.EVALUATORS.items()
}

# What a soft gate's warning is logged as (tools and tests read these event names).
_SOFT_EVENTS = {DirtyPagesFlushed: "preflush.timeout", SendersGone: "replica.senders_linger"}
_SOFT_TEXT = {
    DirtyPagesFlushed: "pre-flush incomplete, restarting anyway",
    SendersGone: "restarting anyway",
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


def evaluate(w: Waiter, gate: Gate, st: StepRun) -> None:
    """Evaluate one typed gate, waiting up to its deadline. Raises GateFailed."""
    log = w.scope.log
    kind = type(gate).__name__  # stable for tools reading the log (the bench does)
    evaluator = EVALUATORS.get(type(gate))
    if evaluator is None:  # a new gate type without an evaluator is a programming error
        raise TypeError(f"no evaluator for gate {gate!r}")
    # No record when a gate starts: most hold at the first look, and one that waits says so
    # ("wait.started", Waiter.wait); half the records of a run were "gate.start".
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
