"""``engine.prepare``: one way in, refusals in the judge's order, everything done once (#22).

Each refusal cause is set up next to an unhealthy group (a replica's IO thread stopped, as a
run killed mid-source-step leaves it): the judge's cause wins, before any host is contacted,
and ``harestart run`` and ``POST .../action`` (the API's BackgroundRestarter) give the same
message. A run prepared once builds its plan, observes its hosts, opens its coordination
backend and decides fleet mode once each before anything changes (counting fakes).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from harestart.adapters.protocols import Coordination
from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.plan.model import Plan
from harestart.engine import prepare as prepare_module
from harestart.engine import run as run_module
from harestart.engine.coordination import local_coordination, my_mark, this_host
from harestart.engine.run import Environment
from harestart.engine.sequencer import steps as steps_module
from harestart.engine.state.journal import journal_path
from harestart.engine.state.lock import lock_path
from harestart.errors import ExitCode
from harestart.http.api import Unprocessable
from harestart.http.jobs import BackgroundRestarter
from harestart.inventory.load import load_inventory

from .test_cli_run import ACCOUNT, Harestart, Lab, harestart, lab, unfinished_journal
from .test_coordination import CoordLab, coord_lab

__all__ = ["coord_lab", "harestart", "lab"]  # the fixtures


def replica_stopped(x: Lab) -> None:
    """What a run killed during the source's step leaves: a2's IO thread stopped."""
    x.worlds["a"].nodes["a2"].io = "No"


def live_lock(x: Lab) -> None:
    x.lock("a")


def stale_lock(x: Lab) -> None:
    path = lock_path(x.state, ACCOUNT, "a")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    holder = {"pid": 4242, "user": "ops", "host": "bastion0", "since": "t0", "command": "run"}
    path.write_text(json.dumps(holder))


def unreadable_journal(x: Lab) -> None:
    path = journal_path(x.state, ACCOUNT, "a")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text("{ this is not a journal")


def unfinished_here(x: Lab) -> None:
    unfinished_journal(x, "a")


@dataclasses.dataclass(frozen=True)
class Cause:
    name: str
    setups: tuple[Callable[[Lab], None], ...]
    code: ExitCode
    says: str


CAUSES = [
    Cause("live lock", (live_lock,), ExitCode.LOCKED, "another harestart run holds group a"),
    Cause("unreadable journal", (unreadable_journal,), ExitCode.USAGE, "journal"),
    Cause("unfinished run", (unfinished_here,), ExitCode.USAGE, "group a has an unfinished run"),
    Cause("stale lock", (stale_lock,), ExitCode.LOCKED, "stale lock of a run that died"),
    # two causes at once: the judge's first wins
    Cause("live lock, unfinished", (unfinished_here, live_lock), ExitCode.LOCKED, "holds group"),
    Cause("stale lock, unfinished", (stale_lock, unfinished_here), ExitCode.USAGE, "unfinished"),
    Cause("journal, stale lock", (unreadable_journal, stale_lock), ExitCode.USAGE, "journal"),
]


@pytest.mark.parametrize("cause", CAUSES, ids=lambda c: c.name)
def test_the_judges_cause_wins_over_the_unhealthy_hosts_before_any_host_is_contacted(
    lab: Callable[..., Lab], harestart: Harestart, cause: Cause
) -> None:
    x = lab("a")
    replica_stopped(x)
    for setup in cause.setups:
        setup(x)
    r = harestart(x, "run", "--yes")
    assert r.code == cause.code, r.err
    assert cause.says in r.err and "preflight refused" not in r.err, r.err
    assert "Traceback" not in r.err
    assert x.connectors_opened == 0  # refused before the probe
    assert x.worlds["a"].events == [] and x.restarts("a") == [0, 0, 0]


def test_an_unfinished_run_here_names_the_run_the_bastion_its_state_dir_and_resume(
    lab: Callable[..., Lab], harestart: Harestart
) -> None:
    x = lab("a")
    replica_stopped(x)
    journal = unfinished_journal(x, "a")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE, r.err
    for part in (
        journal.run_id,
        journal.started_at,
        this_host(),
        str(x.state),
        f"`harestart resume {x.inventory} --group a`",
        "MHA may be stopped",
    ):
        assert part in r.err, (part, r.err)
    # only unhealthy: the probe's refusal (exit 3), as before
    y = lab("a")
    y.state = x.tmp / "other-state"
    replica_stopped(y)
    r = harestart(y, "run", "--yes")
    assert r.code == ExitCode.PREFLIGHT_REFUSED and "IO No, SQL Yes" in r.err, r.err


def test_another_bastions_unfinished_run_wins_over_the_unhealthy_hosts(
    coord_lab: CoordLab, harestart: Harestart
) -> None:
    """A (bastion1) was killed during the source's step: its mark stays in the service, the
    replicas' IO threads stay stopped. B's run names A's run, bastion, state directory and the
    resume command, not the stopped threads (exit 2, not 3)."""
    x = coord_lab
    replica_stopped(x)
    backend = x.backend()
    mark = my_mark(
        run_id="deadbeef0001", started_at="2026-12-01T10:00:00Z", state_dir=x.tmp / "bastion1"
    )
    backend.mark_unfinished(x.group(), mark)
    backend.close()
    r = harestart(x.use("bastion2"), "run", "--yes")
    assert r.code == ExitCode.USAGE, r.err
    for part in (
        "deadbeef0001",
        "2026-12-01T10:00:00Z",
        this_host(),
        str(x.tmp / "bastion1"),
        f"`harestart resume {x.inventory} --group a` on {this_host()}",
        f"HARESTART_STATE_DIR={x.tmp / 'bastion1'}",
    ):
        assert part in r.err, (part, r.err)
    assert "preflight refused" not in r.err and x.connectors_opened == 0
    assert x.worlds["a"].events == []


# --- the CLI and the API: the same refusal ----------------------------------------------------


def test_another_bastions_unfinished_run_refuses_the_api_with_the_clis_words(
    coord_lab: CoordLab, harestart: Harestart
) -> None:
    x = coord_lab
    replica_stopped(x)
    backend = x.backend()
    backend.mark_unfinished(
        x.group(),
        my_mark(run_id="deadbeef0002", started_at="2026-12-01T11:00:00Z", state_dir=x.tmp / "b1"),
    )
    backend.close()
    r = harestart(x.use("bastion2"), "run", "--yes")
    assert r.code == ExitCode.USAGE, r.err
    restarter = BackgroundRestarter(str(x.inventory), env=x.env)
    with pytest.raises(Unprocessable) as refused:
        restarter.start(x.group(), "req-1")
    assert restarter.wait(timeout=30)
    assert f"harestart: {refused.value}\n" in r.err and "deadbeef0002" in str(refused.value)
    tenant = refused.value.tenant  # #21: a tenant is not told who or where
    assert tenant == "group a has an unfinished run (ERROR): an operator resumes it"
    assert x.worlds["a"].events == []


SAME = [
    ("unhealthy", (), "preflight refused, nothing was changed"),
    ("live lock", (live_lock,), "another harestart run holds group a"),
    ("unfinished run", (unfinished_here,), "has an unfinished run on this bastion"),
    ("stale lock", (stale_lock,), "stale lock"),
    ("unreadable journal", (unreadable_journal,), "journal"),
]


@pytest.mark.parametrize(("name", "setups", "says"), SAME, ids=[s[0] for s in SAME])
def test_the_cli_and_the_api_give_the_same_refusal(
    lab: Callable[..., Lab],
    harestart: Harestart,
    name: str,
    setups: tuple[Callable[[Lab], None], ...],
    says: str,
) -> None:
    x = lab("a")
    replica_stopped(x)
    for setup in setups:
        setup(x)
    r = harestart(x, "run", "--yes")
    assert r.code != ExitCode.OK and says in r.err, r.err
    (group,) = load_inventory(x.inventory).groups
    restarter = BackgroundRestarter(str(x.inventory), env=x.env)
    with pytest.raises(Unprocessable) as refused:
        restarter.start(group, "req-1")
    assert restarter.wait(timeout=30)
    assert f"harestart: {refused.value}\n" in r.err, (str(refused.value), r.err)
    # a tenant reads what stands in the way, never this server's paths or host
    tenant = refused.value.tenant
    assert tenant is not None and str(x.state) not in tenant and "state directory" not in tenant
    assert x.worlds["a"].events == [] and x.restarts("a") == [0, 0, 0]


def test_the_api_refuses_an_unhealthy_group_with_422_naming_its_problems_for_operators(
    lab: Callable[..., Lab],
) -> None:
    x = lab("a")
    replica_stopped(x)
    (group,) = load_inventory(x.inventory).groups
    restarter = BackgroundRestarter(str(x.inventory), env=x.env)
    with pytest.raises(Unprocessable, match="a2: replication threads are not both running") as x_:
        restarter.start(group, "req-1")
    assert restarter.wait(timeout=30)
    assert (
        x_.value.tenant == "group a is not healthy (ERROR): its problems are listed in GET .../ha/a"
    )
    assert restarter.view(group).last_restart is None  # a refused request is not a restart
    assert x.worlds["a"].events == []


# --- once each ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Counts:
    plans: int = 0
    observations: int = 0
    backends: int = 0
    fleet_decisions: int = 0
    at_first_change: dict[str, int] | None = None

    def snapshot(self) -> dict[str, int]:
        return {
            "plans": self.plans,
            "observations": self.observations,
            "backends": self.backends,
            "fleet_decisions": self.fleet_decisions,
        }


class FirstChange(list[tuple[str, str, float]]):
    """The fake world's event list: notes the counts when the first change happens."""

    def __init__(self, counts: Counts) -> None:
        super().__init__()
        self.counts = counts

    def append(self, event: tuple[str, str, float]) -> None:
        if self.counts.at_first_change is None:
            self.counts.at_first_change = self.counts.snapshot()
        super().append(event)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    counts = Counts()

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            setattr(counts, name, getattr(counts, name) + 1)
            return real(*args, **kw)

        return call

    for module in (prepare_module, run_module):
        monkeypatch.setattr(module, "build_plan", counting("plans", module.build_plan))
    for module in (run_module, steps_module):
        monkeypatch.setattr(module, "observe_group", counting("observations", module.observe_group))
    monkeypatch.setattr(
        prepare_module, "fleet_mode", counting("fleet_decisions", prepare_module.fleet_mode)
    )
    yield counts
    structlog.reset_defaults()


