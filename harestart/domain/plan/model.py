"""The plan's types: steps (gates, actions, cleanup), options and the plan itself. Pure data."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harestart.domain.actions import (
    PlanAction,
)
from harestart.domain.gates import (
    Gate,
)
from harestart.domain.group import Group
from harestart.domain.switch import (
    LongTransactions,
    SourceStrategy,
)

if TYPE_CHECKING:
    # Only the annotation: run --only-pending's selection (and the observation and pending
    # models it reads) is imported by the commands that build one, never by `plan`.
    from harestart.domain.plan.only import Only


class Action(enum.StrEnum):
    """The kind of a step (the JSON's ``action``)."""

    PREFLIGHT = "preflight"
    STOP_FAILOVER = "stop_failover"
    RESTART_REPLICA = "restart_replica"
    RESTART_SOURCE = "restart_source"
    SWITCHOVER = "switchover"
    START_FAILOVER = "start_failover"
    VERIFY = "verify"


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
        gates = before.copy()
        for a in actions:
            gates += a.get("then", ())
        d["gates"] = gates + after
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
    # MySQL: offline_mode=ON right before the source's restart, so that its shutdown finds no
    # application session and skips its fixed 2 s wait (see SetOfflineMode).
    offline_mode: bool = True
    # How the source itself is restarted (harestart.domain.switch); None: the inventory's.
    source_strategy: SourceStrategy | None = None
    switch_back: bool = True  # switchover: end with the inventory's source
    switch_max_lag: float = 1.0  # seconds the candidate may lag when a switch begins
    running_updates_limit: float = 1.0  # seconds a transaction on the source may be open
    long_transactions: LongTransactions = LongTransactions.REFUSE
    # run --only-pending: restart only these nodes (None: every node).
    only: Only | None = None

    def restarts(self, name: str) -> bool:
        return self.only is None or self.only.restarts(name)

    def strategy(self, group: Group) -> SourceStrategy:
        return self.source_strategy or SourceStrategy(group.source_strategy)


@dataclass(frozen=True)
class Plan:
    group: str
    account: str
    name: str
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())  # observations from --probe
    # run --only-pending: the nodes not restarted, each "NAME (ROLE)".
    left_running: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "group": self.group,
            "account": self.account,
            "name": self.name,
            "steps": [s.to_dict() for s in self.steps],
        }
        if self.notes:
            d["observed"] = list(self.notes)
        if self.left_running:
            d["not_pending_left_running"] = list(self.left_running)
        return d

    def with_notes(self, notes: tuple[str, ...]) -> Plan:
        return replace(self, notes=notes)
