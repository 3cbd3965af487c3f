"""The planner: ``build_plan(group, options)``, the ordered steps of one group's restart. Pure,
no I/O: same input, same plan."""

from __future__ import annotations

from dataclasses import replace

from harestart.domain.actions import (
    KillBinlogDumps,
    PlanAction,
    RestartIoThread,
    RestartMysqld,
    RestoreGlobal,
    RestoreReadOnly,
    SetGlobal,
    SetOfflineMode,
    StartIoThread,
    StartMha,
    StopIoThread,
    StopMha,
)
from harestart.domain.commands import detached, surviving_disconnect
from harestart.domain.gates import (
    AllReachable,
    CaughtUp,
    DirtyPagesFlushed,
    FailoverQuiet,
    LagWithin,
    MhaRunning,
    MhaStopped,
    NotPending,
    ReplicasCaughtUp,
    ReplicasReconnected,
    Restarted,
    SendersGone,
    ThreadsRunning,
    TopologyMatches,
    WritableAsBefore,
)
from harestart.domain.group import Group, Strategy
from harestart.domain.hooks import node_hooks
from harestart.domain.plan.model import Action, Plan, PlanOptions, Step
from harestart.domain.plan.switchover import restart_old_source, switch_step
from harestart.domain.switch import (
    Candidate,
    SourceStrategy,
    choose_candidate,
)

PREFLUSH_VARIABLE = "innodb_max_dirty_pages_pct"


def replica_batches(
    n_replicas: int, parallelism: int, min_healthy: int, restarted: int | None = None
) -> list[int]:
    """Sizes of the replica batches: at most ``parallelism`` at once, and never fewer than
    ``min_healthy`` replicas left running during a batch (one at a time is always allowed).
    ``restarted``: how many of the ``n_replicas`` restart (--only-pending; default all)."""
    size = max(1, min(parallelism, n_replicas - min_healthy))
    sizes = []
    left = n_replicas if restarted is None else restarted
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def build_plan(group: Group, options: PlanOptions | None = None) -> Plan:
    """The ordered restart plan for one group. Pure: no I/O, same input -> same plan."""
    opts = options or PlanOptions()
    replicas = [r for r in group.replicas if opts.restarts(r.name)]
    sizes = replica_batches(
        len(group.replicas),
        opts.replica_parallelism,
        group.health.min_healthy_replicas,
        len(replicas),
    )
    batch_of: dict[str, int | None] = {}
    batched = max(sizes, default=0) > 1
    i = 0
    for number, size in enumerate(sizes, start=1):
        for r in replicas[i : i + size]:
            batch_of[r.name] = number if batched else None
        i += size
    if opts.strategy(group) is SourceStrategy.SWITCHOVER:
        return _only(_switchover_plan(group, opts, batch_of), group, opts)
    n = len(replicas)
    source = [_restart_source(3 + n, group, opts)] if opts.restarts(group.source.name) else []
    steps = [
        _preflight(1, group, opts),
        _stop_failover(2, group),
        *(_restart_replica(3 + i, group, r.name, batch_of[r.name]) for i, r in enumerate(replicas)),
        *source,
    ]
    steps += [_start_failover(len(steps) + 1, group), _verify(len(steps) + 2, group)]
    plan = Plan(group=group.id, account=group.account, name=group.name, steps=tuple(steps))
    return _only(plan, group, opts)


_RESTARTS = (Action.RESTART_REPLICA, Action.RESTART_SOURCE)


def _only(plan: Plan, group: Group, opts: PlanOptions) -> Plan:
    """--only-pending: each restart step names why it runs (and a node restarted for what a
    restart ends is checked again after it: ``NotPending``); the other nodes are listed as
    left running."""
    if opts.only is None:
        return plan
    steps: list[Step] = []
    for s in plan.steps:
        why = opts.only.of(s.host) if s.action in _RESTARTS and s.host is not None else None
        if why is None:
            steps.append(s)
            continue
        again = (NotPending(why.node),) if why.recheck else ()
        summary = f"{s.summary}; pending: {why.why()}"
        steps.append(replace(s, summary=summary, after=(*s.after, *again)))
    left = tuple(f"{n.name} ({n.role})" for n in group.db_nodes if not opts.restarts(n.name))
    return replace(plan, steps=tuple(steps), left_running=left)


