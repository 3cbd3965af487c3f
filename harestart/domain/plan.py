"""The plan: pure data. ``build_plan(group, options)`` does no I/O.

A plan is an immutable sequence of steps, and the complete list of what a run will do. Each
step has three parts: gates checked before it acts, its actions (every command and statement
it may send, typed, each with the gates that prove it), and gates checked after; plus the
cleanup it runs at its end whatever happened (each conditional). The executor only carries
these out: ``harestart plan`` prints every state-changing command or statement a run may issue.

Safety rules the planner guarantees (unit-tested as properties):
- preflight first, the failover manager is stopped before any mysqld restart;
- every replica is restarted before the source, every database node exactly once;
- the failover manager is started again after the last restart, then a final verification.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
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
from harestart.domain.commands import detached, surviving_disconnect
from harestart.domain.gates import (
    AllReachable,
    CaughtUp,
    DirtyPagesFlushed,
    FailoverQuiet,
    Gate,
    LagWithin,
    MhaRunning,
    MhaStopped,
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
from harestart.domain.switch import (
    Candidate,
    LongTransactions,
    SourceStrategy,
    choose_candidate,
)

# --- steps -----------------------------------------------------------------------------------


class Action(enum.StrEnum):
    """The kind of a step (the JSON's ``action``)."""

    PREFLIGHT = "preflight"
    STOP_FAILOVER = "stop_failover"
    RESTART_REPLICA = "restart_replica"
    RESTART_SOURCE = "restart_source"
    SWITCHOVER = "switchover"
    START_FAILOVER = "start_failover"
    VERIFY = "verify"


StepKind = Action
PREFLUSH_VARIABLE = "innodb_max_dirty_pages_pct"


@dataclass(frozen=True)
class Step:
    number: int
    action: Action
    summary: str
    host: str | None = None
    command: str | None = None  # the inventory's command for the step's host, if any
    before: tuple[Gate, ...] = ()  # checked before the step acts
    actions: tuple[PlanAction, ...] = ()  # in order, each followed by its own gates
    after: tuple[Gate, ...] = ()  # checked once every action is done
    cleanup: tuple[PlanAction, ...] = ()  # at the end of the step, also when it fails
    # Once the checks after held, in order (the after_node_restart hook); not on failure.
    closing: tuple[PlanAction, ...] = ()
    batch: int | None = None  # replica restarts with the same batch run in parallel

    @property
    def key(self) -> str:
        """Stable identity of the step within a plan (for journals and results)."""
        return f"{self.action.value}:{self.host}" if self.host else self.action.value

    @property
    def gates(self) -> tuple[Gate, ...]:
        """Every gate of the step, in the order they are evaluated."""
        return (
            *self.before,
            *(g for a in self.actions for g in a.then),
            *self.after,
            *(g for a in self.closing for g in a.then),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"number": self.number, "action": self.action.value}
        if self.host is not None:
            d["host"] = self.host
        d["summary"] = self.summary
        if self.command is not None:
            d["command"] = self.command
        if self.batch is not None:
            d["batch"] = self.batch
        before = [g.describe() for g in self.before]
        actions = [a.to_dict() for a in self.actions]
        after = [g.describe() for g in self.after]
        d["checks_before"] = before
        d["actions"] = actions
        d["checks_after"] = after
        if self.closing:
            d["actions_after_checks"] = [a.to_dict() for a in self.closing]
        if self.cleanup:
            d["cleanup"] = [a.to_dict() for a in self.cleanup]
        d["gates"] = [*before, *(g for a in actions for g in a.get("then", ())), *after]
        return d


@dataclass(frozen=True)
class PlanOptions:
    """Choices that change the plan."""

    # How many replicas may restart at once; the group's health.min_healthy_replicas caps it.
    replica_parallelism: int = 1
    # Flush the source's dirty pages before restarting it (shorter shutdown, less downtime).
    preflush: bool = False
    preflush_max_dirty_pct: float = 1.0
    # Stop the replicas' IO threads before the source's restart (see ReplicasDetached).
    detach_replicas: bool = True
    detach_timeout: float = 10.0
    # How the source itself is restarted (harestart.domain.switch); None: the inventory's.
    source_strategy: SourceStrategy | None = None
    switch_back: bool = True  # switchover: end with the inventory's source
    switch_max_lag: float = 1.0  # seconds the candidate may lag when a switch begins
    running_updates_limit: float = 1.0  # seconds a transaction on the source may be open
    long_transactions: LongTransactions = LongTransactions.REFUSE

    def strategy(self, group: Group) -> SourceStrategy:
        return self.source_strategy or SourceStrategy(group.source_strategy)


def replica_batches(n_replicas: int, parallelism: int, min_healthy: int) -> list[int]:
    """Sizes of the replica batches: at most ``parallelism`` at once, and never fewer than
    ``min_healthy`` replicas left running during a batch (one at a time is always allowed)."""
    size = max(1, min(parallelism, n_replicas - min_healthy))
    sizes = []
    left = n_replicas
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


@dataclass(frozen=True)
class Plan:
    group: str
    account: str
    name: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())  # observations from --probe

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "group": self.group,
            "account": self.account,
            "name": self.name,
            "steps": [s.to_dict() for s in self.steps],
        }
        if self.notes:
            d["observed"] = list(self.notes)
        return d

    def with_notes(self, notes: tuple[str, ...]) -> Plan:
        return Plan(self.group, self.account, self.name, self.steps, notes)


