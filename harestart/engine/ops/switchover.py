"""Carrying out a switch of the source role (``harestart.domain.plan.switchover``): the performers
of its actions and the evaluators of its gates, registered in ``engine.ops.registry``.

Never two writable nodes: the source is made read-only (journalled first) strictly before the
candidate is asked to become writable, and the undo (the source writable again) happens only
while the candidate is confirmed read-only. A resumed switch asks ``resume_point`` (a pure
question) where it goes on from, and goes on with the step's own actions from there.
"""

from __future__ import annotations

import enum
from dataclasses import replace

from harestart.adapters.protocols import UNKNOWN_THREAD
from harestart.domain.actions import (
    REPLICATION_PASSWORD,
    THREAD_ID,
    WRITABLE_BEFORE_SWITCH,
    KillLongTransactions,
    PlanAction,
    PromoteCandidate,
    RepointReplica,
    RestoreSourceWritable,
    SetSourceReadOnly,
)
from harestart.domain.gates import (
    MY_PRINT_DEFAULTS,
    CandidateApplied,
    Gate,
    NoLongTransactions,
    RepointedTo,
    SoleWritable,
    StartsReadOnly,
    SwitchReady,
)
from harestart.domain.group import Group, HookPoint
from harestart.domain.hooks import RunHook
from harestart.domain.judge import mha_unsafe, replication_problems, unreachable
from harestart.domain.observation import GroupState
from harestart.domain.pending.options import configured_read_only
from harestart.domain.plan.model import Step
from harestart.domain.secret import Secret
from harestart.domain.switch import IN_FLUX, errant_gtids
from harestart.domain.topology import Flavor, ReadOnlyState, ReplicaStatus
from harestart.engine.ops.base import Evaluator, Looking, Performer, StepRun, on_off, send
from harestart.engine.sequencer.memory import SwitchMemory
from harestart.engine.sequencer.waiting import StopWaiting
from harestart.engine.sequencer.waits import Waiter
from harestart.errors import GateFailed, HarestartError
from harestart.inventory.credentials import resolve_password

# Seconds the gates before a switch wait for the candidate to be within the lag limit.
READY_TIMEOUT = 10.0
# Seconds the killed sessions' transactions get to roll back and disappear.
KILL_TIMEOUT = 10.0
# Seconds a resumed promotion waits to see the candidate holding the read-only source's GTIDs
# (it has, unless the killed attempt stopped its replication early: then the step fails and
# its cleanup makes the source writable again).
PROMOTION_CHECK_TIMEOUT = 10.0


# --- memory ----------------------------------------------------------------------------------


def _phase(w: Waiter, source: str, candidate: str, phase: str, was: str | None = None) -> None:
    """Journal where the switch stands, durably, before the change it announces (a resumed
    switch keeps the source's state noted before the first attempt touched it)."""
    old = w.scope.memory.switch
    keep = old is not None and old.source == source and old.candidate == candidate
    source_was = old.source_was if keep and old is not None else (was or "")
    sw = SwitchMemory(source, candidate, phase, source_was)
    w.scope.remember(lambda m: replace(m, switch=sw), durable=True)


# --- performers ------------------------------------------------------------------------------


def kill_long_transactions(w: Waiter, act: KillLongTransactions, st: StepRun) -> None:
    for thread_id, age in w.scope.sql(act.host).long_transactions(act.limit):
        w.scope.log.warning("switch.kill_transaction", host=act.host, thread=thread_id, age_s=age)
        w.scope.progress(act.host, f"killing session {thread_id} (transaction open {age} s)")
        # A session that ended by itself meanwhile is fine.
        send(w, act, {THREAD_ID: thread_id}, tolerate=frozenset({UNKNOWN_THREAD}))


def set_source_read_only(w: Waiter, act: SetSourceReadOnly, st: StepRun) -> None:
    was = w.scope.sql(act.host).read_only()
    _phase(w, act.host, _candidate(st), "source_read_only", was.token())
    send(w, act)
    w.scope.log.info("switch.source_read_only", host=act.host, was=was.token())


