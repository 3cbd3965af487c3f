"""What every operation's performers and evaluators share: the step's own run facts, the
read-only view gates get, and the one way performers send SQL.

A performer carries out one action type with the whole run (``Waiter``); it sends exactly its
action's statements (``send``) or command. An evaluator checks one gate type and is handed
``Looking``, a view with readers and waits only: the type checker refuses an evaluator that
would change a server or the failover manager.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from harestart.adapters.protocols import CommandResult, FailoverStatus, MysqlReader
from harestart.domain.actions import PlanAction
from harestart.domain.group import Group
from harestart.domain.pending import PendingReport
from harestart.domain.plan.model import Step
from harestart.domain.sql import Slot, SqlValue
from harestart.domain.topology import ReplicaStatus
from harestart.engine.sequencer.memory import RunMemory
from harestart.engine.sequencer.waiting import Clock
from harestart.engine.sequencer.waits import Waiter

T = TypeVar("T")


@dataclass
class StepRun:
    """What one step's gates need to know about that step's own actions."""

    step: Step
    issued_at: float | None = None  # clock time the restart command was sent
    back_at: float | None = None  # clock time the restart was proven
    restarted_before: bool = False  # resume: the interrupted attempt already restarted it
    went_offline: bool = False  # this step set offline_mode=ON (MySQL source, in place)
    command_result: CommandResult | None = None  # of the step's MHA command, if it sent one


class LookingScope(Protocol):
    """The run as a gate sees it: the group, what the run remembers, and readers."""

    @property
    def group(self) -> Group: ...

    @property
    def memory(self) -> RunMemory: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def mha(self) -> FailoverStatus: ...

    def sql(self, name: str) -> MysqlReader: ...

    def option_file(self, name: str) -> str: ...

    def pending(self, name: str) -> PendingReport: ...

    def current_group(self) -> Group: ...

    def source_position(self) -> str: ...


class Looking(Protocol):
    """What an evaluator is handed: the run's reads and waits (``Waiter`` is one)."""

    @property
    def scope(self) -> LookingScope: ...

    def wait(
        self,
        check: Callable[[], T | None],
        *,
        what: str,
        host: str | None,
        timeout: float,
        describe: Callable[[], str] | None = None,
    ) -> T: ...

    def mha_stopped(self, timeout: float) -> None: ...

    def mha_running(self, timeout: float, started: int | None = None) -> None: ...

    def restarted(self, host: str, issued_at: float, timeout: float) -> None: ...

    def threads(self, host: str, timeout: float) -> None: ...

    def caught_up(self, host: str, position: str, timeout: float) -> None: ...

    def lag(self, host: str, max_lag: float, timeout: float) -> None: ...

    def replica_status(self, host: str) -> ReplicaStatus: ...

    def unbroken_replica_status(
        self, host: str, seen: dict[str, ReplicaStatus]
    ) -> ReplicaStatus: ...


# A performer carries out one action type; an evaluator checks one gate type, only looking.
Performer = Callable[[Waiter, Any, StepRun], None]
Evaluator = Callable[[Looking, Any, StepRun], None]


def send(
    w: Waiter,
    act: PlanAction,
    values: Mapping[Slot, SqlValue] | None = None,
    *,
    is_replica: bool = True,
    tolerate: frozenset[int] = frozenset(),
) -> bool:
    """Send exactly ``act.sql(dialect)`` to ``act.host`` (the dialect of the server it
    meets), each slot filled from ``values``; its replica-only statements only when
    ``is_replica``. False when the server refused one with an error in ``tolerate``."""
    dialect = w.scope.sql(act.host).dialect()
    skipped = () if is_replica else act.replica_only(dialect)
    commands = w.scope.commands(act.host)
    accepted = True
    for statement in act.sql(dialect):
        if statement in skipped:
            continue
        filled = statement.fill(values or {}) if statement.slots else statement
        accepted = commands.execute(filled, tolerate=tolerate) and accepted
    return accepted


def on_off(value: bool) -> str:
    """A boolean as the keyword a ``SET GLOBAL`` of a boolean variable takes."""
    return "ON" if value else "OFF"
