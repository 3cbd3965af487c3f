"""Carrying out a switch of the source role (``harestart.domain.plan.switchover``): the performers
of its actions and the evaluators of its gates, registered in ``engine.ops.registry``.


Never two writable nodes: the source is made read-only (journalled first) strictly before the
candidate is asked to become writable, and the undo (the source writable again) happens only
while the candidate is confirmed read-only.
"""

from __future__ import annotations

from dataclasses import replace

from harestart.domain.actions import (
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
from harestart.domain.group import Group
from harestart.domain.judge import mha_unsafe, replication_problems, unreachable
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Step
from harestart.domain.switch import IN_FLUX, errant_gtids
from harestart.domain.topology import Flavor, ReadOnlyState, ReplicaStatus
from harestart.engine.ops.base import Evaluator, Performer, StepRun
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
    probe = w.scope.sql(act.host)
    for thread_id, age in probe.long_transactions(act.limit):
        w.scope.log.warning("switch.kill_transaction", host=act.host, thread=thread_id, age_s=age)
        w.scope.progress(act.host, f"killing session {thread_id} (transaction open {age} s)")
        probe.kill_connection(thread_id)


def set_source_read_only(w: Waiter, act: SetSourceReadOnly, st: StepRun) -> None:
    probe = w.scope.sql(act.host)
    was = probe.read_only()
    _phase(w, act.host, _candidate(st), "source_read_only", was.token())
    probe.set_read_only(ReadOnlyState(True, None if was.super_read_only is None else True))
    w.scope.log.info("switch.source_read_only", host=act.host, was=was.token())


def promote_candidate(w: Waiter, act: PromoteCandidate, st: StepRun) -> None:
    sw = w.scope.memory.switch
    if sw is None or sw.candidate != act.host:  # the plan puts SetSourceReadOnly first
        raise RuntimeError(f"{act.host}: promoted before its source was made read-only")
    _promote(w, sw, act.host)


def _promote(w: Waiter, sw: SwitchMemory, host: str) -> None:
    """The candidate leaves replication and becomes writable (the source is read-only)."""
    _phase(w, sw.source, host, "promoting")
    probe = w.scope.sql(host)
    if probe.replica_status() is not None:
        probe.stop_replica()
        probe.reset_replica_all()
    now = probe.read_only()
    probe.set_read_only(ReadOnlyState(False, None if now.super_read_only is None else False))
    w.scope.remember(lambda m: replace(m, source=host))
    _phase(w, sw.source, host, "promoted")
    w.scope.log.info("switch.promoted", host=host, old_source=sw.source)
    w.scope.progress(host, f"is the writable source now ({sw.source} is read-only)")


def repoint_replica(w: Waiter, act: RepointReplica, st: StepRun) -> None:
    replication = w.scope.group.replication
    if replication is None:  # the plan cannot have this action without it
        raise RuntimeError("no replication account in the inventory")
    password = resolve_password(replication.password, "replication")
    probe = w.scope.sql(act.host)
    if probe.replica_status() is not None:
        probe.stop_replica()
    probe.change_source(act.target, password, was_source=act.was_source)
    probe.start_replica()
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
    scope.sql(act.host).set_read_only(ReadOnlyState.from_token(sw.source_was or "0"))
    _phase(w, sw.source, sw.candidate, "undone")
    scope.log.warning("switch.undone", host=act.host, candidate=sw.candidate)
    scope.progress(act.host, f"writable again: the switch to {sw.candidate} was undone")


def resume_at_repointing(w: Waiter, step: Step) -> bool:
    """On resume: does the interrupted switch of ``step`` continue from the re-pointing?

    Yes when the journal says this switch began and the live servers show the candidate
    writable and the source read-only (the switch happened), and when it was killed while
    promoting (the source read-only, the candidate maybe out of replication already): the
    promotion is finished once the candidate is seen holding the source's GTIDs. Both
    writable: refuse, changing nothing. Otherwise (the candidate still read-only, the
    promotion not begun) the step runs again from its gates."""
    sw, scope = w.scope.memory.switch, w.scope
    if sw is None or sw.candidate != step.host or sw.phase not in IN_FLUX:
        return False
    source = scope.sql(sw.source).read_only()
    candidate = scope.sql(sw.candidate).read_only()
    if not source.read_only and not candidate.read_only:
        raise GateFailed(
            "one writable node",
            sw.candidate,
            f"{sw.source} and {sw.candidate} are both writable: make one of them read-only by "
            "hand (the one the application does not write to), then resume",
        )
    if candidate.read_only and sw.phase == "promoting" and source.read_only:
        # Killed while promoting: the candidate may have left replication already, so the
        # switch cannot start over from its gates. The source is still read-only: once the
        # candidate holds everything it has, finish the promotion (the step's own statements).
        position = scope.sql(sw.source).gtid_position()
        if position and not scope.sql(sw.candidate).wait_for_gtid(
            position, PROMOTION_CHECK_TIMEOUT
        ):
            raise GateFailed(
                "candidate applied",
                sw.candidate,
                f"{sw.candidate} does not hold everything the read-only {sw.source} has "
                f"({position}) and no longer replicates: the switch cannot be finished; "
                f"make {sw.source} writable again by hand (SET GLOBAL read_only = OFF) and "
                f"restart replication on {sw.candidate}",
            )
        scope.progress(sw.candidate, "the interrupted promotion is finished now")
        _promote(w, sw, sw.candidate)
        return True
    if candidate.read_only:
        scope.progress(sw.candidate, "the interrupted switch did not make it writable: redoing it")
        return False
    if not source.read_only:  # the candidate is writable and the source too: caught above
        return False
    scope.remember(lambda m: replace(m, source=sw.candidate))
    _phase(w, sw.source, sw.candidate, "promoted")
    scope.progress(sw.candidate, "is already the writable source: re-pointing the replicas")
    return True


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


def switch_ready(w: Waiter, gate: SwitchReady, st: StepRun) -> None:
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


def starts_read_only(w: Waiter, gate: StartsReadOnly, st: StepRun) -> None:
    out = w.scope.shell(gate.host).run(MY_PRINT_DEFAULTS, timeout=30).stdout
    value = configured_read_only(out)
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


def configured_read_only(options: str) -> bool | None:
    """read_only as ``my_print_defaults`` lists it (the last setting wins); None: not set.
    ``super_read_only`` ON implies read_only."""
    value: bool | None = None
    for line in options.split():
        name, _, raw = line.lstrip("-").partition("=")
        name = name.replace("-", "_")
        if name in ("read_only", "super_read_only"):
            on = raw.strip().upper() in ("", "1", "ON", "TRUE")
            value = on if name == "read_only" else (True if on else value)
    return value


def no_long_transactions(w: Waiter, gate: NoLongTransactions, st: StepRun) -> None:
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


def candidate_applied(w: Waiter, gate: CandidateApplied, st: StepRun) -> None:
    position = w.scope.sql(gate.source).gtid_position()
    w.caught_up(gate.candidate, position, w.scope.group.health.catchup_timeout)


def sole_writable(w: Waiter, gate: SoleWritable, st: StepRun) -> None:
    writable = [
        n.name for n in w.scope.group.db_nodes if not w.scope.sql(n.name).read_only().read_only
    ]
    if writable != [gate.host]:
        raise GateFailed(
            "one writable node",
            gate.host,
            f"writable nodes: {', '.join(writable) or 'none'} (expected exactly {gate.host})",
        )


def repointed_to(w: Waiter, gate: RepointedTo, st: StepRun) -> None:
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
