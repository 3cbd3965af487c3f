"""The judge: one rule set for a group's state, and ``status`` and the API agree on it.

Every situation the judge knows is built once (fake hosts, a real lock and journal in a
temporary state directory) and shown both by ``harestart status --format json`` (the CLI in
this process, observing the fakes) and by ``GET /ha/{id}`` of the real API server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from click.testing import CliRunner

from harestart import cli as cli_mod
from harestart.domain.group import Group
from harestart.domain.judge import LockView, RunFacts, RunSummary, judge_group
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.result import GroupStatus, utc_now
from harestart.engine.observe import observe_group
from harestart.engine.run import Environment
from harestart.engine.state.journal import Journal, journal_path
from harestart.engine.state.lock import GroupLock, lock_path
from harestart.http.jobs import BackgroundRestarter
from harestart.inventory.load import load_inventory
from harestart.views.status import read_run_facts

from .fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from .test_api import (
    ACTION,
    DETAIL,
    LIST,
    OPERATOR_TOKEN,
    SEED_ACCOUNT,
    SEED_HA,
    BlockingRestart,
    Env,
    inventory_text,
    make_env,
)

# --- the situations ------------------------------------------------------------------------


@dataclass
class Scene:
    """One situation under construction: the fake hosts, the state directory, the server."""

    env: Env
    state: Path
    fake: BlockingRestart
    stack: ExitStack

    @property
    def world(self) -> FakeWorld:
        return self.env.world


def replica_stopped(s: Scene) -> None:
    s.world.nodes["db2"].io = "No"


def node_unreachable(s: Scene) -> None:
    s.world.nodes["db2"].ssh_unreachable = True


def live_lock(s: Scene) -> None:
    """A ``harestart run`` in a shell holds the group (a live flock)."""
    s.stack.enter_context(GroupLock(s.state, SEED_ACCOUNT, SEED_HA, command="harestart run"))


def stale_lock(s: Scene) -> None:
    """A run that died left its holder in the lock file; nobody holds the flock."""
    path = lock_path(s.state, SEED_ACCOUNT, SEED_HA)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = {"pid": 4242, "user": "ops", "host": "bastion", "since": "t0", "command": "run"}
    path.write_text(json.dumps(holder))


def unfinished_journal(s: Scene) -> None:
    j = Journal(journal_path(s.state, SEED_ACCOUNT, SEED_HA), SEED_HA, SEED_ACCOUNT, "inv.yml")
    j.started_at, j.outcome = utc_now(), "failed"
    j.step("restart_replica:db2").status = "failed"
    j.save()


def unreadable_journal(s: Scene) -> None:
    path = journal_path(s.state, SEED_ACCOUNT, SEED_HA)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{ this is not a journal")


def restart_running_here(s: Scene) -> None:
    """A restart requested through the API runs in the API's process (it holds the lock)."""
    assert s.env.request("POST", ACTION, '{"restart": {}}')[0] == 202


@dataclass(frozen=True)
class Situation:
    name: str
    setups: tuple[Callable[[Scene], None], ...]
    state: GroupStatus
    says: str  # in the reason of both
    healthy: bool = True