def _preflight(number: int, group: Group, opts: PlanOptions) -> Step:
    reattach = (
        tuple(
            StartIoThread(
                host=r.name,
                when="resuming a run interrupted after it stopped this IO thread and before "
                "it started it again",
            )
            for r in group.replicas
        )
        if opts.detach_replicas
        else ()
    )
    return Step(
        number,
        Action.PREFLIGHT,
        "check every node, the replication topology and MHA (a new run changes nothing here)",
        actions=reattach,  # before judging the topology
        after=(AllReachable(), TopologyMatches(group.source.name), FailoverQuiet()),
    )


def stop_mha(group: Group) -> StopMha:
    """The inventory's stop command, proven by MHA's status."""
    return StopMha(
        host=group.mha.manager.name,
        command=group.mha.stop_command,
        when="MHA is running; a failover in progress fails the step instead",
        then=(MhaStopped(),),
    )


def start_mha(group: Group) -> StartMha:
    """The one place MHA's start command is made: the inventory's manager command, detached
    (it would die with the SSH session that started it otherwise)."""
    return StartMha(
        host=group.mha.manager.name,
        command=detached(group.mha.start_command, group.mha.log),
        inventory_command=group.mha.start_command,
        when="MHA was running before the run and is not running now; also after a failed "
        "step if the failure policy allows it and every replica replicates from the source",
        then=(MhaRunning(),),
    )


def _stop_failover(number: int, group: Group) -> Step:
    manager = group.mha.manager.name
    return Step(
        number,
        Action.STOP_FAILOVER,
        f"stop MHA on {manager} so it cannot fail over while nodes restart",
        host=manager,
        command=group.mha.stop_command,
        actions=(stop_mha(group),),
    )


def _restart(host: str, command: str) -> RestartMysqld:
    return RestartMysqld(
        host=host,
        command=surviving_disconnect(command),
        inventory_command=command,
        when="not already restarted by the interrupted attempt being resumed",
        then=(Restarted(host),),
    )


def _restart_command(group: Group, name: str) -> str:
    command = group.node(name).restart_command
    if command is None:  # the inventory gives every database node one
        raise ValueError(f"{name} has no restart command")
    return command


def _restart_replica(
    number: int, group: Group, name: str, batch: int | None, strategy: Strategy = "restart"
) -> Step:
    h = group.health
    command = _restart_command(group, name)
    together = f" (batch {batch}, in parallel)" if batch is not None else ""
    before_hooks, after_hooks = node_hooks(group, name, strategy=strategy)
    return Step(
        number,
        Action.RESTART_REPLICA,
        f"restart mysqld on replica {name}{together}",
        host=name,
        command=command,
        actions=(*before_hooks, _restart(name, command)),
        after=(
            ThreadsRunning(name),
            CaughtUp(name, "everything the source had when the step began"),
            LagWithin(name, h.max_lag),
        ),
        batch=batch,
        closing=after_hooks,
    )


# MySQL's shutdown waits a fixed 2 s whenever a client session is still there.
_OFFLINE_WHEN = "the server has offline_mode and it is OFF"


