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
    probe = w.scope.sql(act.host)
    if not probe.dialect().has_offline_mode:
        return  # MariaDB: the plan says nothing is sent
    if act.on:
        if _is_on(probe.global_variable(OFFLINE_MODE)):
            # Someone else's: left as found, and not this step's to turn off.
            w.scope.log.info("offline.already_on", host=act.host)
            return
        send(w, act)
        st.went_offline = True
        w.scope.log.info("offline.on", host=act.host)
        return
    # Cleanup: only what this step turned on, and only if mysqld did not restart since.
    if st.went_offline and _is_on(probe.global_variable(OFFLINE_MODE)):
        send(w, act)
        w.scope.log.info("offline.off", host=act.host)


PERFORMERS: dict[type[PlanAction], Performer] = {
    SetOfflineMode: _set_offline_mode,
}
EVALUATORS: dict[type[Gate], Evaluator] = {}
