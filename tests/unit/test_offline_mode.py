"""MySQL's offline_mode around the source's in-place restart (#24, "MySQL in place"): the
application's sessions are sent away right before the shutdown, so MySQL skips its fixed 2 s
wait for client threads; a failed step gives the server back online; MariaDB gets nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harestart.domain.actions import RestartMysqld, SetOfflineMode
from harestart.domain.dialect import dialect_for
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action, PlanOptions
from harestart.domain.result import RunResult
from harestart.domain.sql import Sql
from harestart.engine.sequencer.executor import Executor
from harestart.engine.sequencer.memory import RunMemory
from harestart.engine.state.journal import Journal, journal_path
from harestart.errors import MysqlError
from tests.unit.fakes import FakeCommands, FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.test_executor import lab_group


def source_step(**options: Any) -> Any:
    plan = build_plan(lab_group(2), PlanOptions(**options))
    return next(s for s in plan.steps if s.action is Action.RESTART_SOURCE)


def test_offline_mode_is_the_last_action_before_the_source_restart_and_undone_on_failure() -> None:
    step = source_step()
    kinds = [type(a) for a in step.actions]
    at = kinds.index(RestartMysqld)
    assert step.actions[at - 1] == SetOfflineMode(
        host="db1", on=True, when="the server has offline_mode and it is OFF"
    )
    off = [a for a in step.cleanup if isinstance(a, SetOfflineMode)]
    assert [a.on for a in off] == [False]
    assert "SET GLOBAL offline_mode = ON" in step.actions[at - 1].describe()


def test_no_offline_mode_leaves_the_plan_as_before() -> None:
    step = source_step(offline_mode=False)
    assert not [a for a in (*step.actions, *step.cleanup) if isinstance(a, SetOfflineMode)]


def test_mysql_has_offline_mode_mariadb_and_old_mysql_do_not() -> None:
    act = SetOfflineMode(host="db1", on=True)
    assert [s.shown() for s in act.sql(dialect_for("9.7.4-2"))] == ["SET GLOBAL offline_mode = ON"]
    assert act.sql(dialect_for("10.11.6-MariaDB")) == ()
    assert act.sql(dialect_for("5.7.4")) == ()
    assert "no offline_mode" in act.what(dialect_for("10.11.6-MariaDB"))


def mysql_world(replicas: int = 2) -> FakeWorld:
    world = FakeWorld.create(replicas)
    for n in world.nodes.values():
        n.version = "8.4.0"
        n.super_read_only = n.read_only
    return world


def run(
    world: FakeWorld, *, journal: Journal | None = None, resume: bool = False, **options: Any
) -> RunResult:
    group = lab_group(len(world.nodes) - 1)
    plan = build_plan(group, PlanOptions(**options))
    ex = Executor(
        group,
        plan,
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        wall=world.clock.now,
        journal=journal,
        resume=resume,
    )
    return ex.run()


def offline_events(world: FakeWorld) -> list[str]:
    return [h for k, h, _ in world.events if k == "set_global" and "offline_mode" in h]


def sent(world: FakeWorld) -> list[str]:
    return [s.shown() for h, s in world.sent if h == "db1" and "offline_mode" in s.text]


def test_mysql_source_goes_offline_right_before_its_restart_which_clears_it() -> None:
    world = mysql_world()
    result = run(world)
    assert result.ok
    assert offline_events(world) == ["db1:offline_mode=ON"]
    went = next(i for i, e in enumerate(world.events) if e[0] == "set_global")
    restarted = next(i for i, e in enumerate(world.events) if e[0] == "restart" and e[1] == "db1")
    assert went < restarted
    assert world.nodes["db1"].variables["offline_mode"] == "OFF"  # the restart cleared it


def test_a_failed_source_restart_puts_offline_mode_back_off() -> None:
    world = mysql_world()
    world.nodes["db1"].restart_fails = True
    result = run(world)
    assert not result.ok
    assert offline_events(world) == ["db1:offline_mode=ON", "db1:offline_mode=OFF"]
    assert world.nodes["db1"].variables["offline_mode"] == "OFF"


def test_offline_mode_someone_else_set_is_left_alone() -> None:
    world = mysql_world()
    world.nodes["db1"].variables["offline_mode"] = "ON"
    world.nodes["db1"].restart_fails = True
    result = run(world)
    assert not result.ok
    assert sent(world) == []  # neither ON (already) nor OFF (not this run's)
    assert world.nodes["db1"].variables["offline_mode"] == "ON"


def test_mariadb_source_gets_no_offline_mode() -> None:
    world = FakeWorld.create(2)
    world.nodes["db1"].restart_fails = True
    assert not run(world).ok
    assert sent(world) == []


def test_a_resumed_run_still_owns_the_offline_mode_its_killed_attempt_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt set offline_mode=ON, its restart failed and its cleanup could not
    # reach db1 (as a kill -9 would leave it: ON, journalled as this run's). The resumed step
    # must not take it for someone else's and leave the application refused by a live source.
    world = mysql_world()
    world.nodes["db1"].restart_fails = True
    real = FakeCommands.execute

    def off_unreachable(self: FakeCommands, statement: Sql, **kw: Any) -> bool:
        if self.name == "db1" and statement.shown() == "SET GLOBAL offline_mode = OFF":
            raise MysqlError("db1", "query", "Lost connection to MySQL server")
        return real(self, statement, **kw)

    monkeypatch.setattr(FakeCommands, "execute", off_unreachable)
    journal = Journal(
        path=journal_path(tmp_path, "1", "lab"), group="lab", account="1", inventory="inv.yml"
    )
    assert not run(world, journal=journal).ok
    assert world.nodes["db1"].variables["offline_mode"] == "ON"
    saved = Journal.load(journal.path)
    assert saved is not None and RunMemory.from_dict(saved.memory).node("db1").offline

    monkeypatch.setattr(FakeCommands, "execute", real)
    assert not run(world, journal=saved, resume=True).ok  # the restart fails again
    assert sent(world)[-1] == "SET GLOBAL offline_mode = OFF"
    assert world.nodes["db1"].variables["offline_mode"] == "OFF"
    done = Journal.load(journal.path)
    assert done is not None and not RunMemory.from_dict(done.memory).node("db1").offline