def promote_candidate(w: Waiter, act: PromoteCandidate, st: StepRun) -> None:
    """The candidate leaves replication (if it still replicates: a resumed promotion may
    find it out already) and becomes writable; the source is read-only."""
    sw = w.scope.memory.switch
    if sw is None or sw.candidate != act.host:  # the plan puts SetSourceReadOnly first
        raise RuntimeError(f"{act.host}: promoted before its source was made read-only")
    _phase(w, sw.source, act.host, "promoting")
    send(w, act, is_replica=w.scope.sql(act.host).replica_status() is not None)
    w.scope.remember(lambda m: replace(m, source=act.host))
    _phase(w, sw.source, act.host, "promoted")
    w.scope.log.info("switch.promoted", host=act.host, old_source=sw.source)
    w.scope.progress(act.host, f"is the writable source now ({sw.source} is read-only)")


def repoint_replica(w: Waiter, act: RepointReplica, st: StepRun) -> None:
    replication = w.scope.group.replication
    if replication is None:  # the plan cannot have this action without it
        raise RuntimeError("no replication account in the inventory")
    password = resolve_password(replication.password, "replication") or Secret("")
    is_replica = w.scope.sql(act.host).replica_status() is not None
    send(w, act, {REPLICATION_PASSWORD: password}, is_replica=is_replica)
    w.scope.log.info("switch.repointed", host=act.host, source=act.source)


def restore_source_writable(w: Waiter, act: RestoreSourceWritable, st: StepRun) -> None:
    """Undo a switch that failed before the candidate became writable, only while the
    candidate is confirmed read-only (never two writable nodes)."""
    scope, sw = w.scope, w.scope.memory.switch
    if sw is None or sw.source != act.host or sw.phase not in ("source_read_only", "promoting"):
        return
    try:
        candidate = scope.sql(sw.candidate).read_only()
    except HarestartError as exc:
        if sw.phase == "promoting":
            scope.log.error("switch.undo_unsafe", host=act.host, reason=str(exc))
            scope.progress(
                act.host,
                f"left read-only: {sw.candidate} may have become writable and cannot be asked "
                f"({exc}); make exactly one of {act.host}, {sw.candidate} writable by hand",
            )
            return
        candidate = ReadOnlyState(True)  # never asked to become writable
    if not candidate.read_only:
        scope.log.error("switch.undo_refused", host=act.host, candidate=sw.candidate)
        return
    was = ReadOnlyState.from_token(sw.source_was or "0")
    send(w, act, {WRITABLE_BEFORE_SWITCH: on_off(was.read_only)})
    _phase(w, sw.source, sw.candidate, "undone")
    scope.log.warning("switch.undone", host=act.host, candidate=sw.candidate)
    scope.progress(act.host, f"writable again: the switch to {sw.candidate} was undone")


# --- resuming a switch -----------------------------------------------------------------------


class ResumePoint(enum.Enum):
    """Where a resumed switch step goes on from (``resume_point``)."""

    REDO = "redo"  # from its gates: the candidate was never made writable
    PROMOTE = "promote"  # killed while promoting: prove the candidate holds it all, promote
    REPOINT = "repoint"  # the candidate is the writable source: re-point the others
    REFUSE = "refuse"  # both writable: a person decides which one keeps the writes


def resume_point(
    sw: SwitchMemory | None, candidate: str, source_ro: ReadOnlyState, candidate_ro: ReadOnlyState
) -> ResumePoint:
    """Where the interrupted switch to ``candidate`` goes on from, given the journal's switch
    and both servers' read_only now. Pure: it decides, the step runner carries it out.

    Killed while promoting (the source read-only, the candidate maybe out of replication
    already): the switch cannot start over from its gates, so the promotion is finished
    (once the candidate is seen holding the source's GTIDs, the gate after the source became
    read-only). The candidate writable and the source read-only: the switch happened, the
    replicas are re-pointed. Both writable: refused, nothing changed."""
    if sw is None or sw.candidate != candidate or sw.phase not in IN_FLUX:
        return ResumePoint.REDO
    if not source_ro.read_only and not candidate_ro.read_only:
        return ResumePoint.REFUSE
    if candidate_ro.read_only:
        promoting = sw.phase == "promoting" and source_ro.read_only
        return ResumePoint.PROMOTE if promoting else ResumePoint.REDO
    return ResumePoint.REPOINT


