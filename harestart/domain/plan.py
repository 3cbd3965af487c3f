"""The plan: pure data. ``build_plan(group, options)`` does no I/O.

A plan is an immutable sequence of steps; each step names its action, its host and the gates
that must hold before the run may go on. Gates are typed values (the executor evaluates them
against the adapters); their ``describe()`` is what people and the JSON read.

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

from harestart.domain.group import Group

# --- gates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    def describe(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


@dataclass(frozen=True)
class AllReachable(Gate):
    def describe(self) -> str:
        return "every node answers over SSH and MySQL, and the MHA manager over SSH"


@dataclass(frozen=True)
class TopologyMatches(Gate):
    source: str

    def describe(self) -> str:
        return (
            f"every listed replica replicates from {self.source} (compared by server_id), "
            "both threads running, no replication error"
        )


@dataclass(frozen=True)
class FailoverQuiet(Gate):
    def describe(self) -> str:
        return "MHA is not failing over and not in an error state"


@dataclass(frozen=True)
class MhaStopped(Gate):
    def describe(self) -> str:
        return "masterha_check_status reports NOT_RUNNING"


@dataclass(frozen=True)
class MhaRunning(Gate):
    def describe(self) -> str:
        return "masterha_check_status reports PING_OK (after INITIALIZING_MONITOR)"


@dataclass(frozen=True)
class Restarted(Gate):
    host: str

    def describe(self) -> str:
        return f"{self.host}: mysqld answers again and its Uptime proves it restarted"


@dataclass(frozen=True)
class ThreadsRunning(Gate):
    host: str

    def describe(self) -> str:
        return f"{self.host}: replication IO and SQL threads running"


@dataclass(frozen=True)
class CaughtUp(Gate):
    host: str
    to: str  # what it catches up to, in words

    def describe(self) -> str:
        return f"{self.host}: applied {self.to}"


@dataclass(frozen=True)
class LagWithin(Gate):
    host: str
    max_lag: float

    def describe(self) -> str:
        return f"{self.host}: lag <= {self.max_lag:g} s"


@dataclass(frozen=True)
class DirtyPagesFlushed(Gate):
    """--preflush: a clean buffer pool makes the source's shutdown (its downtime) short."""

    host: str
    max_dirty_pct: float

    def describe(self) -> str:
        return (
            f"{self.host}: pre-flush: innodb_max_dirty_pages_pct=0 until dirty pages <= "
            f"{self.max_dirty_pct:g}% of the buffer pool (or the catch-up timeout); restored after"
        )


@dataclass(frozen=True)
class ReplicasCaughtUp(Gate):
    def describe(self) -> str:
        return "every replica applied the source's current GTID position (before the restart)"


@dataclass(frozen=True)
class WritableAsBefore(Gate):
    host: str

    def describe(self) -> str:
        return (
            f"{self.host}: read_only (and super_read_only, where the server has it) exactly "
            "as before the restart; `SET GLOBAL` restores it if the config brought it back "
            "different"
        )


@dataclass(frozen=True)
class ReplicasDetached(Gate):
    """Idle replication senders hold a MySQL source's shutdown for ~10 s (write downtime):
    stop the replicas' IO threads first and let the senders go. Nothing is lost: writes the
    source acknowledges meanwhile are in its binary log, fetched by GTID auto-position."""

    source: str
    timeout: float

    def describe(self) -> str:
        return (
            "on every replica `STOP REPLICA IO_THREAD` (MariaDB: `STOP SLAVE IO_THREAD`); then "
            f"on {self.source} `KILL` each `Binlog Dump` thread still listed (an idle sender "
            "notices its replica left only at its next heartbeat) and wait up to "
            f"{self.timeout:g} s until none is listed (restarting anyway after that, with a "
            "warning)"
        )


@dataclass(frozen=True)
class ReplicasReconnected(Gate):
    detached: bool = True  # the replicas' IO threads were stopped before the restart

    def describe(self) -> str:
        if self.detached:
            how = (
                "the moment the source answers, on every replica `START REPLICA IO_THREAD` "
                "(MariaDB: `START SLAVE IO_THREAD`)"
            )
        else:
            how = (
                "the moment the source answers, every replica whose IO thread waits in "
                "Connecting gets `STOP`+`START REPLICA IO_THREAD` (MariaDB: `SLAVE`) instead "
                "of waiting for Connect_Retry"
            )
        return (
            f"{how}; then IO and SQL threads running and caught up with the source's position "
            "after its restart"
        )


# --- steps -----------------------------------------------------------------------------------


class Action(enum.StrEnum):
    PREFLIGHT = "preflight"
    STOP_FAILOVER = "stop_failover"
    RESTART_REPLICA = "restart_replica"
    RESTART_SOURCE = "restart_source"
    START_FAILOVER = "start_failover"
    VERIFY = "verify"


