"""``run --only-pending`` (#23): which nodes a run restarts, what its plan says, and the run on
the fakes (the CLI, one group and ``--all``): only the pending nodes restart, a group with
nothing pending is skipped ("nothing pending", exit 0, no lock, MHA untouched), and a node
still pending after its restart fails its step with the reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from harestart.adapters.protocols import MysqlReader, RemoteShell
from harestart.domain.gates import NotPending
from harestart.domain.group import Group, Node
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.pending.model import PendingReport, Reason, ReasonKind, unknown_report
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action, PlanOptions
from harestart.domain.plan.only import select_pending
from harestart.domain.switch import SourceStrategy
from harestart.domain.topology import ServerInfo
from harestart.engine import observe as observe_module
from harestart.engine.prepare import resumed_plan
from harestart.engine.sequencer import scope as scope_module
from harestart.errors import ExitCode
from harestart.views.plan import render_text

from .test_cli_run import Harestart, Lab, harestart, lab
from .test_executor import lab_group
from .test_fleet import FleetLab, fleet_lab
from .test_fleet import harestart as fleet_cli
from .test_switchover import switch_group

__all__ = ["fleet_lab", "harestart", "lab"]  # the fixtures

CONFIG = Reason(
    ReasonKind.CONFIG,
    "table_open_cache_instances",
    "table_open_cache_instances: the option file says 9, mysqld runs 8 (changes only at a restart)",
    "9",
    "8",
)
MARK = Reason(ReasonKind.MARK, "", "marked by ops: kernel update")
NOTHING = PendingReport()


def state(group: Group, **reports: PendingReport | None) -> GroupState:
    """An observation with detection: each node's report (nothing pending unless given)."""
    nodes = tuple(
        NodeState(n.name, n.role, pending=reports.get(n.name, NOTHING)) for n in group.db_nodes
    )
    return GroupState(group.id, nodes, None)


def pending(*reasons: Reason) -> PendingReport:
    return PendingReport(pending_restart=reasons)


def restarted(plan_steps: tuple[object, ...]) -> list[tuple[str, str | None]]:
    return [
        (s.action.value, s.host)  # type: ignore[attr-defined]
        for s in plan_steps
        if s.action in (Action.RESTART_REPLICA, Action.RESTART_SOURCE, Action.SWITCHOVER)  # type: ignore[attr-defined]
    ]


# --- the plan ---------------------------------------------------------------------------------


def test_a_pending_replica_alone_is_restarted_and_checked_again() -> None:
    group = lab_group(2)
    only = select_pending(group, state(group, db2=pending(CONFIG)))
    plan = build_plan(group, PlanOptions(only=only))
    assert restarted(plan.steps) == [("restart_replica", "db2")]
    assert [s.action for s in plan.steps][:2] == [Action.PREFLIGHT, Action.STOP_FAILOVER]
    assert [s.action for s in plan.steps][-2:] == [Action.START_FAILOVER, Action.VERIFY]
    assert [s.number for s in plan.steps] == list(range(1, len(plan.steps) + 1))
    step = next(s for s in plan.steps if s.host == "db2")
    assert "pending: config: table_open_cache_instances" in step.summary
    assert step.after[-1] == NotPending("db2")
    assert plan.left_running == ("db1 (source)", "db3 (replica)")
    text = render_text(plan)
    assert "not pending: left running: db1 (source)" in text
    assert "not pending: left running: db3 (replica)" in text
    assert plan.to_dict()["not_pending_left_running"] == ["db1 (source)", "db3 (replica)"]


def test_a_pending_source_alone_restarts_only_the_source_and_a_mark_is_not_checked_again() -> None:
    group = lab_group(2)
    only = select_pending(group, state(group, db1=pending(MARK)))
    plan = build_plan(group, PlanOptions(only=only))
    assert restarted(plan.steps) == [("restart_source", "db1")]
    step = next(s for s in plan.steps if s.action is Action.RESTART_SOURCE)
    assert "pending: mark: marked by ops" in step.summary
    assert not any(isinstance(g, NotPending) for g in step.gates)  # a restart does not end a mark


