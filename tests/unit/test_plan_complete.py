"""The plan lists every state-changing statement and command a run sends (against the fakes).

The executor's adapters are wrapped so that every change they are asked for is recorded as
the statement or command the real adapter sends for it (MariaDB's dialect, like the fakes;
the real ``MhaManager``'s commands); each must be found in ``harestart plan``'s text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from harestart.adapters.mha import MhaManager
from harestart.adapters.protocols import CommandResult
from harestart.domain.dialect import SET_SLAVE_POS_FROM_BINLOG, ReplicationSource, dialect_for
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.domain.hooks import HookOutcome
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import PlanOptions
from harestart.domain.topology import ReadOnlyState
from harestart.engine.sequencer.executor import Executor
from harestart.engine.state.journal import Journal, journal_path
from harestart.views.plan import render_text
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.plan_match import BASTION, changes_state, missing_from_plan
from tests.unit.test_executor import lab_group

MARIADB = dialect_for("10.11.6-MariaDB")
Sent = list[tuple[str, str]]


class RecordingShell:
    def __init__(self, inner: FakeShell, sent: Sent) -> None:
        self.inner, self.sent, self.host = inner, sent, inner.host

    def run(self, command: str, **kw: Any) -> CommandResult:
        self.sent.append((self.host, command))
        return self.inner.run(command, **kw)

    def close(self) -> None:
        self.inner.close()


class RecordingProbe:
    """Records what the real PyMysqlProbe would send for each change it is asked for."""

    def __init__(self, inner: Any, sent: Sent) -> None:
        self.inner, self.sent = inner, sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _send(self, *statements: str) -> None:
        self.sent += [(self.inner.name, s) for s in statements]

    def stop_io_thread(self) -> None:
        self._send(MARIADB.stop_io_thread)
        self.inner.stop_io_thread()

    def start_io_thread(self) -> None:
        self._send(MARIADB.start_io_thread)
        self.inner.start_io_thread()

    def restart_io_thread(self) -> None:
        self._send(MARIADB.stop_io_thread, MARIADB.start_io_thread)
        self.inner.restart_io_thread()

    def start_replica(self) -> None:
        self._send(MARIADB.start_replica)
        self.inner.start_replica()

    def set_global(self, name: str, value: float) -> None:
        self._send(f"SET GLOBAL {name} = {float(value)!r}e0")  # as pymysql renders a float
        self.inner.set_global(name, value)

    def set_read_only(self, state: ReadOnlyState) -> None:
        dialect = dialect_for("8.4.0") if state.super_read_only is not None else MARIADB
        self._send(*dialect.set_read_only_statements(state.read_only, state.super_read_only))
        self.inner.set_read_only(state)

    def stop_replica(self) -> None:
        self._send(MARIADB.stop_replica)
        self.inner.stop_replica()

    def reset_replica_all(self) -> None:
        self._send(MARIADB.reset_replica_all)
        self.inner.reset_replica_all()

    def kill_connection(self, thread_id: int) -> None:
        self._send(f"KILL {thread_id}")
        self.inner.kill_connection(thread_id)

    def change_source(self, source: ReplicationSource, password: Any, *, was_source: bool) -> None:
        if was_source:
            self._send(SET_SLAVE_POS_FROM_BINLOG)
        self._send(MARIADB.change_source(source, password).shown())
        self.inner.change_source(source, password, was_source=was_source)

    def kill_binlog_dump_threads(self) -> int:
        killed: int = self.inner.kill_binlog_dump_threads()
        self._send(*(f"KILL {100 + i}" for i in range(killed)))
        return killed


class RecordingConnector:
    def __init__(self, world: FakeWorld, sent: Sent) -> None:
        self.inner, self.sent = FakeConnector(world), sent

    def shell(self, name: str, endpoint: SshEndpoint) -> RecordingShell:
        return RecordingShell(self.inner.shell(name, endpoint), self.sent)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> RecordingProbe:
        return RecordingProbe(self.inner.mysql(name, endpoint), self.sent)

    def close_all(self) -> None:
        pass


class RecordingMha(FakeMha):
    """The fake MHA, recording the commands the real ``MhaManager`` sends for stop/start."""

    def __init__(self, world: FakeWorld, group: Group, sent: Sent) -> None:
        super().__init__(world, FakeShell(world, "mha"))
        m = group.mha
        self.real = MhaManager(
            self.shell,
            config_path=m.config,
            stop_command=m.stop_command,
            start_command=m.start_command,
            status_command=m.status_command,
            log_path=m.log,
        )
        self.sent = sent

    def stop(self) -> CommandResult:
        self.sent.append(("mha", self.real.stop_command))
        return super().stop()

    def start(self) -> CommandResult:
        self.sent.append(("mha", self.real.start_command))
        return super().start()


class RecordingHooks:
    """Every hook run, as a command sent to the bastion (a hook changes what it likes)."""

    def __init__(self, sent: Sent) -> None:
        self.sent = sent

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        self.sent.append((BASTION, command))
        return HookOutcome(command, 0, 0.0, "", timeout)


def run_recorded(
    world: FakeWorld,
    options: PlanOptions,
    journal: Journal | None = None,
    resume: bool = False,
    group: Group | None = None,
) -> tuple[str, Sent, Any]:
    group = group or lab_group(len(world.nodes) - 1)
    plan = build_plan(group, options)
    sent: Sent = []
    result = Executor(
        group,
        plan,
        RecordingConnector(world, sent),
        RecordingMha(world, group, sent),
        clock=world.clock,
        wall=world.clock.now,
        journal=journal,
        resume=resume,
        hooks=RecordingHooks(sent),
    ).run()
    return render_text(plan, verbose=True), sent, result


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
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_change_a_run_sends_is_in_the_plan(name: str) -> None:
    arrange, options = SCENARIOS[name]
    world = FakeWorld.create(3)
    arrange(world)
    text, sent, _ = run_recorded(world, options)
    changes = [s for s in sent if changes_state(s[1])]
    assert changes, "the run changed nothing?"
    assert missing_from_plan(text, sent) == []


def test_the_check_finds_a_statement_the_plan_does_not_show() -> None:
    world = FakeWorld.create(2)
    text, sent, _ = run_recorded(world, PlanOptions(detach_replicas=False))
    assert missing_from_plan(text, [*sent, ("db2", "STOP SLAVE")]) == [("db2", "STOP SLAVE")]
    # The plan without detaching shows no KILL: had the run sent one, it would be caught.
    assert missing_from_plan(text, [("db1", "KILL 7")]) == [("db1", "KILL 7")]


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
    text, sent, result = run_recorded(world, PlanOptions(), resumed, resume=True)
    assert result.ok, result.failure
    assert ("db2", "START SLAVE IO_THREAD") in sent
    assert missing_from_plan(text, sent) == []


def test_every_hook_a_run_runs_is_in_the_plan() -> None:
    from tests.unit.test_hooks import hooked_group

    world = FakeWorld.create(2)
    text, sent, result = run_recorded(world, PlanOptions(), group=hooked_group(2))
    assert result.ok, result.failure
    hooks = [s for s in sent if s[0] == BASTION]
    assert hooks == [(BASTION, "hooks/drain.sh"), (BASTION, "hooks/ready.sh")] * 3
    assert missing_from_plan(text, sent) == []
    # A hook command the plan does not show would be caught.
    assert missing_from_plan(text, [(BASTION, "hooks/other.sh")]) == [(BASTION, "hooks/other.sh")]
    plain = render_text(build_plan(lab_group(2)), verbose=True)
    assert missing_from_plan(plain, hooks) == hooks


@pytest.mark.parametrize("kill", [False, True])
def test_a_switchover_run_sends_only_what_the_plan_shows(kill: bool) -> None:
    from harestart.domain.switch import LongTransactions, SourceStrategy
    from tests.unit.test_switchover import source_world, switch_group

    world = source_world()
    world.nodes["db1"].long_trx = [(42, 30)] if kill else []
    options = PlanOptions(
        source_strategy=SourceStrategy.SWITCHOVER,
        long_transactions=LongTransactions.KILL if kill else LongTransactions.REFUSE,
    )
    text, sent, result = run_recorded(world, options, group=switch_group())
    assert result.ok, result.failure
    statements = {s for _, s in sent}
    assert "RESET SLAVE ALL" in statements and SET_SLAVE_POS_FROM_BINLOG in statements
    assert any(s.startswith("CHANGE MASTER TO") for s in statements)
    assert ("db1", "KILL 42") in sent if kill else True
    assert missing_from_plan(text, sent) == []