@dataclasses.dataclass
class CountingLab(Lab):
    """A Lab whose coordination backends are counted as they are opened."""

    counts: Counts = dataclasses.field(default_factory=Counts)

    def backend(self, group: Group, state_dir: Path) -> Coordination:
        self.counts.backends += 1
        return local_coordination(group, state_dir)

    @property
    def env(self) -> Environment:
        return dataclasses.replace(super().env, coordination=self.backend)


def test_one_run_builds_its_plan_observes_opens_and_decides_once_before_anything_changes(
    tmp_path: Path, harestart: Harestart, counted: Counts
) -> None:
    x = CountingLab(tmp_path, ["a"], counts=counted)
    x.worlds["a"].events = FirstChange(counted)
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    once = {"plans": 1, "observations": 1, "backends": 1, "fleet_decisions": 1}
    assert counted.at_first_change == once
    assert counted.backends == 1 and counted.plans == 1  # none more for the run itself
    assert x.restarts("a") == [1, 1, 1]


def test_a_resume_is_prepared_once_too_and_observed_by_its_executor(
    tmp_path: Path, harestart: Harestart, counted: Counts
) -> None:
    x = CountingLab(tmp_path, ["a"], counts=counted)
    x.worlds["a"].nodes["a3"].restart_fails = True
    assert harestart(x, "run", "--yes").code == ExitCode.RUN_FAILED
    x.worlds["a"].nodes["a3"].restart_fails = False
    before = counted.snapshot()
    x.worlds["a"].events = FirstChange(counted)
    r = harestart(x, "resume", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert counted.at_first_change is not None
    done = {k: counted.at_first_change[k] - before[k] for k in before}
    assert done == {"plans": 1, "observations": 1, "backends": 1, "fleet_decisions": 1}


def test_an_observation_older_than_fresh_for_is_taken_again_under_the_lock(
    lab: Callable[..., Lab], counted: Counts
) -> None:
    from harestart.engine.execute import FRESH_FOR, execute
    from harestart.engine.prepare import prepare
    from harestart.engine.run import RunRequest

    x = lab("a")
    (group,) = load_inventory(x.inventory).groups
    request = RunRequest(inventory=str(x.inventory))
    prepared = prepare((group,), request, x.env)
    assert counted.observations == 1 and prepared.ready[0].observed is not None
    replica_stopped(x)  # meanwhile (a person took a while to confirm)
    x.clock.advance(FRESH_FOR + 1)
    outcome = execute(prepared)
    assert counted.observations == 2
    assert [type(r.error).__name__ for r in outcome.refusals] == ["PreflightRefused"]
    assert outcome.exit_code == ExitCode.PREFLIGHT_REFUSED and x.restarts("a") == [0, 0, 0]


def test_plans_and_observation_are_what_the_run_uses(lab: Callable[..., Lab]) -> None:
    from harestart.engine.execute import execute
    from harestart.engine.prepare import prepare
    from harestart.engine.run import RunRequest

    x = lab("a")
    (group,) = load_inventory(x.inventory).groups
    prepared = prepare((group,), RunRequest(inventory=str(x.inventory)), x.env)
    (ready,) = prepared.ready
    assert isinstance(ready.plan, Plan) and ready.plan.notes  # annotated with the probe
    assert isinstance(ready.observed, GroupState)
    assert prepared.plans == [ready.plan] and not prepared.fleet and not prepared.refusals
    outcome = execute(prepared)
    assert outcome.exit_code == ExitCode.OK and outcome.results[0].ok
    assert [s.action.value for s in outcome.results[0].steps] == [
        s.action.value for s in ready.plan.steps
    ]
    structlog.reset_defaults()


class LeasedLocks:
    """The local backend as a coordination service sees its locks: no lock outlives its run
    (a lease frees it). Counts the lock checks."""

    stale_locks = False

    def __init__(self, inner: Coordination) -> None:
        self.inner, self.checks = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        self.checks += 1
        self.inner.check_free(group, break_stale=break_stale)


@dataclasses.dataclass
class LeasedLab(Lab):
    """A Lab whose groups' locks are leased (``LeasedLocks``)."""

    backends: list[LeasedLocks] = dataclasses.field(default_factory=list)

    def backend(self, group: Group, state_dir: Path) -> Coordination:
        self.backends.append(LeasedLocks(local_coordination(group, state_dir)))
        return self.backends[-1]

    @property
    def env(self) -> Environment:
        return dataclasses.replace(super().env, coordination=self.backend)


def test_the_lock_is_checked_once_up_front_where_no_lock_can_be_stale(
    tmp_path: Path, harestart: Harestart
) -> None:
    """Judge step 4 (a stale lock) is for backends whose locks can outlive their run: against
    a service it would ask the same question twice (one more request per group)."""
    x = LeasedLab(tmp_path, ["a"])
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert [b.checks for b in x.backends] == [1]
