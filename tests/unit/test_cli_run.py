"""``harestart run/resume/status`` in-process on the fakes: the run flow and its exit codes.

``cli.main(argv, env=...)`` runs the real CLI (parsing, confirmation, rendering, exit-code
mapping) with an Environment whose connector and failover manager are the scripted fakes,
one FakeWorld per group on a shared manual clock, and a temporary state directory.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog

from harestart import cli
from harestart.adapters.protocols import Connector, FailoverManager
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.domain.result import utc_now
from harestart.domain.topology import MhaState
from harestart.engine import execute as execute_module
from harestart.engine.execute import FRESH_FOR
from harestart.engine.run import Environment
from harestart.engine.sequencer.waiting import ManualClock
from harestart.engine.state.journal import Journal, journal_path
from harestart.engine.state.lock import GroupLock, read_holder
from harestart.errors import ExitCode

from .fakes import FakeCommands, FakeMha, FakeNode, FakeProbe, FakeShell, FakeWorld

ACCOUNT = "1"


def inventory_text(group_ids: list[str]) -> str:
    groups = "".join(
        f"  - id: {g}\n    account: '{ACCOUNT}'\n"
        f"    source: {{name: {g}1, address: 10.0.{i}.1}}\n"
        f"    replicas:\n"
        f"      - {{name: {g}2, address: 10.0.{i}.2}}\n"
        f"      - {{name: {g}3, address: 10.0.{i}.3}}\n"
        f"    mha: {{manager: {{name: mha-{g}, address: 10.0.{i}.9}}, config: /etc/mha/{g.replace(':', '_')}.cnf}}\n"
        for i, g in enumerate(group_ids)
    )
    return (
        "defaults: {mysql: {user: harestart, password: pw-for-tests}, "
        "health: {restart_timeout: 30, catchup_timeout: 30, failover_timeout: 20}}\n"
        f"groups:\n{groups}"
    )


def make_world(prefix: str, clock: ManualClock) -> FakeWorld:
    nodes = {f"{prefix}1": FakeNode(f"{prefix}1", 1, "source")}
    for i in (2, 3):
        nodes[f"{prefix}{i}"] = FakeNode(f"{prefix}{i}", i, "replica", read_only=True)
    return FakeWorld(clock=clock, nodes=nodes)


class RoutingConnector:
    """One connector over several groups' worlds: each node name belongs to one world."""

    def __init__(self, worlds: dict[str, FakeWorld]) -> None:
        self.worlds = worlds

    def _world(self, name: str) -> FakeWorld:
        if name.startswith("mha-"):
            return self.worlds[name.removeprefix("mha-")]
        return next(w for w in self.worlds.values() if name in w.nodes)

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        return FakeShell(self._world(name), name)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        return FakeProbe(self._world(name), name)

    def commands(self, name: str, endpoint: MysqlEndpoint) -> FakeCommands:
        return FakeCommands(self._world(name), name)

    def close_all(self) -> None:
        pass


@dataclass
class Lab:
    """Groups on fakes, their inventory file, the state directory, and the Environment."""

    tmp: Path
    group_ids: list[str]
    clock: ManualClock = field(default_factory=lambda: ManualClock(1000.0))
    worlds: dict[str, FakeWorld] = field(default_factory=dict)
    connectors_opened: int = 0
    # called with each group whenever the engine builds its failover manager (observe, run)
    on_session: list[Callable[[Group], None]] = field(default_factory=list)
    held: list[GroupLock] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.worlds = {g: make_world(g, self.clock) for g in self.group_ids}
        self.inventory = self.tmp / "inv.yml"
        self.inventory.write_text(inventory_text(self.group_ids))
        self.state = self.tmp / "state"

    def connector(self) -> Connector:
        self.connectors_opened += 1
        return RoutingConnector(self.worlds)

    def failover_manager(self, group: Group, connector: Connector) -> FailoverManager:
        for hook in self.on_session:
            hook(group)
        world = self.worlds[group.id]
        return FakeMha(world, FakeShell(world, group.mha.manager.name))

    @property
    def env(self) -> Environment:
        return Environment(
            connector=self.connector,
            failover_manager=self.failover_manager,
            state_dir=self.state,
            clock=self.clock,
            wall=self.clock.now,
        )

    def lock(self, group_id: str) -> GroupLock:
        lock = GroupLock(self.state, ACCOUNT, group_id, command="harestart run").acquire()
        self.held.append(lock)
        return lock

    def journal(self, group_id: str) -> Journal | None:
        return Journal.load(journal_path(self.state, ACCOUNT, group_id))

    def restarts(self, group_id: str) -> list[int]:
        return [n.restarts for n in self.worlds[group_id].nodes.values()]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    labs: list[Lab] = []

    def make(*group_ids: str) -> Lab:
        labs.append(Lab(tmp_path, list(group_ids or ("a",))))
        return labs[-1]

    yield make
    for lab_ in labs:
        for lock in lab_.held:
            lock.release()
    structlog.reset_defaults()  # the CLI configured logging to a file under tmp_path