@dataclass(frozen=True)
class Step:
    number: int
    action: Action
    summary: str
    host: str | None = None
    command: str | None = None
    gates: tuple[Gate, ...] = ()
    batch: int | None = None  # replica restarts with the same batch run in parallel

    @property
    def key(self) -> str:
        """Stable identity of the step within a plan (for journals and results)."""
        return f"{self.action.value}:{self.host}" if self.host else self.action.value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"number": self.number, "action": self.action.value}
        if self.host is not None:
            d["host"] = self.host
        d["summary"] = self.summary
        if self.command is not None:
            d["command"] = self.command
        if self.batch is not None:
            d["batch"] = self.batch
        d["gates"] = [g.describe() for g in self.gates]
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
    h = group.health
    source = group.source.name
    manager = group.mha.manager.name
    raw: list[tuple[Action, str, str | None, str | None, tuple[Gate, ...]]] = [
        (
            Action.PREFLIGHT,
            "check every node, the replication topology and MHA; change nothing",
            None,
            None,
            (AllReachable(), TopologyMatches(source), FailoverQuiet()),
        ),
        (
            Action.STOP_FAILOVER,
            f"stop MHA on {manager} so it cannot fail over while nodes restart",
            manager,
            group.mha.stop_command,
            (MhaStopped(),),
        ),
    ]
    sizes = replica_batches(len(group.replicas), opts.replica_parallelism, h.min_healthy_replicas)
    batch_of: dict[str, int | None] = {}
    i = 0
    for number, size in enumerate(sizes, start=1):
        for r in group.replicas[i : i + size]:
            batch_of[r.name] = number if max(sizes) > 1 else None
        i += size
    for r in group.replicas:
        b = batch_of[r.name]
        together = f" (batch {b}, in parallel)" if b is not None else ""
        raw.append(
            (
                Action.RESTART_REPLICA,
                f"restart mysqld on replica {r.name}{together}",
                r.name,
                r.restart_command,
                (
                    Restarted(r.name),
                    ThreadsRunning(r.name),
                    CaughtUp(r.name, "everything the source had when the step began"),
                    LagWithin(r.name, h.max_lag),
                ),
            )
        )
    preflush: tuple[Gate, ...] = (
        (DirtyPagesFlushed(source, opts.preflush_max_dirty_pct),) if opts.preflush else ()
    )
    detach: tuple[Gate, ...] = (
        (ReplicasDetached(source, opts.detach_timeout),) if opts.detach_replicas else ()
    )
    raw.append(
        (
            Action.RESTART_SOURCE,
            f"restart mysqld on source {source}",
            source,
            group.source.restart_command,
            (
                ReplicasCaughtUp(),
                *preflush,
                *detach,
                Restarted(source),
                WritableAsBefore(source),
                ReplicasReconnected(detached=opts.detach_replicas),
            ),
        )
    )
    raw.append(
        (
            Action.START_FAILOVER,
            f"start MHA on {manager} again (if it was running before)",
            manager,
            group.mha.start_command,
            (MhaRunning(),),
        )
    )
    raw.append(
        (
            Action.VERIFY,
            "final verification of the whole group",
            None,
            None,
            (
                TopologyMatches(source),
                *(LagWithin(r.name, h.max_lag) for r in group.replicas),
                MhaRunning(),
            ),
        )
    )
    steps = tuple(
        Step(
            number=i,
            action=a,
            summary=s,
            host=host,
            command=cmd,
            gates=gates,
            batch=batch_of.get(host or "") if a is Action.RESTART_REPLICA else None,
        )
        for i, (a, s, host, cmd, gates) in enumerate(raw, start=1)
    )
    return Plan(group=group.id, account=group.account, name=group.name, steps=steps)


# --- rendering -------------------------------------------------------------------------------


def render_text(plan: Plan) -> str:
    lines = [f"Plan for group {plan.group} (account {plan.account}): {len(plan.steps)} steps"]
    for note in plan.notes:
        lines.append(f"  observed: {note}")
    for s in plan.steps:
        lines.append(f"{s.number:>3}. [{s.action.value}] {s.summary}")
        if s.command:
            lines.append(f"       run: {s.command}")
        for g in s.gates:
            lines.append(f"       gate: {g.describe()}")
    return "\n".join(lines)


def render_json(plans: list[Plan]) -> str:
    # Indented for a handful of groups (people read those too); compact for fleets, where the
    # C encoder (used only without indent) keeps `plan` of 1,000 groups well under a second.
    indent = 2 if len(plans) <= 20 else None
    return json.dumps([p.to_dict() for p in plans], indent=indent)
