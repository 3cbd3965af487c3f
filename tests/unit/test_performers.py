"""Each action type's performer sends exactly its action's statements (``act.sql(dialect)``,
its slots filled with what the run knows) or its command, for every dialect family: MariaDB,
MySQL 8.0.22+ (REPLICA words) and MySQL before 8.0.22 (SLAVE words, super_read_only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from harestart.adapters.protocols import CommandResult
from harestart.domain.actions import (
    READ_ONLY_BEFORE,
    REPLICATION_PASSWORD,
    SUPER_READ_ONLY_BEFORE,
    THREAD_ID,
    VALUE_BEFORE,
    WRITABLE_BEFORE_SWITCH,
    KillBinlogDumps,
    KillLongTransactions,
    PlanAction,
    PromoteCandidate,
    RepointReplica,
    RestartIoThread,
    RestoreGlobal,
    RestoreReadOnly,
    RestoreSourceWritable,
    RunCommand,
    SetGlobal,
    SetOfflineMode,
    SetSourceReadOnly,
    StartIoThread,
    StopIoThread,
)
from harestart.domain.hooks import RunHook
from harestart.domain.plan.build import build_plan, start_mha, stop_mha
from harestart.domain.plan.model import Action, PlanOptions, Step
from harestart.domain.secret import Secret
from harestart.domain.sql import Slot, Sql, SqlValue
from harestart.domain.topology import MhaState, ReadOnlyState
from harestart.engine.ops.base import StepRun
from harestart.engine.ops.registry import PERFORMERS, perform
from harestart.engine.sequencer.executor import Executor
from harestart.engine.sequencer.memory import RunMemory, SwitchMemory
from harestart.engine.sequencer.waits import Waiter
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.test_switchover import switch_group

VERSIONS = ["10.11.6-MariaDB", "8.4.0", "8.0.21"]
SWITCH_STEP = Step(9, Action.SWITCHOVER, "switch", host="db3")


class RecordingShell(FakeShell):
    def __init__(self, world: FakeWorld, name: str, ran: list[tuple[str, str]]) -> None:
        super().__init__(world, name)
        self.ran = ran

    def run(self, command: str, **kw: Any) -> CommandResult:
        self.ran.append((self.host, command))
        return super().run(command, **kw)


class RecordingConnector(FakeConnector):
    def __init__(self, world: FakeWorld, ran: list[tuple[str, str]]) -> None:
        super().__init__(world)
        self.ran = ran

    def shell(self, name: str, endpoint: Any) -> RecordingShell:
        return RecordingShell(self.world, name, self.ran)


@dataclass
class Case:
    """An action, what the servers and the run memory are like before it, and the values its
    performer is expected to fill (several: once per fill, in order)."""

    act: PlanAction
    arrange: Callable[[FakeWorld], None] = lambda w: None
    memory: Callable[[RunMemory], RunMemory] = lambda m: m
    fills: list[dict[Slot, SqlValue]] = field(default_factory=lambda: [{}])
    replica: bool = True  # the host is a replica (its replica-only statements are sent)
    mysql_only: bool = False  # MariaDB has no such setting: nothing is sent there


def _switching(m: RunMemory) -> RunMemory:
    return replace(m, switch=SwitchMemory("db1", "db3", "source_read_only", "0-"))


def _source_read_only(w: FakeWorld) -> None:
    w.nodes["db1"].read_only = True


def _restore_read_only(w: FakeWorld) -> None:
    n = w.nodes["db1"]
    n.read_only = True
    n.super_read_only = True if n.super_read_only is not None else None


PASSWORD = Secret("repl-secret")
CASES = {
    "stop_io_thread": Case(StopIoThread(host="db2")),
    "start_io_thread": Case(StartIoThread(host="db2"), memory=lambda m: m.with_detached("db2")),
    "restart_io_thread": Case(
        RestartIoThread(host="db2"), arrange=lambda w: setattr(w.nodes["db2"], "io", "Connecting")
    ),
    "kill_binlog_dumps": Case(
        KillBinlogDumps(host="db1"), fills=[{THREAD_ID: 102}, {THREAD_ID: 103}]
    ),
    "set_global": Case(SetGlobal(host="db1", name="innodb_max_dirty_pages_pct", value=0)),
    "restore_global": Case(
        RestoreGlobal(host="db1", name="innodb_max_dirty_pages_pct"),
        arrange=lambda w: w.nodes["db1"].variables.update(innodb_max_dirty_pages_pct="0.0"),
        memory=lambda m: m.with_node("db1", dirty_pct="75.000000"),
        fills=[{VALUE_BEFORE: 75.0}],
    ),
    "set_offline_mode": Case(SetOfflineMode(host="db1", on=True), mysql_only=True),
    "restore_read_only": Case(
        RestoreReadOnly(host="db1"),
        arrange=_restore_read_only,
        memory=lambda m: m.with_node("db1", read_only=ReadOnlyState(False, False)),
        fills=[{READ_ONLY_BEFORE: "OFF", SUPER_READ_ONLY_BEFORE: "OFF"}],
    ),
    "kill_long_transactions": Case(
        KillLongTransactions(host="db1", limit=1),
        arrange=lambda w: setattr(w.nodes["db1"], "long_trx", [(42, 30), (43, 5)]),
        fills=[{THREAD_ID: 42}, {THREAD_ID: 43}],
    ),
    "set_source_read_only": Case(SetSourceReadOnly(host="db1")),
    "promote_candidate": Case(
        PromoteCandidate(host="db3"), arrange=_source_read_only, memory=_switching
    ),
    "repoint_replica": Case(
        RepointReplica(host="db2", source="db3", source_host="db3", source_port=3306, user="repl"),
        fills=[{REPLICATION_PASSWORD: PASSWORD}],
    ),
    "repoint_old_source": Case(
        RepointReplica(
            host="db1",
            source="db3",
            source_host="db3",
            source_port=3306,
            user="repl",
            was_source=True,
        ),
        fills=[{REPLICATION_PASSWORD: PASSWORD}],
        replica=False,
    ),
    "restore_source_writable": Case(
        RestoreSourceWritable(host="db1"),
        arrange=_source_read_only,
        memory=_switching,
        fills=[{WRITABLE_BEFORE_SWITCH: "OFF"}],
    ),
}


def _world(version: str) -> FakeWorld:
    world = FakeWorld.create(2)
    for n in world.nodes.values():
        n.version = version
        n.super_read_only = n.read_only if not version.endswith("MariaDB") else None
    return world


def _waiter(world: FakeWorld, ran: list[tuple[str, str]] | None = None) -> Waiter:
    group = switch_group()
    ex = Executor(
        group,
        build_plan(group),
        RecordingConnector(world, ran if ran is not None else []),
        FakeMha(world, RecordingShell(world, "mha", ran if ran is not None else [])),
        clock=world.clock,
    )
    return ex.waits


def test_every_sql_action_type_has_a_case_here() -> None:
    """Every action type that sends SQL (the others run a command or a hook) is proven below."""
    sql_types = {t for t in PERFORMERS if not issubclass(t, (RunCommand, RunHook))}
    assert sql_types == {type(c.act) for c in CASES.values()}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", list(CASES))
def test_a_performer_sends_exactly_its_actions_statements(name: str, version: str) -> None:
    case = CASES[name]
    world = _world(version)
    case.arrange(world)
    w = _waiter(world)
    w.scope.remember(case.memory)
    dialect = world.nodes[case.act.host].dialect()
    skipped = () if case.replica else case.act.replica_only(dialect)
    expected = [
        statement.fill(values) if statement.slots else statement
        for values in case.fills
        for statement in case.act.sql(dialect)
        if statement not in skipped
    ]
    assert expected or (case.mysql_only and version.endswith("MariaDB")), (
        "a case that expects nothing proves nothing"
    )
    perform(w, case.act, StepRun(SWITCH_STEP))
    assert [s for h, s in world.sent if h == case.act.host] == expected
    assert [h for h, _ in world.sent] == [case.act.host] * len(expected)


def test_a_statement_is_never_sent_with_a_slot_left() -> None:
    with pytest.raises(ValueError, match="not filled"):
        Sql("KILL %s", (THREAD_ID,)).driver_args()


@pytest.mark.parametrize("version", VERSIONS)
def test_mha_and_restarts_run_exactly_the_plans_commands(version: str) -> None:
    world = _world(version)
    ran: list[tuple[str, str]] = []
    w = _waiter(world, ran)
    group = w.scope.group
    stop, start = stop_mha(group), start_mha(group)
    perform(w, stop, StepRun(SWITCH_STEP))
    assert world.mha_state is MhaState.NOT_RUNNING
    perform(w, start, StepRun(SWITCH_STEP))
    plan = build_plan(group, PlanOptions())
    restart = next(a for s in plan.steps for a in s.actions if a.kind == "restart_mysqld")
    perform(w, restart, StepRun(plan.steps[2]))
    assert ran[-3:] == [
        ("mha", stop.command),
        ("mha", start.command),
        (restart.host, restart.command),  # type: ignore[attr-defined]
    ]
