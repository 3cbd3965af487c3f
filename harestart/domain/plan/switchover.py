"""The switchover strategy's steps: the switch itself and the old source's restart as a replica.

A switch moves the source role from S to a candidate C with harestart's own statements (MHA is
stopped during the run, and the plan lists each statement in each server's words):

1. gates before anything changes: C is a healthy, caught-up replica of S without errant
   transactions; no long transaction on S (refused, or with ``--long-transactions kill`` its
   sessions are killed first);
2. S read-only (``super_read_only`` where the server has it);
3. C applied S's executed GTID set (read once S is read-only);
4. C leaves replication and becomes writable;
5. the user's after_switch hook (the proxy's writer, a VIP moves to C): writes stop from 2 to
   here, so nothing else is done in between;
6. every other replica, and S, replicate from C with GTID auto-position;
7. gates after: exactly one writable node, every replica replicating from C.
If it fails before C is writable, S is made writable again (the step's cleanup). A resumed
switch goes on from where it stood with the same actions: from the promotion (its gate first)
when it was killed while promoting, from the after_switch hook and the re-pointing once C is
the writable source.
"""

from __future__ import annotations

from harestart.domain.actions import (
    KillLongTransactions,
    PlanAction,
    PromoteCandidate,
    RepointReplica,
    RestartMysqld,
    RestoreReadOnly,
    RestoreSourceWritable,
    SetSourceReadOnly,
)
from harestart.domain.commands import surviving_disconnect
from harestart.domain.gates import (
    CandidateApplied,
    CaughtUp,
    Gate,
    LagWithin,
    NoLongTransactions,
    RepointedTo,
    Restarted,
    SoleWritable,
    StartsReadOnly,
    SwitchReady,
    ThreadsRunning,
    WritableAsBefore,
)
from harestart.domain.group import Group, HookPoint
from harestart.domain.hooks import node_hooks, switch_hook
from harestart.domain.plan.model import Action, PlanOptions, Step
from harestart.domain.switch import Candidate, LongTransactions, replication_address


def switch_step(
    number: int,
    group: Group,
    source: str,
    candidate: Candidate,
    opts: PlanOptions,
    *,
    restarts_source: bool = False,
) -> Step:
    """Move the source role from ``source`` to ``candidate`` (see the module's docstring);
    ``restarts_source``: the old source is restarted after it (its config must start it
    read-only)."""
    c = candidate.name
    before: list[Gate] = [SwitchReady(c, source, opts.switch_max_lag)]
    if restarts_source:
        before.append(StartsReadOnly(source))
    actions: list[PlanAction] = []
    quiet = NoLongTransactions(source, opts.running_updates_limit)
    if opts.long_transactions is LongTransactions.KILL:
        older = f"a transaction on {source} is open longer than {opts.running_updates_limit:g} s"
        kill = KillLongTransactions(
            host=source, limit=opts.running_updates_limit, when=older, then=(quiet,)
        )
        actions.append(kill)
    else:
        before.append(quiet)
    # The user's before_switch hook (e.g. drain the writer from a proxy): after the gates,
    # before the source becomes read-only; a failure here changed nothing on the servers.
    actions += [h for h in (switch_hook(group, HookPoint.BEFORE_SWITCH, source, c),) if h]
    resumed = "not already done by the interrupted attempt being resumed"
    applied = CandidateApplied(c, source)
    actions.append(SetSourceReadOnly(host=source, when=resumed, then=(applied,)))
    # A resumed switch killed while promoting: once the candidate is seen holding everything
    # the read-only source has (the gate above), the promotion is finished here.
    actions.append(PromoteCandidate(host=c, when=resumed, then=(SoleWritable(c),)))
    # The user's after_switch hook (e.g. move the proxy's writer or a VIP to the new source):
    # as soon as the new source is writable. Writes stop from the read-only above to here; the
    # re-pointing below (its waits for each node to replicate and catch up took 0.1-1.3 s in
    # bench.writegap) is no part of that gap. The new source holds everything the old one had.
    actions += [h for h in (switch_hook(group, HookPoint.AFTER_SWITCH, source, c),) if h]
    actions += _repoint(group, source, c)
    others = [n.name for n in group.db_nodes if n.name != c]
    failed = f"the step failed before {c} became writable ({c} confirmed read-only)"
    return Step(
        number,
        Action.SWITCHOVER,
        f"switch the source role from {source} to {c} (chosen by {candidate.rule})",
        host=c,
        before=tuple(before),
        actions=tuple(actions),
        after=(SoleWritable(c), *(RepointedTo(r, c) for r in others)),
        cleanup=(RestoreSourceWritable(host=source, when=failed),),
    )


def _repoint(group: Group, source: str, candidate: str) -> list[PlanAction]:
    if group.replication is None:
        raise ValueError(
            f"group {group.id}: the switchover strategy needs `replication: {{user: ..., "
            "password_env: ...}}` in the inventory (the account replicas connect with)"
        )
    host, port = replication_address(group.node(candidate))
    out: list[PlanAction] = []
    for n in group.db_nodes:
        if n.name == candidate:
            continue
        out.append(
            RepointReplica(
                host=n.name,
                source=candidate,
                source_host=host,
                source_port=port,
                user=group.replication.user,
                was_source=n.name == source,
                then=(RepointedTo(n.name, candidate),),
            )
        )
    return out


def restart_old_source(number: int, group: Group, name: str, new_source: str) -> Step:
    """Restart the old source as a replica of ``new_source``, proven like a replica; its
    read-only state is put back if its configuration brings it back writable."""
    command = group.node(name).restart_command
    if command is None:  # the inventory gives every database node one
        raise ValueError(f"{name} has no restart command")
    restart = RestartMysqld(
        host=name,
        command=surviving_disconnect(command),
        inventory_command=command,
        when="not already restarted by the interrupted attempt being resumed",
        then=(Restarted(name),),
    )
    restore = RestoreReadOnly(
        host=name,
        when="it came back writable (its configuration is a source's)",
        then=(WritableAsBefore(name),),
    )
    before_hooks, after_hooks = node_hooks(group, name, source=new_source, strategy="switchover")
    return Step(
        number,
        Action.RESTART_REPLICA,
        f"restart mysqld on the old source {name}, now a replica of {new_source}",
        host=name,
        command=command,
        actions=(*before_hooks, restart, restore),
        after=(
            ThreadsRunning(name),
            CaughtUp(name, f"everything {new_source} had when the step began"),
            LagWithin(name, group.health.max_lag),
        ),
        closing=after_hooks,
    )