def _restart_source(number: int, group: Group, opts: PlanOptions) -> Step:
    source = group.source.name
    command = _restart_command(group, source)
    replicas = [r.name for r in group.replicas]
    before_hooks, after_hooks = node_hooks(group, source)
    actions: list[PlanAction] = [*before_hooks]  # before anything changes on the source
    cleanup: list[PlanAction] = []
    if opts.preflush:
        flushed = DirtyPagesFlushed(source, opts.preflush_max_dirty_pct)
        actions.append(SetGlobal(host=source, name=PREFLUSH_VARIABLE, value=0, then=(flushed,)))
    if opts.detach_replicas:
        # Idle replication senders hold a MySQL source's shutdown for ~10 s (write downtime).
        # Nothing is lost: what the source acknowledges meanwhile is in its binary log,
        # fetched by GTID auto-position.
        actions += [StopIoThread(host=r) for r in replicas]
        gone = SendersGone(source, opts.detach_timeout)
        actions.append(KillBinlogDumps(host=source, when="any is still listed", then=(gone,)))
    if opts.offline_mode:
        # Last before the restart: the application is refused from here until mysqld is back.
        actions.append(SetOfflineMode(host=source, on=True, when=_OFFLINE_WHEN))
        failed = "this step turned it on and mysqld was not restarted since"
        cleanup.append(SetOfflineMode(host=source, on=False, when=failed))
    actions.append(_restart(source, command))
    actions.append(
        RestoreReadOnly(
            host=source,
            when="it came back different from before the restart",
            then=(WritableAsBefore(source),),
        )
    )
    if opts.detach_replicas:
        actions += [StartIoThread(host=r, when="this run stopped it") for r in replicas]
        failed = "the step failed or was interrupted after it stopped this IO thread"
        cleanup += [StartIoThread(host=r, when=failed) for r in replicas]
    else:
        waiting = "its IO thread is not running (waits in Connecting) once the source answers"
        actions += [RestartIoThread(host=r, when=waiting) for r in replicas]
    if opts.preflush:
        restore = "it still differs from that value (the step failed before the restart)"
        cleanup.append(RestoreGlobal(host=source, name=PREFLUSH_VARIABLE, when=restore))
    return Step(
        number,
        Action.RESTART_SOURCE,
        f"restart mysqld on source {source}",
        host=source,
        command=command,
        before=(ReplicasCaughtUp(),),
        actions=tuple(actions),
        after=(ReplicasReconnected(),),
        cleanup=tuple(cleanup),
        closing=after_hooks,
    )


def _start_failover(number: int, group: Group) -> Step:
    """Its action is also what the failure policy performs to start MHA after a failure."""
    manager = group.mha.manager.name
    return Step(
        number,
        Action.START_FAILOVER,
        f"start MHA on {manager} again (if it was running before)",
        host=manager,
        command=group.mha.start_command,
        actions=(start_mha(group),),
    )


def _verify(number: int, group: Group, source: str | None = None) -> Step:
    final = source or group.source.name
    return Step(
        number,
        Action.VERIFY,
        "final verification of the whole group"
        + (f" (with {final} as its source)" if final != group.source.name else ""),
        after=(
            TopologyMatches(final),
            *(LagWithin(n.name, group.health.max_lag) for n in group.db_nodes if n.name != final),
            MhaRunning(),
        ),
    )


def _switchover_plan(group: Group, opts: PlanOptions, batch_of: dict[str, int | None]) -> Plan:
    """MHA off; the replicas restarted as usual; the source role moved to the candidate; the
    old source restarted as a replica; (default) the role moved back; MHA on; verify."""

    candidate = choose_candidate(group)
    source = group.source.name
    steps: list[Step] = [_preflight(1, group, opts), _stop_failover(2, group)]
    steps += [
        _restart_replica(len(steps) + 1 + i, group, r.name, batch_of[r.name], "switchover")
        for i, r in enumerate(group.replicas)
        if opts.restarts(r.name)
    ]
    if not opts.restarts(source):  # --only-pending: the source has nothing pending
        steps.append(_start_failover(len(steps) + 1, group))
        steps.append(_verify(len(steps) + 1, group))
        return Plan(group=group.id, account=group.account, name=group.name, steps=tuple(steps))
    steps.append(switch_step(len(steps) + 1, group, source, candidate, opts, restarts_source=True))
    steps.append(restart_old_source(len(steps) + 1, group, source, candidate.name))
    final = candidate.name
    if opts.switch_back:
        back = Candidate(source, "the switch back: the inventory's source")
        steps.append(switch_step(len(steps) + 1, group, candidate.name, back, opts))
        final = source
    steps.append(_start_failover(len(steps) + 1, group))
    steps.append(_verify(len(steps) + 1, group, final))
    return Plan(group=group.id, account=group.account, name=group.name, steps=tuple(steps))
