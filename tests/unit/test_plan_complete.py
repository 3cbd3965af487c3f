"""The plan lists every state-changing statement and command a run sends (against the fakes).

Two proofs. By construction: every statement the fake servers were sent is one of the plan's
actions' ``sql(dialect)`` for that host and its server's dialect (its slots filled), every
command one of its actions' ``command``. As printed: each one is found, quoted, in the plan's
JSON (the ``do`` text people read). The fakes speak MariaDB's words, or MySQL 8.4's on a node
with ``super_read_only``, or a ``version``'s.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from harestart.adapters.protocols import CommandResult, HookProgram
from harestart.domain.actions import PlanAction, StartMha
from harestart.domain.dialect import SET_SLAVE_POS_FROM_BINLOG
from harestart.domain.group import Group
from harestart.domain.hooks import HookOutcome, RunHook
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Plan, PlanOptions
from harestart.domain.result import RunResult
from harestart.domain.switch import LongTransactions, SourceStrategy
from harestart.engine.sequencer.executor import Executor
from harestart.engine.state.journal import Journal, journal_path
from harestart.views.plan import render_json
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.plan_match import BASTION, changes_state, missing_from_plan
from tests.unit.test_executor import lab_group

Sent = list[tuple[str, str]]


class RecordingShell:
    def __init__(self, inner: FakeShell, sent: Sent) -> None:
        self.inner, self.sent, self.host = inner, sent, inner.host

    def run(self, command: str, **kw: Any) -> CommandResult:
        self.sent.append((self.host, command))
        return self.inner.run(command, **kw)

    def connect(self) -> None:
        self.inner.connect()

    def close(self) -> None:
        self.inner.close()


class RecordingConnector(FakeConnector):
    """The fakes, each SSH command recorded (the statements are in ``FakeWorld.sent``)."""

    def __init__(self, world: FakeWorld, sent: Sent) -> None:
        super().__init__(world)
        self.sent = sent

    def shell(self, name: str, endpoint: Any) -> RecordingShell:  # type: ignore[override]
        return RecordingShell(super().shell(name, endpoint), self.sent)


class RecordingHooks:
    """Every hook run, as a command sent to the bastion (a hook changes what it likes)."""

    def __init__(self, sent: Sent) -> None:
        self.sent = sent

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        self.sent.append((BASTION, command))
        return HookOutcome(command, 0, 0.0, "", timeout)

    def start(self, command: str, *, cwd: str, env: Mapping[str, str]) -> HookProgram:
        raise AssertionError("these plans have no persistent hook")


def run_recorded(
    world: FakeWorld,
    options: PlanOptions,
    journal: Journal | None = None,
    resume: bool = False,
    group: Group | None = None,
) -> tuple[Plan, Sent, RunResult]:
    """The run's plan, everything it sent ((host, command) and (host, statement as shown),
    the statements from this run only) and its result."""
    group = group or lab_group(len(world.nodes) - 1)
    plan = build_plan(group, options)
    sent: Sent = []
    before = len(world.sent)
    result = Executor(
        group,
        plan,
        RecordingConnector(world, sent),
        FakeMha(world, RecordingShell(FakeShell(world, "mha"), sent)),  # type: ignore[arg-type]
        clock=world.clock,
        wall=world.clock.now,
        journal=journal,
        resume=resume,
        hooks=RecordingHooks(sent),
    ).run()
    statements = [(h, s.shown()) for h, s in world.sent[before:]]
    return plan, sent + statements, result


def _actions(plan: Plan) -> list[PlanAction]:
    return [a for s in plan.steps for a in (*s.actions, *s.closing, *s.cleanup)]


def not_from_the_plan(plan: Plan, world: FakeWorld, sent: Sent) -> list[tuple[str, str]]:
    """What was sent that no action of the plan gives: the statements, compared with each
    action's ``sql`` for the dialect of the server it went to; the commands, with each
    action's ``command`` (a hook's on the bastion)."""
    out = []
    for host, statement in world.sent:
        dialect = world.nodes[host].dialect()
        templates = [t for a in _actions(plan) if a.host == host for t in a.sql(dialect)]
        if not any(t.admits(statement) for t in templates):
            out.append((host, statement.shown()))
    commands = {(a.host, getattr(a, "command", None)) for a in _actions(plan)}
    commands |= {(BASTION, a.hook.command) for a in _actions(plan) if isinstance(a, RunHook)}
    in_sql = {(h, s.shown()) for h, s in world.sent}
    out += [(h, c) for h, c in sent if changes_state(c) and (h, c) not in commands | in_sql]
    return out


def assert_complete(plan: Plan, world: FakeWorld, sent: Sent) -> None:
    assert not_from_the_plan(plan, world, sent) == []
    assert missing_from_plan(json.loads(render_json([plan])), sent) == []


def _source_comes_back_read_only(world: FakeWorld) -> None:
    src = world.nodes["db1"]
    src.super_read_only = False
    orig_up = world.up

    def up(n: Any) -> bool:
        was_down = n.down_until is not None
        ok = orig_up(n)
        if ok and was_down and n is src:
            n.read_only, n.super_read_only = True, True
        return ok

    world.up = up  # type: ignore[method-assign]


def _speak(world: FakeWorld, version: str) -> None:
    """Every server speaks MySQL ``version``'s words and has super_read_only."""
    for n in world.nodes.values():
        n.version, n.super_read_only = version, n.read_only


