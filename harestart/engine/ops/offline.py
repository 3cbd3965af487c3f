"""MySQL's offline_mode around the source's in-place restart: the application's sessions
sent away right before the shutdown (which then skips its fixed 2 s wait for client threads),
and the setting put back when the step failed before mysqld restarted."""

from __future__ import annotations

from harestart.domain.actions import PlanAction, SetOfflineMode
from harestart.domain.gates import Gate
from harestart.engine.ops.base import Evaluator, Performer, StepRun, send
from harestart.engine.sequencer.waits import Waiter

OFFLINE_MODE = "offline_mode"


def _is_on(text: str) -> bool:
    return text.strip().upper() in ("1", "ON")


def _set_offline_mode(w: Waiter, act: SetOfflineMode, st: StepRun) -> None:
    scope, host = w.scope, act.host
    probe = scope.sql(host)
    if not probe.dialect().has_offline_mode:
        return  # MariaDB: the plan says nothing is sent
    # This run's, journalled before it is sent: a run killed after it and resumed still owns
    # it (and turns it off if the resumed step fails before mysqld is back).
    ours = st.went_offline or scope.memory.node(host).offline
    if act.on:
        if _is_on(probe.global_variable(OFFLINE_MODE)) and not ours:
            # Someone else's: left as found, and not this step's to turn off.
            scope.log.info("offline.already_on", host=host)
            return
        scope.remember(lambda m: m.with_node(host, offline=True), durable=True)
        send(w, act)
        st.went_offline = True
        scope.log.info("offline.on", host=host)
        return
    # Cleanup: only what this run turned on, and only if mysqld was not proven restarted since
    # (a restart clears it; a restart command that failed leaves it ON: the application would
    # be refused by a running source).
    if not ours:
        return
    if st.back_at is None and _is_on(probe.global_variable(OFFLINE_MODE)):
        send(w, act)
        scope.log.info("offline.off", host=host)
    st.went_offline = False
    scope.remember(lambda m: m.with_node(host, offline=False), durable=True)


PERFORMERS: dict[type[PlanAction], Performer] = {
    SetOfflineMode: _set_offline_mode,
}
EVALUATORS: dict[type[Gate], Evaluator] = {}