SITUATIONS = [
    Situation("healthy idle", (), GroupStatus.ACTIVE, ""),
    Situation("replica stopped", (replica_stopped,), GroupStatus.ERROR, "not healthy", False),
    Situation("node unreachable", (node_unreachable,), GroupStatus.ERROR, "not healthy", False),
    Situation("live lock", (live_lock,), GroupStatus.REBOOT, "harestart run"),
    Situation("stale lock", (stale_lock,), GroupStatus.ERROR, "died holding"),
    Situation("unfinished run", (unfinished_journal,), GroupStatus.ERROR, "did not finish"),
    Situation("unreadable journal", (unreadable_journal,), GroupStatus.ERROR, "journal"),
    Situation("restart running here", (restart_running_here,), GroupStatus.REBOOT, "serve"),
    Situation(
        "unfinished run and a stopped replica",
        (unfinished_journal, replica_stopped),
        GroupStatus.ERROR,
        "did not finish",
        False,
    ),
    Situation(
        "live lock and an unfinished run",
        (unfinished_journal, live_lock),
        GroupStatus.REBOOT,
        "harestart run",
    ),
    Situation(
        "live lock and an unreachable node",
        (node_unreachable, live_lock),
        GroupStatus.REBOOT,
        "harestart run",
        False,
    ),
    Situation(
        "stale lock and an unfinished run",
        (stale_lock, unfinished_journal),
        GroupStatus.ERROR,
        "did not finish",
    ),
    Situation(
        "stale lock and a stopped replica",
        (stale_lock, replica_stopped),
        GroupStatus.ERROR,
        "died holding",
        False,
    ),
    Situation(
        "unreadable journal and a stale lock",
        (unreadable_journal, stale_lock),
        GroupStatus.ERROR,
        "journal",
    ),
    Situation(
        "restart running here and a stopped replica",
        (restart_running_here, replica_stopped),
        GroupStatus.REBOOT,
        "serve",
        False,
    ),
]


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    structlog.configure(processors=[lambda *_: ""], logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


def fake_environment(world: FakeWorld, state_dir: Path) -> Environment:
    """The CLI's hosts are the fakes of ``world``."""
    return Environment(
        connector=lambda: FakeConnector(world),
        failover_manager=lambda g, c: FakeMha(world, FakeShell(world, "mha")),
        state_dir=state_dir,
    )


def status_json(
    monkeypatch: pytest.MonkeyPatch, inventory: Path, world: FakeWorld, state_dir: Path
) -> Any:
    """``harestart status INVENTORY --group SEED_HA --format json`` in this process, its hosts
    the fakes of ``world``."""

    monkeypatch.setattr(cli_mod, "_configure_logging", lambda *a, **k: None)
    args = ["status", str(inventory), "--group", SEED_HA, "--format", "json"]
    result = CliRunner().invoke(
        cli_mod.cli,
        args,
        standalone_mode=False,
        catch_exceptions=False,
        obj=fake_environment(world, state_dir),
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("situation", SITUATIONS, ids=[s.name for s in SITUATIONS])
def test_status_and_the_api_agree(
    situation: Situation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("HARESTART_STATE_DIR", str(state))
    fake = BlockingRestart(state)
    inventory = tmp_path / "inv.yml"
    restarter = BackgroundRestarter(str(inventory), restart=fake)
    env, _ = make_env(tmp_path, restarter=restarter)
    with ExitStack() as stack:
        stack.callback(env.server.stop)
        stack.callback(restarter.wait, 10)
        stack.callback(fake.release.set)
        scene = Scene(env, state, fake, stack)
        for setup in situation.setups:
            setup(scene)

        shown = status_json(monkeypatch, inventory, env.world, state)
        # `harestart status` is an operator's view: the API's for an operator's token (#21)
        status, _, body = env.request("GET", DETAIL, token=OPERATOR_TOKEN)
        assert status == 200, body
        api = json.loads(body)["ha_instance"]
        listed = json.loads(env.request("GET", LIST)[2])["ha_instances"]

    # The same state, reason, health, unfinished run and lock, whoever asks.
    assert shown["state"] == api["state"] == situation.state.value
    assert situation.says in (shown["state_reason"] or "")
    assert situation.says in (api["state_reason"] or "")
    assert shown["healthy"] is api["healthy"] is situation.healthy
    assert shown["problems"] == api["problems"]
    assert shown["unfinished_run"] == api["unfinished_run"]
    assert shown["lock"] == api["lock"]
    if restart_running_here not in situation.setups:
        assert shown["state_reason"] == api["state_reason"]
    else:  # the API knows the run is its own; status sees the same holder of the lock
        assert shown["lock"]["alive"] is True
        assert shown["lock"]["holder"] in shown["state_reason"]
        assert shown["lock"]["holder"] in api["state_reason"]
    # GET /ha stays host-free: it judges the runs only, so health shows in the details.
    (item,) = [h for h in listed if h["id"] == SEED_HA]
    health_only = shown["state_reason"] is not None and shown["state_reason"].startswith("not")
    assert item["state"] == ("ACTIVE" if health_only else shown["state"])


def test_every_rule_of_the_judge_has_a_situation() -> None:
    """The agreement test covers each rule (the reasons the judge can give)."""
    covered = {s.says for s in SITUATIONS}
    assert {"", "not healthy", "harestart run", "serve", "died holding", "did not finish"} <= (
        covered
    )
    assert "journal" in covered
    assert {s.state for s in SITUATIONS} == set(GroupStatus)


def test_status_text_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("HARESTART_STATE_DIR", str(state))
    env, _ = make_env(tmp_path)
    try:
        stale_lock(Scene(env, state, BlockingRestart(state), ExitStack()))
        monkeypatch.setattr(cli_mod, "_configure_logging", lambda *a, **k: None)
        args = ["status", str(env.inventory_file), "--group", SEED_HA]
        obj = fake_environment(env.world, state)
        out = CliRunner().invoke(cli_mod.cli, args, catch_exceptions=False, obj=obj).stdout
    finally:
        env.server.stop()
    assert f"group {SEED_HA} (account {SEED_ACCOUNT}): ERROR, healthy" in out
    assert "  why: a run died holding the group's lock: pid 4242 of ops@bastion" in out
    assert "  lock: STALE lock of a dead run: pid 4242" in out


# --- the rules, pure ----------------------------------------------------------------------


@pytest.fixture
def group(tmp_path: Path) -> Group:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory_text(pw))
    return load_inventory(inv).groups[0]


def observed(group: Group, *, replica_down: bool = False) -> GroupState:
    world = FakeWorld.create(replicas=1)
    world.nodes["db2"].ssh_unreachable = replica_down
    return observe_group(group, FakeConnector(world), FakeMha(world, FakeShell(world, "mha")))


UNFINISHED = RunSummary("r1", "t1", "interrupted", "run r1 started t1, interrupted")
LIVE = LockView("pid 1 of a@b since t (harestart run)", alive=True)
STALE = LockView("pid 2 of a@b since t (harestart run)", alive=False)


@pytest.mark.parametrize(
    ("facts", "replica_down", "state", "reason"),
    [
        (RunFacts(), False, GroupStatus.ACTIVE, None),
        (RunFacts(), True, GroupStatus.ERROR, "not healthy (1 problem): db2 (replica): SSH"),
        (RunFacts(LIVE), True, GroupStatus.REBOOT, f"another harestart run holds the group ({LIVE.holder})"),
        (RunFacts(LockView(None, alive=True)), False, GroupStatus.REBOOT, "(an unknown process)"),
        (RunFacts(running_here=True), False, GroupStatus.REBOOT, "requested through this API"),
        (RunFacts(STALE, UNFINISHED, "bad"), False, GroupStatus.ERROR, "journal cannot be used: bad"),
        (RunFacts(STALE, UNFINISHED), True, GroupStatus.ERROR, "did not finish: run r1 started"),
        (RunFacts(STALE), True, GroupStatus.ERROR, f"died holding the group's lock: {STALE.holder}"),
    ],
)  # fmt: skip
def test_rules_in_order(
    group: Group, facts: RunFacts, replica_down: bool, state: GroupStatus, reason: str | None
) -> None:
    v = judge_group(group, observed(group, replica_down=replica_down), facts)
    assert v.state is state and v.observed
    assert v.reason == reason if reason is None else reason in (v.reason or "")
    assert v.healthy is not replica_down  # problems are listed whatever the state
    assert any("db2" in p for p in v.problems) is replica_down


def test_without_an_observation_only_runs_are_judged(group: Group) -> None:
    assert judge_group(group, None, RunFacts()).state is GroupStatus.ACTIVE
    v = judge_group(group, None, RunFacts(unfinished=UNFINISHED))
    assert v.state is GroupStatus.ERROR and not v.observed and v.problems == ()


def test_lock_and_unfinished_documents() -> None:
    assert LockView().to_dict() is None
    assert STALE.to_dict() == {
        "holder": STALE.holder,
        "alive": False,
        "stale": True,
        "backend": "local",
    }
    assert LockView(None, alive=True, backend="etcd3+http").to_dict() == {
        "holder": "an unknown process",
        "alive": True,
        "stale": False,
        "backend": "etcd3+http",
    }
    assert UNFINISHED.to_dict("inv.yml", "g1")["resume"] == "harestart resume inv.yml --group g1"


@pytest.mark.parametrize("text", ["{ not json", "[]", '{"version": 99}', '{"version": 1}'])
def test_any_unusable_journal_is_a_journal_error(group: Group, tmp_path: Path, text: str) -> None:
    path = journal_path(tmp_path, group.account, group.id)
    path.parent.mkdir(parents=True)
    path.write_text(text)
    facts = read_run_facts(tmp_path, group)
    assert facts.journal_error is not None and str(path) in facts.journal_error
    assert judge_group(group, None, facts).state is GroupStatus.ERROR


def test_an_unreachable_source_is_a_problem_too(group: Group) -> None:
    state = observed(group)
    down = GroupState(
        group=state.group,
        nodes=(NodeState("db1", "source", ssh_error="timed out"), *state.nodes[1:]),
        mha=state.mha,
        mha_error=state.mha_error,
    )
    v = judge_group(group, down, RunFacts())
    assert v.state is GroupStatus.ERROR and any("db1" in p for p in v.problems)