SCENARIOS: dict[str, tuple[Callable[[FakeWorld], None], PlanOptions]] = {
    "default": (lambda w: None, PlanOptions()),
    "preflush": (lambda w: None, PlanOptions(preflush=True)),
    "no-detach": (lambda w: None, PlanOptions(detach_replicas=False)),
    "lingering-senders": (
        lambda w: setattr(w, "dump_threads_linger", True),
        PlanOptions(detach_timeout=2),
    ),
    "read-only-restored": (_source_comes_back_read_only, PlanOptions()),
    "source-restart-fails": (
        lambda w: setattr(w.nodes["db1"], "restart_fails", True),
        PlanOptions(preflush=True),
    ),
    "replica-restart-fails": (
        lambda w: setattr(w.nodes["db2"], "restart_fails", True),
        PlanOptions(replica_parallelism=2),
    ),
    "mysql-8.0.21": (lambda w: _speak(w, "8.0.21"), PlanOptions(preflush=True)),
    "mysql-8.4": (lambda w: _speak(w, "8.4.0"), PlanOptions(preflush=True)),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_change_a_run_sends_is_in_the_plan(name: str) -> None:
    arrange, options = SCENARIOS[name]
    world = FakeWorld.create(3)
    arrange(world)
    plan, sent, _ = run_recorded(world, options)
    changes = [s for s in sent if changes_state(s[1])]
    assert changes, "the run changed nothing?"
    assert_complete(plan, world, sent)


def test_the_failure_policy_starts_mha_with_the_plans_action() -> None:
    """A failed replica step: MHA is started again (the topology is healthy) by the
    start_failover step's own StartMha command, the one the plan shows."""
    world = FakeWorld.create(2)
    world.nodes["db3"].restart_fails = True
    plan, sent, result = run_recorded(world, PlanOptions())
    assert result.failure is not None, "the run did not fail"
    assert "MHA was started again" in result.failure.failover_note, result.failure
    (start,) = [a for a in _actions(plan) if isinstance(a, StartMha)]
    assert [c for _, c in sent if "masterha_manager" in c] == [start.command]
    assert_complete(plan, world, sent)


def test_the_check_finds_a_statement_the_plan_does_not_show() -> None:
    world = FakeWorld.create(2)
    plan, sent, _ = run_recorded(world, PlanOptions(detach_replicas=False))
    doc = json.loads(render_json([plan]))
    assert missing_from_plan(doc, [*sent, ("db2", "STOP SLAVE")]) == [("db2", "STOP SLAVE")]
    # The plan without detaching shows no KILL: had the run sent one, it would be caught.
    assert missing_from_plan(doc, [("db1", "KILL 7")]) == [("db1", "KILL 7")]
    assert not_from_the_plan(plan, world, [("db1", "rm -rf /var/lib/mysql")]) == [
        ("db1", "rm -rf /var/lib/mysql")
    ]


def test_a_resume_after_a_kill_sends_only_what_the_plan_shows(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    journal = Journal(
        path=journal_path(tmp_path, "1", "lab"), group="lab", account="1", inventory="inv.yml"
    )
    at_kill: dict[str, bytes] = {}
    real_restart = world.restart

    def restart_and_snapshot(name: str) -> None:
        real_restart(name)
        if name == "db1":
            at_kill["journal"] = journal.path.read_bytes()

    world.restart = restart_and_snapshot  # type: ignore[method-assign]
    assert run_recorded(world, PlanOptions(), journal)[2].ok
    journal.path.write_bytes(at_kill["journal"])
    for r in ("db2", "db3"):
        world.nodes[r].io = "No"
    world.restart = real_restart  # type: ignore[method-assign]
    world.clock.advance(30)
    resumed = Journal.load(journal.path)
    assert resumed is not None
    plan, sent, result = run_recorded(world, PlanOptions(), resumed, resume=True)
    assert result.ok, result.failure
    assert ("db2", "START SLAVE IO_THREAD") in sent
    assert_complete(plan, world, sent)


def test_every_hook_a_run_runs_is_in_the_plan() -> None:
    from tests.unit.test_hooks import hooked_group

    world = FakeWorld.create(2)
    plan, sent, result = run_recorded(world, PlanOptions(), group=hooked_group(2))
    assert result.ok, result.failure
    hooks = [s for s in sent if s[0] == BASTION]
    assert hooks == [(BASTION, "hooks/drain.sh"), (BASTION, "hooks/ready.sh")] * 3
    assert_complete(plan, world, sent)
    doc = json.loads(render_json([plan]))
    # A hook command the plan does not show would be caught.
    assert missing_from_plan(doc, [(BASTION, "hooks/other.sh")]) == [(BASTION, "hooks/other.sh")]
    plain = json.loads(render_json([build_plan(lab_group(2))]))
    assert missing_from_plan(plain, hooks) == hooks


@pytest.mark.parametrize("kill", [False, True])
@pytest.mark.parametrize("version", ["10.11.6-MariaDB", "8.4.0"])
def test_a_switchover_run_sends_only_what_the_plan_shows(kill: bool, version: str) -> None:
    from tests.unit.test_switchover import source_world, switch_group

    world = source_world()
    for n in world.nodes.values():
        n.version = version
        n.super_read_only = False if version.startswith("8") else None
    world.nodes["db1"].long_trx = [(42, 30)] if kill else []
    options = PlanOptions(
        source_strategy=SourceStrategy.SWITCHOVER,
        long_transactions=LongTransactions.KILL if kill else LongTransactions.REFUSE,
    )
    plan, sent, result = run_recorded(world, options, group=switch_group())
    assert result.ok, result.failure
    statements = {s for _, s in sent}
    if version.startswith("10"):
        assert "RESET SLAVE ALL" in statements and SET_SLAVE_POS_FROM_BINLOG in statements
        assert any(s.startswith("CHANGE MASTER TO") for s in statements)
    else:
        assert "RESET REPLICA ALL" in statements and SET_SLAVE_POS_FROM_BINLOG not in statements
        assert any(s.startswith("CHANGE REPLICATION SOURCE TO") for s in statements)
    assert ("db1", "KILL 42") in sent if kill else True
    assert_complete(plan, world, sent)