def where_to_resume(w: Waiter, step: Step) -> ResumePoint:
    """``resume_point`` for ``step`` with what the servers say now (reads only); refuses,
    changing nothing, when both nodes are writable."""
    sw, scope = w.scope.memory.switch, w.scope
    if sw is None or sw.candidate != step.host or sw.phase not in IN_FLUX:
        return ResumePoint.REDO
    source, candidate = scope.sql(sw.source).read_only(), scope.sql(sw.candidate).read_only()
    point = resume_point(sw, sw.candidate, source, candidate)
    if point is ResumePoint.REFUSE:
        raise GateFailed(
            "one writable node",
            sw.candidate,
            f"{sw.source} and {sw.candidate} are both writable: make one of them read-only by "
            "hand (the one the application does not write to), then resume",
        )
    if point is ResumePoint.REDO:
        scope.progress(sw.candidate, "the interrupted switch did not make it writable: redoing it")
    elif point is ResumePoint.PROMOTE:
        scope.progress(sw.candidate, "finishing the interrupted promotion")
    else:  # the switch happened: the run goes on with the candidate as the source
        scope.remember(lambda m: replace(m, source=sw.candidate))
        _phase(w, sw.source, sw.candidate, "promoted")
        scope.progress(sw.candidate, "is already the writable source: re-pointing the replicas")
    return point


def resumed_part(step: Step, point: ResumePoint) -> tuple[tuple[Gate, ...], tuple[PlanAction, ...]]:
    """The gates to see hold first and the actions a resumed switch performs from ``point``:
    the promotion's proof and the promotion itself (``PROMOTE``), then the after_switch hook
    (the proxy's writer moves) and the re-pointing, in the plan's order."""
    proof = tuple(g for a in step.actions if isinstance(a, SetSourceReadOnly) for g in a.then)
    rest = tuple(
        a
        for a in step.actions
        if isinstance(a, RepointReplica)
        or (isinstance(a, RunHook) and a.point is HookPoint.AFTER_SWITCH)
    )
    if point is ResumePoint.PROMOTE:
        promote = tuple(a for a in step.actions if isinstance(a, PromoteCandidate))
        return proof, (*promote, *rest)
    return (), rest


def switch_resume_problems(group_now: Group, state: GroupState, phase: str | None) -> list[str]:
    """Why ``resume`` must refuse a run that moved (or was moving) the source role:
    ``group_now`` is the group with the source the journal names. Mid-switch the replication
    topology is not judged here: the switch step reads it and finishes or undoes the switch."""
    problems = unreachable(state) + mha_unsafe(group_now, state)
    if phase not in IN_FLUX:
        problems += replication_problems(group_now, state)
    return problems


def _candidate(st: StepRun) -> str:
    if st.step.host is None:  # a switch step names its candidate
        raise RuntimeError("a switch step without a candidate")
    return st.step.host


# --- gates -----------------------------------------------------------------------------------


def switch_ready(w: Looking, gate: SwitchReady, st: StepRun) -> None:
    scope = w.scope
    if scope.group.replication is not None:  # unavailable: refused before anything changes
        resolve_password(scope.group.replication.password, "replication")
    source, candidate = scope.sql(gate.source), scope.sql(gate.candidate)
    info = source.server_info()
    seen: dict[str, ReplicaStatus] = {}

    def check() -> bool | None:
        rs = w.unbroken_replica_status(gate.candidate, seen)
        if rs.source_server_id is not None and rs.source_server_id != info.server_id:
            raise StopWaiting(
                f"{gate.candidate} replicates from server_id {rs.source_server_id}, not from "
                f"{gate.source} (server_id {info.server_id})"
            )
        if not rs.threads_running():
            raise StopWaiting(f"{gate.candidate}: replication threads not both running: "
                              f"IO {rs.io_running}, SQL {rs.sql_running}")  # fmt: skip
        return True if rs.lag_within(gate.max_lag) else None

    w.wait(
        check,
        what=f"{gate.candidate}: a healthy replica of {gate.source} lagging <= {gate.max_lag:g} s",
        host=gate.candidate,
        timeout=READY_TIMEOUT,
        describe=lambda: seen["last"].describe() if "last" in seen else "no answer yet",
    )
    c_set, s_set = candidate.executed_gtid_set(), source.executed_gtid_set()
    try:
        extra = errant_gtids(c_set, s_set, info.flavor)
    except ValueError as exc:  # text the GTID model cannot read: refuse, never guess
        reason = f"{exc}; refusing the switch (nothing was changed)"
        raise GateFailed("errant transactions", gate.candidate, reason) from None
    # The server's own answer as well (the authority; the model names what is errant).
    if info.flavor is Flavor.MYSQL and not extra and not source.gtid_subset(c_set, s_set):
        extra = (c_set,)
    if extra:
        raise GateFailed(
            "errant transactions",
            gate.candidate,
            f"{gate.candidate} executed transactions {gate.source} never had: "
            f"{', '.join(extra)}; refusing the switch (nothing was changed)",
        )