@pytest.fixture
def harestart(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def run(lab: Lab, *args: str) -> Outcome:
        command, *rest = args
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, str(lab.inventory), *rest], env=lab.env)
        out, err = capsys.readouterr()
        code = exit_.value.code
        return Outcome(code if isinstance(code, int) else -1, out, err)

    return run


Harestart = Callable[..., Outcome]


# --- one group ---------------------------------------------------------------------------------


def test_run_exits_0_with_one_json_result_and_leaves_a_finished_journal(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    doc = r.json()
    assert doc["group"] == "a" and doc["ok"] is True and doc["state"] == "ACTIVE"
    assert doc["log_file"].startswith(str(x.state / "logs" / "run-a-"))
    assert Path(doc["log_file"]).exists()
    # progress and the probed plan go to stderr with --format json
    assert "log file:" in r.err and "[stop_failover]" in r.err and "restart mysqld" in r.err
    assert x.restarts("a") == [1, 1, 1]
    assert x.worlds["a"].mha_state is MhaState.PING_OK
    journal = x.journal("a")
    assert journal is not None and journal.finished
    assert read_holder(x.state, ACCOUNT, "a") == (None, False)  # the lock was released


def test_run_text_prints_the_plan_progress_and_the_summary_on_stdout(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.OK, r.err
    first_progress = re.search(r"^\d\d:\d\d:\d\d 1\. ", r.out, re.MULTILINE)
    assert first_progress is not None
    assert r.out.index("log file:") < r.out.index("[stop_failover]") < first_progress.start()
    assert "group a (account 1): ACTIVE" in r.out and "Restarted 3 nodes" in r.out


def test_run_without_yes_off_a_terminal_is_a_usage_error_and_changes_nothing(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    r = harestart(x, "run")
    assert r.code == ExitCode.USAGE and "pass --yes" in r.err
    assert x.restarts("a") == [0, 0, 0] and x.journal("a") is None


def test_preflight_refused_exits_3_and_nothing_changed(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    x.worlds["a"].nodes["a3"].source_id = 7  # a3 replicates from somewhere else
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.PREFLIGHT_REFUSED
    assert "preflight refused, nothing was changed" in r.err and "a3" in r.err
    assert r.out == ""
    assert x.restarts("a") == [0, 0, 0] and x.worlds["a"].events == []
    assert x.journal("a") is None and read_holder(x.state, ACCOUNT, "a") == (None, False)


def test_another_run_holding_the_lock_exits_4_before_any_host_is_probed(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    x.lock("a")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.LOCKED
    assert "another harestart run holds group a" in r.err and "Traceback" not in r.err
    assert x.connectors_opened == 0  # refused before probing
    r = harestart(x, "resume", "--yes")
    assert r.code == ExitCode.LOCKED and x.connectors_opened == 0


def unfinished_journal(x: Lab, group_id: str) -> Journal:
    j = Journal(journal_path(x.state, ACCOUNT, group_id), group_id, ACCOUNT, str(x.inventory))
    j.started_at, j.outcome = utc_now(), "failed"
    j.step(f"restart_replica:{group_id}2").status = "failed"
    j.save()
    return j


def test_unfinished_run_exits_2_unless_discarded(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    unfinished_journal(x, "a")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE
    assert "group a has an unfinished run" in r.err
    assert f"harestart resume {x.inventory} --group a" in r.err
    assert x.restarts("a") == [0, 0, 0] and x.worlds["a"].mha_state is MhaState.PING_OK
    r = harestart(x, "run", "--yes", "--discard-unfinished", "--format", "json")
    assert r.code == ExitCode.OK and r.json()["ok"] is True


def test_resume_without_an_unfinished_run_exits_2(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    r = harestart(x, "resume", "--yes")
    assert r.code == ExitCode.USAGE and "there is no unfinished run to resume" in r.err
    assert x.restarts("a") == [0, 0, 0]
    assert harestart(x, "run", "--yes").code == ExitCode.OK
    r = harestart(x, "resume", "--yes")  # a finished run is not resumed either
    assert r.code == ExitCode.USAGE and "no unfinished run" in r.err


def test_failed_step_exits_1_then_status_shows_it_and_resume_finishes(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    x.worlds["a"].nodes["a3"].restart_fails = True
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED
    doc = r.json()
    assert doc["ok"] is False and doc["failure"]["step"] == "restart_replica:a3"
    assert (
        f"group a failed at restart_replica:a3; once the cause is fixed, continue with "
        f"`harestart resume {x.inventory} --group a`"
    ) in r.err
    journal = x.journal("a")
    assert journal is not None and not journal.finished and journal.outcome == "failed"

    s = harestart(x, "status", "--format", "json")
    status = s.json()
    assert status["state"] == "ERROR" and status["unfinished_run"]["outcome"] == "failed"

    x.worlds["a"].nodes["a3"].restart_fails = False
    r = harestart(x, "resume", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert r.json()["ok"] is True and r.json()["resumed"] is True
    assert "[stop_failover]" not in r.err  # resume prints no plan: the journal is the plan
    s = harestart(x, "status", "--format", "json")
    assert s.code == ExitCode.OK and s.json()["state"] == "ACTIVE"


def interrupt_on_restart(world: FakeWorld, host: str) -> None:
    """SIGINT to this process right after ``host``'s restart command (a safe point follows)."""
    real = world.restart

    def restart(name: str) -> None:
        real(name)
        if name == host:
            os.kill(os.getpid(), signal.SIGINT)

    world.restart = restart  # type: ignore[method-assign]


def test_interrupt_exits_130_naming_resume_and_resume_completes(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    interrupt_on_restart(x.worlds["a"], "a2")
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.INTERRUPTED
    assert r.json()["interrupted"] == "SIGINT"
    assert "SIGINT received: stopping at the next safe point" in r.err
    assert f"continue with `harestart resume {x.inventory} --group a`" in r.err
    assert x.restarts("a") == [0, 1, 0]
    journal = x.journal("a")
    assert journal is not None and journal.outcome == "interrupted"
    x.worlds["a"].restart = FakeWorld.restart.__get__(x.worlds["a"])  # type: ignore[method-assign]
    x.clock.advance(30)  # a2 came back meanwhile: resume does not restart it again
    r = harestart(x, "resume", "--yes")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [1, 1, 1]


def test_status_exits_0_when_healthy_and_1_when_not(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a", "b")
    r = harestart(x, "status", "--format", "json")
    assert r.code == ExitCode.OK and [d["group"] for d in r.json()] == ["a", "b"]
    x.lock("b")
    x.worlds["a"].nodes["a2"].sql = "No"
    r = harestart(x, "status", "--format", "json")
    docs = {d["group"]: d for d in r.json()}
    assert r.code == ExitCode.RUN_FAILED
    assert docs["a"]["state"] == "ERROR" and docs["a"]["healthy"] is False
    assert docs["b"]["state"] == "REBOOT" and docs["b"]["healthy"] is True


# --- several groups: the worst exit code wins ------------------------------------------------

# What happens to a group after prepare accepted every group (between prepare and execute, or
# during the run).
FATES = ("ok", "refused", "locked", "unfinished", "failed", "interrupted")


def destine(x: Lab, group_id: str, fate: str) -> Callable[[], None] | None:
    """Set the group's fate up; returns what happens to it between prepare and execute."""
    world = x.worlds[group_id]

    def between() -> None:
        if fate == "refused":  # reality changed while the person confirmed (a while)
            world.nodes[f"{group_id}2"].io = "No"
            x.clock.advance(FRESH_FOR + 1)  # the run looks again
        elif fate == "locked":  # another run took the group
            x.lock(group_id)
        elif fate == "unfinished":  # another run failed on it meanwhile
            unfinished_journal(x, group_id)

    if fate == "failed":
        world.nodes[f"{group_id}3"].restart_fails = True
    elif fate == "interrupted":
        interrupt_on_restart(world, f"{group_id}2")
    return between if fate in ("refused", "locked", "unfinished") else None


@pytest.fixture
def between_prepare_and_execute(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Callables run after ``engine.prepare`` accepted the groups, before ``engine.execute``."""
    calls: list[Callable[[], None]] = []
    real = execute_module.execute

    def later(*args: Any, **kw: Any) -> Any:
        for call in calls:
            call()
        return real(*args, **kw)

    monkeypatch.setattr(execute_module, "execute", later)
    return calls


@pytest.mark.parametrize(
    ("fates", "code"),
    [
        (("ok", "ok"), ExitCode.OK),
        (("ok", "refused"), ExitCode.PREFLIGHT_REFUSED),
        (("refused", "locked"), ExitCode.LOCKED),
        (("locked", "unfinished"), ExitCode.USAGE),
        (("unfinished", "failed"), ExitCode.RUN_FAILED),
        (("failed", "interrupted"), ExitCode.INTERRUPTED),
        (("interrupted", "ok"), ExitCode.INTERRUPTED),  # the second group never starts
        (("failed", "unfinished", "locked", "refused", "ok"), ExitCode.RUN_FAILED),
        (("ok", "refused", "unfinished", "locked"), ExitCode.USAGE),
    ],
)
def test_all_groups_the_worst_exit_code_wins(
    lab: Callable[..., Lab],
    harestart: Harestart,
    between_prepare_and_execute: list[Callable[[], None]],
    fates: tuple[str, ...],
    code: ExitCode,
) -> None:
    ids = [chr(ord("a") + i) for i in range(len(fates))]
    x = lab(*ids)
    for g, fate in zip(ids, fates, strict=True):
        later = destine(x, g, fate)
        if later is not None:
            between_prepare_and_execute.append(later)
    r = harestart(x, "run", "--all", "--yes", "--format", "json")
    assert r.code == code, r.err
    docs = r.json()
    stopped = "interrupted" in fates and fates.index("interrupted")
    ran = [
        g
        for i, (g, f) in enumerate(zip(ids, fates, strict=True))
        if f in ("ok", "failed", "interrupted") and (stopped is False or i <= stopped)
    ]
    assert [d["group"] for d in docs] == ran  # a list even for one result, in order
    for g, fate in zip(ids, fates, strict=True):
        says = {
            "refused": f"harestart: group {g}: group {g}: preflight refused",
            "locked": f"harestart: group {g}: another harestart run holds group {g}",
            "unfinished": f"harestart: group {g}: group {g} has an unfinished run",
        }.get(fate)
        if says is not None:
            assert says in r.err
    if "ok" in fates and (stopped is False or fates.index("ok") < stopped):
        assert x.restarts(ids[fates.index("ok")]) == [1, 1, 1]


# Why prepare refuses a group (#22: checked in the judge's order before anything changes).
CAUSES: dict[str, Callable[[Lab, str], object]] = {
    "unhealthy": lambda x, g: setattr(x.worlds[g].nodes[f"{g}2"], "io", "No"),
    "locked": Lab.lock,
    "unfinished": unfinished_journal,
}


@pytest.mark.parametrize(
    ("causes", "code"),
    [
        (("ok", "unhealthy"), ExitCode.PREFLIGHT_REFUSED),
        (("locked", "ok"), ExitCode.LOCKED),
        (("unhealthy", "unfinished", "ok"), ExitCode.USAGE),
        (("unfinished", "locked", "unhealthy"), ExitCode.USAGE),
    ],
)
def test_all_groups_one_refused_by_prepare_refuses_the_command_and_changes_nothing(
    lab: Callable[..., Lab], harestart: Harestart, causes: tuple[str, ...], code: ExitCode
) -> None:
    ids = [chr(ord("a") + i) for i in range(len(causes))]
    x = lab(*ids)
    for g, cause in zip(ids, causes, strict=True):
        if cause != "ok":
            CAUSES[cause](x, g)
    r = harestart(x, "run", "--all", "--yes", "--format", "json")
    assert r.code == code, r.err
    assert r.json() == []  # nothing ran
    for g, cause in zip(ids, causes, strict=True):
        assert x.restarts(g) == [0, 0, 0] and x.worlds[g].events == []
        said = f"harestart: group {g}: "
        assert (said in r.err) is (cause != "ok"), r.err
    assert "[stop_failover]" not in r.err  # no plan shown: nothing to confirm


def test_parallel_groups_run_at_once_and_report_in_inventory_order(
    lab: Callable[..., Lab],
    harestart: Harestart,
    between_prepare_and_execute: list[Callable[[], None]],
) -> None:
    x = lab("a", "b", "c")
    destine(x, "a", "failed")
    locked = destine(x, "b", "locked")  # another run takes b after prepare
    assert locked is not None
    between_prepare_and_execute.append(locked)
    r = harestart(x, "run", "--all", "--parallel-groups", "3", "--yes", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED, r.err
    assert [(d["group"], d["ok"]) for d in r.json()] == [("a", False), ("c", True)]
    assert "harestart: group b: another harestart run holds group b" in r.err
    assert x.restarts("c") == [1, 1, 1]


def test_run_with_group_and_all_is_a_usage_error(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a", "b")
    r = harestart(x, "run", "--all", "--group", "a", "--yes")
    assert r.code == ExitCode.USAGE and "either --group ID or --all" in r.err
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE and "choose --group ID or --all" in r.err
    assert x.connectors_opened == 0


# --- plan --probe ------------------------------------------------------------------------------


def test_plan_probe_annotates_the_plan_or_refuses_with_3(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    r = harestart(x, "plan", "--probe")
    assert r.code == ExitCode.OK, r.err
    assert "observed: a2 (replica): mariadb" in r.out and "MHA PING_OK" in r.out
    x.worlds["a"].nodes["a2"].ssh_unreachable = True
    r = harestart(x, "plan", "--probe")
    assert r.code == ExitCode.PREFLIGHT_REFUSED and "a2 (replica): SSH unreachable" in r.err
    assert all(e[0] not in ("restart", "mha_stop") for e in x.worlds["a"].events)