def build_plan(group: Group, options: PlanOptions | None = None) -> Plan:
    """The ordered restart plan for one group. Pure: no I/O, same input -> same plan."""
    opts = options or PlanOptions()
    sizes = replica_batches(
        len(group.replicas), opts.replica_parallelism, group.health.min_healthy_replicas
    )
    batch_of: dict[str, int | None] = {}
    i = 0
    for number, size in enumerate(sizes, start=1):
        for r in group.replicas[i : i + size]:
            batch_of[r.name] = number if max(sizes) > 1 else None
        i += size
    if opts.strategy(group) is SourceStrategy.SWITCHOVER:
        return _switchover_plan(group, opts, batch_of)
    n = len(group.replicas)
    steps = (
        _preflight(1, group, opts),
        _stop_failover(2, group),
        *(
            _restart_replica(3 + i, group, r.name, batch_of[r.name])
            for i, r in enumerate(group.replicas)
        ),
        _restart_source(3 + n, group, opts),
        _start_failover(4 + n, group),
        _verify(5 + n, group),
    )
    return Plan(group=group.id, account=group.account, name=group.name, steps=steps)


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


def _stop_failover(number: int, group: Group) -> Step:
    manager = group.mha.manager.name
    stop = StopMha(
        host=manager,
        command=group.mha.stop_command,
        when="MHA is running; a failover in progress fails the step instead",
        then=(MhaStopped(),),
    )
    return Step(
        number,
        Action.STOP_FAILOVER,
        f"stop MHA on {manager} so it cannot fail over while nodes restart",
        host=manager,
        command=group.mha.stop_command,
        actions=(stop,),
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
    manager = group.mha.manager.name
    start = StartMha(
        host=manager,
        command=detached(group.mha.start_command, group.mha.log),
        inventory_command=group.mha.start_command,
        when="MHA was running before the run and is not running now; also after a failed "
        "step if the failure policy allows it and every replica replicates from the source",
        then=(MhaRunning(),),
    )
    return Step(
        number,
        Action.START_FAILOVER,
        f"start MHA on {manager} again (if it was running before)",
        host=manager,
        command=group.mha.start_command,
        actions=(start,),
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
    from harestart.domain.switch_plan import restart_old_source, switch_step

    candidate = choose_candidate(group)
    source = group.source.name
    steps: list[Step] = [_preflight(1, group, opts), _stop_failover(2, group)]
    steps += [
        _restart_replica(len(steps) + 1 + i, group, r.name, batch_of[r.name], "switchover")
        for i, r in enumerate(group.replicas)
    ]
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


# --- rendering -------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    """Every step with every gate (``gate:``) and every action (``do:``) in the order the run
    evaluates and sends them, and what each step does at its end whatever happened
    (``finally:``). Statements and commands are quoted in backticks, exactly as sent."""
    lines = [f"Plan for group {plan.group} (account {plan.account}): {len(plan.steps)} steps"]
    for note in plan.notes:
        lines.append(f"  observed: {note}")
    for s in plan.steps:
        lines.append(f"{s.number:>3}. [{s.action.value}] {s.summary}")
        lines += [f"       gate: {g.describe()}" for g in s.before]
        for a in s.actions:
            lines.append(f"       do: {a.describe()}")
            lines += [f"       gate: {g.describe()}" for g in a.then]
        lines += [f"       gate: {g.describe()}" for g in s.after]
        for a in s.closing:
            lines.append(f"       do: {a.describe()}")
            lines += [f"       gate: {g.describe()}" for g in a.then]
        lines += [f"       finally: {a.describe()}" for a in s.cleanup]
    return "\n".join(lines)


def render_json(plans: list[Plan]) -> str:
    # Indented for a handful of groups (people read those too); compact for fleets, where the
    # C encoder (used only without indent) keeps `plan` of 1,000 groups well under a second.
    indent = 2 if len(plans) <= 20 else None
    return json.dumps([p.to_dict() for p in plans], indent=indent)
