"""The switchover strategy: GTID comparison, candidate choice, its plan and its run on fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harestart.domain.group import Group
from harestart.domain.hooks import HookOutcome
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action, PlanOptions
from harestart.domain.result import RunResult, StepStatus
from harestart.domain.switch import (
    LongTransactions,
    SourceStrategy,
    choose_candidate,
    errant_gtids,
    with_source,
)
from harestart.domain.topology import Flavor, MhaState, ReadOnlyState
from harestart.engine.ops.switchover import ResumePoint, resume_point, resumed_part
from harestart.engine.sequencer.executor import Executor
from harestart.engine.sequencer.memory import SwitchMemory
from harestart.engine.state.journal import Journal, journal_path
from harestart.errors import PreflightRefused
from harestart.inventory.load import parse_inventory
from harestart.views.plan import render_text
from tests.unit.fakes import FakeCommands, FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.test_hooks import FakeHookRunner

SWITCH = PlanOptions(source_strategy=SourceStrategy.SWITCHOVER)
U1 = "3E11FA47-71CA-11E1-9E33-C80AA9429562"
U2 = "8a94f357-aab4-11df-86ab-c80aa9429562"


def switch_group(candidate: str | None = "db3", defaults: str = "") -> Group:
    """The lab-like 1+2 group; ``defaults``: more ``defaults:`` entries (``key: value, ``)."""
    cand = f"    candidate: {candidate}\n" if candidate else ""
    text = (
        "defaults: {mysql: {user: harestart, password: pw-for-tests}, "
        "replication: {user: repl, password: repl-secret}, "
        f"{defaults}"
        "health: {restart_timeout: 30, catchup_timeout: 30, failover_timeout: 20}}\n"
        "groups:\n  - id: lab\n    account: '1'\n"
        "    source: {name: db1, address: 127.0.0.1, replication_host: db1}\n"
        "    replicas:\n"
        "      - {name: db2, address: 10.0.0.2}\n"
        "      - {name: db3, address: 10.0.0.3, replication_host: db3}\n"
        f"{cand}"
        "    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}\n"
    )
    return parse_inventory(text, "inv.yml").groups[0]


# --- pure ------------------------------------------------------------------------------------


def test_mysql_errant_gtids_are_the_candidates_set_minus_the_sources() -> None:
    source = f"{U1}:1-100,\n{U2}:1-5"
    assert errant_gtids(f"{U1.lower()}:1-100,{U2}:1-5", source, Flavor.MYSQL) == ()
    assert errant_gtids(f"{U1}:1-90", source, Flavor.MYSQL) == ()
    assert errant_gtids(f"{U1}:1-102:200,{U2}:3", source, Flavor.MYSQL) == (
        f"{U1.lower()}:101-102:200",
    )
    other = "a1b2c3d4-0000-11ef-8000-000000000001"
    assert errant_gtids(f"{U1}:1-10,{other}:1-2", source, Flavor.MYSQL) == (f"{other}:1-2",)


def test_mariadb_errant_gtids_compare_each_domain() -> None:
    source = "0-1-100,1-2-5"
    assert errant_gtids("0-1-100,1-2-5", source, Flavor.MARIADB) == ()
    assert errant_gtids("0-1-98", source, Flavor.MARIADB) == ()
    assert errant_gtids("0-3-101,1-2-5", source, Flavor.MARIADB) == ("0-3-101",)
    assert errant_gtids("0-3-100", source, Flavor.MARIADB) == ("0-3-100",)  # diverged
    assert errant_gtids("0-1-100,7-3-1", source, Flavor.MARIADB) == ("7-3-1",)


def test_candidate_rule_is_said() -> None:
    assert choose_candidate(switch_group()).name == "db3"
    assert "candidate" in choose_candidate(switch_group()).rule
    first = choose_candidate(switch_group(None))
    assert first.name == "db2" and "first replica" in first.rule


def test_with_source_swaps_roles() -> None:
    g = with_source(switch_group(), "db3")
    assert g.source.name == "db3" and g.source.role == "source"
    assert [(r.name, r.role) for r in g.replicas] == [("db2", "replica"), ("db1", "replica")]


def test_a_candidate_that_is_not_a_replica_is_refused_at_load() -> None:
    with pytest.raises(Exception, match="candidate 'db9' is not one of the group's replicas"):
        switch_group("db9")


# --- plan ------------------------------------------------------------------------------------


def test_switchover_plan_order_and_statements() -> None:
    plan = build_plan(switch_group(), SWITCH)
    keys = [s.key for s in plan.steps]
    assert keys == [
        "preflight",
        "stop_failover:mha",
        "restart_replica:db2",
        "restart_replica:db3",
        "switchover:db3",
        "restart_replica:db1",
        "switchover:db1",
        "start_failover:mha",
        "verify",
    ]
    text = render_text(plan)
    assert "`SET GLOBAL super_read_only = ON`" in text
    assert "MASTER_PASSWORD='***'" in text and "repl-secret" not in text
    assert "SOURCE_HOST='db3', SOURCE_PORT=3306" in text
    assert "MASTER_USE_GTID=slave_pos" in text
    assert "`RESET REPLICA ALL`" in text and "`RESET SLAVE ALL`" in text


def test_no_switch_back_ends_with_the_candidate_as_source() -> None:
    plan = build_plan(switch_group(), PlanOptions(source_strategy=SourceStrategy.SWITCHOVER,
                                                  switch_back=False))  # fmt: skip
    assert [s.key for s in plan.steps][-4:] == [
        "switchover:db3",
        "restart_replica:db1",
        "start_failover:mha",
        "verify",
    ]
    assert "db3 as its source" in plan.steps[-1].summary


def test_kill_option_plans_a_conditional_kill() -> None:
    opts = PlanOptions(
        source_strategy=SourceStrategy.SWITCHOVER, long_transactions=LongTransactions.KILL
    )
    text = render_text(build_plan(switch_group(), opts))
    assert "`KILL <thread id>` for each session whose transaction is open longer than 1 s" in text


def test_restart_strategy_plan_is_unchanged_by_default() -> None:
    assert all(s.action is not Action.SWITCHOVER for s in build_plan(switch_group()).steps)


# --- executor on fakes -----------------------------------------------------------------------


def run(
    world: FakeWorld, opts: PlanOptions = SWITCH, *, group: Group | None = None, **kw: Any
) -> RunResult:
    """The executor on the fakes (``kw``: more Executor arguments: journal, hooks...)."""
    group = group or switch_group()
    return Executor(
        group,
        build_plan(group, opts),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        **kw,
    ).run()


def source_world() -> FakeWorld:
    world = FakeWorld.create(2)
    # Configured read-only (a switchover-ready source); the running source is writable.
    world.nodes["db1"].config_read_only = True
    return world


def test_happy_path_switches_and_back() -> None:
    world = source_world()
    result = run(world)
    assert result.ok, result.failure
    assert all(s.status is StepStatus.DONE for s in result.steps)
    assert all(n.restarts == 1 for n in world.nodes.values())
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db1"]
    assert world.nodes["db1"].role == "source"
    assert {world.nodes[r].source_id for r in ("db2", "db3")} == {1}
    assert world.mha_state is MhaState.PING_OK
    kinds = [(k, h) for k, h, _ in world.events]
    ro = kinds.index(("set_read_only", "db1:1"))
    assert ro < kinds.index(("reset_replica", "db3"))


def test_no_switch_back_keeps_the_candidate() -> None:
    world = source_world()
    result = run(world, PlanOptions(source_strategy=SourceStrategy.SWITCHOVER, switch_back=False))
    assert result.ok, result.failure
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db3"]
    assert world.nodes["db1"].source_id == 3 and world.nodes["db1"].read_only


def test_candidate_lagging_is_refused_before_any_change_and_mha_restored() -> None:
    world = source_world()
    world.nodes["db3"].lag = 3  # within max_lag 5, over the switch limit 1
    result = run(world)
    assert not result.ok
    assert result.failure is not None and result.failure.step == "switchover:db3"
    assert "lag" in result.failure.reason or "lagging" in result.failure.reason
    assert not world.nodes["db1"].read_only and world.nodes["db3"].read_only
    assert world.mha_state is MhaState.PING_OK
    assert not [e for e in world.events if e[0] in ("reset_replica", "change_source")]


def test_errant_transactions_refuse_the_switch() -> None:
    world = source_world()
    world.nodes["db3"].errant = "0-3-11"
    result = run(world)
    assert result.failure is not None and "0-3-11" in result.failure.reason
    assert not world.nodes["db1"].read_only


def test_a_gtid_set_the_model_cannot_read_refuses_the_switch() -> None:
    """Refused with the text named (not a ValueError traceback with MHA left stopped)."""
    world = source_world()
    world.nodes["db3"].errant = "0-3-x1"
    result = run(world)
    assert result.failure is not None and result.failure.step == "switchover:db3"
    assert "not a MariaDB GTID position: '0-3-x1'" in result.failure.reason
    assert "refusing the switch (nothing was changed)" in result.failure.reason
    assert not world.nodes["db1"].read_only


def test_long_transaction_refused_by_default_and_killed_by_option() -> None:
    world = source_world()
    world.nodes["db1"].long_trx = [(42, 30)]
    result = run(world)
    assert result.failure is not None and "session 42 open 30 s" in result.failure.reason
    assert not world.nodes["db1"].read_only
    world = source_world()
    world.nodes["db1"].long_trx = [(42, 30)]
    kill = PlanOptions(
        source_strategy=SourceStrategy.SWITCHOVER, long_transactions=LongTransactions.KILL
    )
    assert run(world, kill).ok
    assert ("kill", "db1:42") in [(k, h) for k, h, _ in world.events]


def test_failure_before_the_candidate_is_writable_makes_the_source_writable_again() -> None:
    world = source_world()
    c = world.nodes["db3"]
    original = FakeCommands.reset_replica_all

    def broken(self: FakeCommands) -> None:
        if self.name == "db3":
            raise __import__("harestart.errors").errors.MysqlError("db3", "reset", "boom")
        original(self)

    FakeCommands.reset_replica_all = broken  # type: ignore[method-assign]
    try:
        result = run(world)
    finally:
        FakeCommands.reset_replica_all = original  # type: ignore[method-assign]
    assert result.failure is not None and result.failure.step == "switchover:db3"
    assert not world.nodes["db1"].read_only and c.read_only
    # db3 stopped replicating before the reset failed: MHA stays off (the topology is broken).
    assert world.mha_state is MhaState.NOT_RUNNING


def test_a_source_configured_writable_is_refused_before_any_change() -> None:
    world = FakeWorld.create(2)
    world.nodes["db1"].config_read_only = False
    result = run(world)
    assert result.failure is not None and "starts mysqld writable" in result.failure.reason
    assert not world.nodes["db1"].read_only and world.mha_state is MhaState.PING_OK
    assert all(world.nodes[r].restarts == 1 for r in ("db2", "db3"))
    assert world.nodes["db1"].restarts == 0


def test_configured_read_only_parses_my_print_defaults() -> None:
    from harestart.domain.pending.options import configured_read_only

    def configured(text: str) -> bool | None:
        return configured_read_only(text.splitlines())

    assert configured("--log-bin\n--read-only=1\n") is True
    assert configured("--read_only=ON\n--read_only=0") is False
    assert configured("--super_read_only=ON") is True
    assert configured("--super_read_only=OFF") is None
    assert configured("--server_id=1") is None
    assert configured("--read-only") is True
    # the same option model as pending restarts: mysqld's prefixes count
    assert configured("--loose-read-only=ON") is True
    assert configured("--read-only\n--skip-read-only") is False
    assert configured("--loose-super-read-only") is True


# --- resume mid-switch -----------------------------------------------------------------------


def _interrupt_once(world: FakeWorld, method: str, host: str) -> None:
    """The first statement ``method`` plays on ``host`` is cut short by Ctrl-C (as a kill
    would leave it: the journal holds what was done before)."""
    original = getattr(FakeCommands, method)
    fired: list[bool] = []

    def wrapped(self: FakeCommands, *a: object, **kw: object) -> object:
        if self.name == host and not fired:
            fired.append(True)
            raise KeyboardInterrupt
        return original(self, *a, **kw)

    world.restore = lambda: setattr(FakeCommands, method, original)  # type: ignore[attr-defined]
    setattr(FakeCommands, method, wrapped)


def _run_journalled(world: FakeWorld, journal: Journal, *, resume: bool) -> RunResult:
    return run(world, wall=world.clock.now, journal=journal, resume=resume)


def _journal(tmp_path: Path) -> Journal:
    return Journal(
        path=journal_path(tmp_path, "1", "lab"), group="lab", account="1", inventory="inv.yml"
    )


@pytest.mark.parametrize(
    ("method", "host", "what"),
    [
        ("change_source", "db1", "stopped after db3 became writable: resume re-points"),
    ],
)
def test_resume_mid_switch_finishes_it_with_one_writable_node(
    tmp_path: Path, method: str, host: str, what: str
) -> None:
    world = source_world()
    journal = _journal(tmp_path)
    _interrupt_once(world, method, host)
    try:
        first = _run_journalled(world, journal, resume=False)
    finally:
        world.restore()  # type: ignore[attr-defined]
    assert first.interrupted, what
    assert len([n for n in world.nodes.values() if not n.read_only]) <= 1
    loaded = Journal.load(journal.path)
    assert loaded is not None
    result = _run_journalled(world, loaded, resume=True)
    assert result.ok, (what, result.failure)
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db1"], what
    assert {world.nodes[r].source_id for r in ("db2", "db3")} == {1}
    assert all(n.restarts == 1 for n in world.nodes.values())


def test_stopped_after_the_candidate_left_replication_undoes_the_switch(tmp_path: Path) -> None:
    """db3 stopped replicating, then the run was stopped before it became writable: the step's
    cleanup makes db1 writable again (db3 confirmed read-only); resume refuses, naming db3."""
    world = source_world()
    journal = _journal(tmp_path)
    _interrupt_once(world, "reset_replica_all", "db3")
    try:
        first = _run_journalled(world, journal, resume=False)
    finally:
        world.restore()  # type: ignore[attr-defined]
    assert first.interrupted
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db1"]
    loaded = Journal.load(journal.path)
    assert loaded is not None
    with pytest.raises(PreflightRefused, match="db3: replication threads are not both running"):
        _run_journalled(world, loaded, resume=True)


def test_a_missing_replication_password_refuses_before_any_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """E.g. through the API, where no CLI check ran first: the switch gates read it."""
    import dataclasses

    from harestart.domain.group import PasswordSource, Replication

    monkeypatch.delenv("NO_SUCH_REPL_PW", raising=False)
    group = switch_group()
    group = dataclasses.replace(
        group, replication=Replication("repl", PasswordSource(env="NO_SUCH_REPL_PW"))
    )
    world = source_world()
    result = run(world, group=group)
    assert result.failure is not None and "NO_SUCH_REPL_PW" in result.failure.reason
    assert not world.nodes["db1"].read_only and world.mha_state is MhaState.PING_OK


# --- hooks in a switchover ---------------------------------------------------------------------

HOOKS = (
    "hooks: {before_node_restart: drain.sh, after_node_restart: ready.sh, "
    "before_switch: before.sh, after_switch: after.sh}, "
)


def hooked_switch_group() -> Group:
    return switch_group(defaults=HOOKS)


def run_hooked(world: FakeWorld, hooks: Any) -> RunResult:
    return run(world, group=hooked_switch_group(), hooks=hooks)


def test_switch_hooks_run_around_each_switch_with_the_old_and_new_source() -> None:
    world = source_world()
    hooks = FakeHookRunner(world)
    result = run_hooked(world, hooks)
    assert result.ok, result.failure
    seen = [(c["HARESTART_HOOK"], c["HARESTART_NODE"], c["HARESTART_OLD_SOURCE"],
             c["HARESTART_NEW_SOURCE"], c["HARESTART_ROLE"]) for c in hooks.calls]  # fmt: skip
    assert seen == [
        ("before_node_restart", "db2", "db1", "db1", "replica"),
        ("after_node_restart", "db2", "db1", "db1", "replica"),
        ("before_node_restart", "db3", "db1", "db1", "replica"),
        ("after_node_restart", "db3", "db1", "db1", "replica"),
        ("before_switch", "db1", "db1", "db3", "source"),
        ("after_switch", "db1", "db1", "db3", "replica"),
        # the old source restarts as a replica of db3
        ("before_node_restart", "db1", "db3", "db3", "replica"),
        ("after_node_restart", "db1", "db3", "db3", "replica"),
        ("before_switch", "db3", "db3", "db1", "source"),  # the switch back
        ("after_switch", "db3", "db3", "db1", "replica"),
    ]
    assert {c["HARESTART_STRATEGY"] for c in hooks.calls} == {"switchover"}
    kinds = [(k, h) for k, h, _ in world.events]
    # before_switch before the source turns read-only; after_switch as soon as the candidate
    # left replication (the promotion), before the others are re-pointed to it
    assert kinds.index(("hook:before_switch", "db1")) < kinds.index(("set_read_only", "db1:1"))
    assert kinds.index(("reset_replica", "db3")) < kinds.index(("hook:after_switch", "db1"))
    after_switch = kinds.index(("hook:after_switch", "db1"))
    repointed = [h for k, h in kinds[after_switch:] if k == "start_replica"]
    assert {"db1", "db2"} <= set(repointed[:2]), kinds[after_switch:]


def test_a_failing_before_switch_hook_leaves_the_source_the_writable_source() -> None:
    world = source_world()
    hooks = FakeHookRunner(world)
    hooks.fail[("before_switch", "db1")] = HookOutcome("before.sh", 3, 0.1, "VIP busy\n", 60)
    result = run_hooked(world, hooks)
    assert not result.ok and result.failure is not None
    assert "before_switch" in result.failure.reason and "VIP busy" in result.failure.reason
    assert (
        "the before_switch hook failed (the switch from db1 to db3 did not begin: db1 is still "
        "the writable source)" in result.failure.next_steps[0]
    )
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db1"]
    assert world.nodes["db1"].role == "source" and world.nodes["db1"].restarts == 0
    assert {world.nodes[r].source_id for r in ("db2", "db3")} == {1}
    assert world.mha_state is MhaState.PING_OK  # the failure policy started MHA again
    kinds = [k for k, _h, _ in world.events]
    assert "set_read_only" not in kinds and "reset_replica" not in kinds


def test_killed_while_promoting_resume_finishes_the_promotion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 after db3 stopped replicating but before it became writable: no cleanup ran
    (a killed process runs none), so db1 is read-only and db3 out of replication. resume
    sees db3 holding everything read-only db1 has, finishes the promotion, and the run ends
    as planned (one writable node at every step)."""
    from harestart.domain.actions import RestoreSourceWritable
    from harestart.engine.ops import registry as engine_actions

    world = source_world()
    journal = _journal(tmp_path)
    killed = {**engine_actions.PERFORMERS, RestoreSourceWritable: lambda w, act, st: None}
    monkeypatch.setattr(engine_actions, "PERFORMERS", killed)  # a kill runs no cleanup
    _interrupt_once(world, "reset_replica_all", "db3")
    try:
        first = _run_journalled(world, journal, resume=False)
    finally:
        world.restore()  # type: ignore[attr-defined]
    monkeypatch.undo()
    assert first.interrupted
    assert [n.name for n in world.nodes.values() if not n.read_only] == []  # both read-only
    loaded = Journal.load(journal.path)
    assert loaded is not None
    before = len(world.sent)
    result = _run_journalled(world, loaded, resume=True)
    assert result.ok, result.failure
    assert [n.name for n in world.nodes.values() if not n.read_only] == ["db1"]
    assert {world.nodes[r].source_id for r in ("db2", "db3")} == {1}
    assert all(n.restarts == 1 for n in world.nodes.values())
    # The promotion was finished with the plan's own PromoteCandidate statements.
    from tests.unit.test_plan_complete import not_from_the_plan

    resumed = [(h, s.shown()) for h, s in world.sent[before:]]
    assert ("db3", "SET GLOBAL read_only = OFF") in resumed
    assert not_from_the_plan(build_plan(switch_group(), SWITCH), world, []) == []