def test_switchover_switches_only_when_the_source_is_pending() -> None:
    group = switch_group()
    strategy = PlanOptions(source_strategy=SourceStrategy.SWITCHOVER)
    replica_only = select_pending(group, state(group, db2=pending(CONFIG)))
    plan = build_plan(
        group, PlanOptions(source_strategy=SourceStrategy.SWITCHOVER, only=replica_only)
    )
    assert restarted(plan.steps) == [("restart_replica", "db2")]
    source = select_pending(group, state(group, db1=pending(CONFIG)))
    plan = build_plan(group, PlanOptions(source_strategy=SourceStrategy.SWITCHOVER, only=source))
    full = build_plan(group, strategy)
    # the switch, the old source restarted as a replica, the switch back; no replica restarted
    assert restarted(plan.steps) == [
        (s.action.value, s.host)
        for s in full.steps
        if s.action is Action.SWITCHOVER or (s.action is Action.RESTART_REPLICA and s.host == "db1")
    ]
    old_source = next(
        s for s in plan.steps if s.host == "db1" and s.action is Action.RESTART_REPLICA
    )
    assert "pending: config" in old_source.summary and old_source.after[-1] == NotPending("db1")


def test_nothing_pending_selects_nothing() -> None:
    group = lab_group(2)
    assert select_pending(group, state(group)).empty


@pytest.mark.parametrize(("unknown_pending", "chosen"), [(True, ["db3"]), (False, [])])
def test_unknown_counts_as_pending_unless_skipped(unknown_pending: bool, chosen: list[str]) -> None:
    group = lab_group(2)
    observed = state(
        group, db3=unknown_report("cannot check the host: sudo: a password is required")
    )
    only = select_pending(group, observed, unknown_pending=unknown_pending)
    assert [n.node for n in only.nodes] == chosen
    assert all(not n.recheck for n in only.nodes)


def test_a_node_not_observed_for_pending_restarts_is_unknown() -> None:
    group = lab_group(2)
    observed = GroupState(group.id, tuple(NodeState(n.name, n.role) for n in group.db_nodes), None)
    assert [n.node for n in select_pending(group, observed).nodes] == ["db1", "db2", "db3"]
    assert select_pending(group, observed, unknown_pending=False).empty


def test_a_resume_restarts_the_nodes_its_journal_has() -> None:
    group = lab_group(2)
    interrupted = build_plan(
        group, PlanOptions(only=select_pending(group, state(group, db3=pending(CONFIG))))
    )
    plan = resumed_plan(group, PlanOptions(), {s.key for s in interrupted.steps})
    assert [s.key for s in plan.steps] == [s.key for s in interrupted.steps]
    full = build_plan(group)
    assert resumed_plan(group, PlanOptions(), {s.key for s in full.steps}) == full


# --- the run, on the fakes --------------------------------------------------------------------


@dataclass
class Detection:
    """What detection reports per node: ``pending`` until the node restarts (``refused``: also
    after, as when mysqld refused the option file's value). Records each node asked."""

    lab: Lab
    pending: dict[str, PendingReport] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)

    def __call__(
        self,
        node: Node,
        shell: RemoteShell,
        probe: MysqlReader,
        info: ServerInfo,
        *,
        unreachable: str | None = None,
    ) -> tuple[PendingReport, str | None]:
        self.asked.append(node.name)
        world = next(w for w in self.lab.worlds.values() if node.name in w.nodes)
        fresh = world.nodes[node.name].restarts > 0 and node.name not in self.refused
        return (NOTHING if fresh else self.pending.get(node.name, NOTHING)), None


@pytest.fixture
def detection(monkeypatch: pytest.MonkeyPatch) -> Callable[[Lab], Detection]:
    """The one detection function, answered by a ``Detection`` for the lab's nodes."""

    def make(x: Lab) -> Detection:
        d = Detection(x)
        monkeypatch.setattr(observe_module, "detect", d)
        monkeypatch.setattr(scope_module, "detect_pending", d)
        return d

    return make