def starts_read_only(w: Looking, gate: StartsReadOnly, st: StepRun) -> None:
    value = configured_read_only(w.scope.option_file(gate.host).splitlines())
    if value is not True:
        said = "not set (OFF)" if value is None else "OFF"
        raise GateFailed(
            "starts read-only",
            gate.host,
            f"{gate.host}'s configuration starts mysqld writable (read_only {said} in "
            f"`{MY_PRINT_DEFAULTS}`): restarted as a replica it would be a second writable "
            "node until harestart set it read-only. Set read_only=ON in its configuration "
            "(the running source stays writable until the switch); refusing the switch "
            "(nothing was changed)",
        )


def no_long_transactions(w: Looking, gate: NoLongTransactions, st: StepRun) -> None:
    probe = w.scope.sql(gate.source)
    seen: list[list[tuple[int, int]]] = [[]]

    def check() -> bool | None:
        seen[0] = probe.long_transactions(gate.limit)
        return True if not seen[0] else None

    if check():
        return
    if any(isinstance(a, KillLongTransactions) for a in st.step.actions):
        try:
            w.wait(check, what="killed transactions gone", host=gate.source, timeout=KILL_TIMEOUT)
            return
        except GateFailed:
            pass
    listed = ", ".join(f"session {t} open {a} s" for t, a in seen[0])
    raise GateFailed(
        "long transactions",
        gate.source,
        f"{gate.source} has transactions open longer than {gate.limit:g} s ({listed}); "
        "refusing the switch (nothing was changed; `--long-transactions kill` ends them)",
    )


def candidate_applied(w: Looking, gate: CandidateApplied, st: StepRun) -> None:
    position = w.scope.sql(gate.source).gtid_position()
    candidate = w.scope.sql(gate.candidate)
    if candidate.replica_status() is not None:
        w.caught_up(gate.candidate, position, w.scope.group.health.catchup_timeout)
        return
    # A resumed promotion: the killed attempt may have taken it out of replication already,
    # so it holds everything the read-only source has now, or never will.
    if position and not candidate.wait_for_gtid(position, PROMOTION_CHECK_TIMEOUT):
        raise GateFailed(
            "candidate applied",
            gate.candidate,
            f"{gate.candidate} does not hold everything the read-only {gate.source} has "
            f"({position}) and no longer replicates: the switch cannot be finished; "
            f"make {gate.source} writable again by hand (SET GLOBAL read_only = OFF) and "
            f"restart replication on {gate.candidate}",
        )


def sole_writable(w: Looking, gate: SoleWritable, st: StepRun) -> None:
    writable = [
        n.name for n in w.scope.group.db_nodes if not w.scope.sql(n.name).read_only().read_only
    ]
    if writable != [gate.host]:
        raise GateFailed(
            "one writable node",
            gate.host,
            f"writable nodes: {', '.join(writable) or 'none'} (expected exactly {gate.host})",
        )


def repointed_to(w: Looking, gate: RepointedTo, st: StepRun) -> None:
    source = w.scope.sql(gate.source)
    source_id = source.server_info().server_id
    seen: dict[str, ReplicaStatus] = {}

    def check() -> bool | None:
        rs = w.unbroken_replica_status(gate.host, seen)
        return True if rs.threads_running() and rs.source_server_id == source_id else None

    timeout = w.scope.group.health.catchup_timeout
    w.wait(
        check,
        what=f"{gate.host}: replicating from {gate.source}",
        host=gate.host,
        timeout=timeout,
        describe=lambda: seen["last"].describe() if "last" in seen else "no answer yet",
    )
    w.caught_up(gate.host, source.gtid_position(), timeout)


PERFORMERS: dict[type[PlanAction], Performer] = {
    KillLongTransactions: kill_long_transactions,
    SetSourceReadOnly: set_source_read_only,
    PromoteCandidate: promote_candidate,
    RepointReplica: repoint_replica,
    RestoreSourceWritable: restore_source_writable,
}
EVALUATORS: dict[type[Gate], Evaluator] = {
    SwitchReady: switch_ready,
    StartsReadOnly: starts_read_only,
    NoLongTransactions: no_long_transactions,
    CandidateApplied: candidate_applied,
    SoleWritable: sole_writable,
    RepointedTo: repointed_to,
}