# --- where a resumed switch goes on from: a pure question --------------------------------------


_RO, _RW = ReadOnlyState(True, None), ReadOnlyState(False, None)


@pytest.mark.parametrize(
    ("phase", "source", "candidate", "point"),
    [
        ("source_read_only", _RO, _RO, ResumePoint.REDO),  # the candidate never asked
        ("promoting", _RO, _RO, ResumePoint.PROMOTE),  # killed while promoting
        ("promoting", _RO, _RW, ResumePoint.REPOINT),  # it became writable before the kill
        ("promoted", _RO, _RW, ResumePoint.REPOINT),
        ("promoted", _RW, _RW, ResumePoint.REFUSE),  # two writable nodes: a person decides
        ("promoting", _RW, _RO, ResumePoint.REDO),  # the source writable again (undone)
        ("undone", _RO, _RO, ResumePoint.REDO),
        ("done", _RO, _RW, ResumePoint.REDO),
    ],
)
def test_where_a_resumed_switch_goes_on_from(
    phase: str, source: ReadOnlyState, candidate: ReadOnlyState, point: ResumePoint
) -> None:
    sw = SwitchMemory("db1", "db3", phase, "0")
    assert resume_point(sw, "db3", source, candidate) is point
    assert resume_point(sw, "db2", source, candidate) is ResumePoint.REDO  # another switch
    assert resume_point(None, "db3", source, candidate) is ResumePoint.REDO


def test_a_resumed_promotion_performs_the_steps_own_actions() -> None:
    """Killed while promoting: the candidate's proof, then PromoteCandidate and the rest of
    the step's actions from there, all of them the plan's."""
    step = next(
        s for s in build_plan(switch_group(), SWITCH).steps if s.action is Action.SWITCHOVER
    )
    proof, actions = resumed_part(step, ResumePoint.PROMOTE)
    assert [type(g).__name__ for g in proof] == ["CandidateApplied"]
    assert [a.kind for a in actions] == ["promote_candidate", "repoint_replica", "repoint_replica"]
    assert all(a in step.actions for a in actions)
    assert [a.kind for a in resumed_part(step, ResumePoint.REPOINT)[1]] == ["repoint_replica"] * 2