def test_only_the_pending_replica_restarts_and_is_checked_again(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a")
    d = detection(x)
    d.pending["a3"] = pending(CONFIG)
    r = harestart(x, "run", "--yes", "--only-pending", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [0, 0, 1]
    assert r.json()["ok"] is True
    assert "not pending: left running: a1 (source)" in r.err
    assert d.asked.count("a3") == 2  # the observation, and the check after its restart


def test_a_plain_run_detects_nothing(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a")
    d = detection(x)
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.OK, r.err
    assert d.asked == [] and x.restarts("a") == [1, 1, 1]


def test_a_value_mysqld_refused_fails_the_step_with_the_reason(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a")
    d = detection(x)
    d.pending["a2"], d.refused = pending(CONFIG), {"a2"}
    r = harestart(x, "run", "--yes", "--only-pending", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED
    failure = r.json()["failure"]
    assert "still pending after its restart" in str(failure)
    assert "table_open_cache_instances" in str(failure)
    assert x.restarts("a") == [0, 1, 0]


def test_nothing_pending_skips_the_group_without_a_lock_or_mha(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a")
    detection(x)
    r = harestart(x, "run", "--only-pending")  # no --yes needed: nothing to confirm
    assert r.code == ExitCode.OK, r.err
    assert "group a: nothing pending: not restarted" in r.out
    assert x.restarts("a") == [0, 0, 0] and x.journal("a") is None
    assert not any(e[0].startswith("mha") for e in x.worlds["a"].events)
    r = harestart(x, "run", "--only-pending", "--format", "json")
    assert r.json() == {"group": "a", "account": "1", "ok": True, "skipped": "nothing pending"}


@pytest.mark.parametrize(("unknown", "restarts"), [("restart", [0, 1, 0]), ("skip", [0, 0, 0])])
def test_pending_unknown(
    lab: Callable[..., Lab],
    harestart: Harestart,
    detection: Callable[[Lab], Detection],
    unknown: str,
    restarts: list[int],
) -> None:
    x = lab("a")
    d = detection(x)
    d.pending["a2"] = unknown_report("cannot check the host: sudo: a password is required")
    r = harestart(x, "run", "--yes", "--only-pending", "--pending-unknown", unknown)
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == restarts


def test_all_with_mixed_groups_touches_only_the_pending_one(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a", "b")
    d = detection(x)
    d.pending["b1"] = pending(MARK)
    r = harestart(x, "run", "--all", "--yes", "--only-pending", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [0, 0, 0] and x.restarts("b") == [1, 0, 0]
    assert not any(e[0].startswith("mha") for e in x.worlds["a"].events)
    docs = {doc["group"]: doc for doc in r.json()}
    assert docs["a"]["skipped"] == "nothing pending" and docs["b"]["state"] == "ACTIVE"


def test_fleet_mode_restarts_only_the_pending_groups_and_settles_the_others(
    fleet_lab: FleetLab,
    capsys: pytest.CaptureFixture[str],
    detection: Callable[[Lab], Detection],
) -> None:
    x = fleet_lab
    d = detection(x)
    d.pending["c2"] = pending(CONFIG)
    r = fleet_cli(x, capsys, "run", "--all", "--yes", "--only-pending", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    fleet = r.json()["fleet"]
    assert fleet["complete"] and fleet["restarted"] == ["1/c"] and fleet["failed"] == []
    assert len(fleet["skipped"]) == len(x.group_ids) - 1
    assert all(s["why"].endswith(": nothing pending") for s in fleet["skipped"])
    assert x.restarts("c") == [0, 1, 0]
    for g in x.group_ids:
        if g != "c":
            assert x.restarts(g) == [0, 0, 0]
            assert not any(e[0].startswith("mha") for e in x.worlds[g].events), g


def test_a_resumed_only_pending_run_restarts_only_its_own_nodes(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    x = lab("a")
    d = detection(x)
    d.pending["a3"] = pending(CONFIG)
    x.worlds["a"].nodes["a3"].restart_fails = True
    r = harestart(x, "run", "--yes", "--only-pending", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED
    x.worlds["a"].nodes["a3"].restart_fails = False
    r = harestart(x, "resume", "--yes", "--format", "json")  # no --only-pending: the journal's
    assert r.code == ExitCode.OK, r.err
    assert r.json()["resumed"] is True
    assert [s["host"] for s in r.json()["steps"] if s["action"].startswith("restart")] == ["a3"]
    assert x.restarts("a") == [0, 0, 1]


def test_a_successful_run_clears_the_marks_of_the_nodes_it_restarted(
    lab: Callable[..., Lab], harestart: Harestart, detection: Callable[[Lab], Detection]
) -> None:
    """An operator's mark is a reason to restart: once the run restarted that node and ended
    well, the mark is done with; a whole-group mark goes once every node was restarted."""
    x = lab("a")
    detection(x)
    assert harestart(x, "mark-pending", "--group", "a", "--node", "a3", "--reason", "lib").code == 0
    r = harestart(x, "run", "--yes", "--only-pending")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [0, 0, 1]  # the mark alone chose a3
    r = harestart(x, "status", "--format", "json")
    assert all(
        reason["kind"] != "mark" for n in r.json()["nodes"] for reason in n["pending_restart"]
    ), r.out
    assert harestart(x, "mark-pending", "--group", "a", "--reason", "kernel").code == 0
    assert harestart(x, "run", "--yes").code == ExitCode.OK  # every node restarted
    r = harestart(x, "status", "--format", "json")
    assert all(
        reason["kind"] != "mark" for n in r.json()["nodes"] for reason in n["pending_restart"]
    ), r.out
