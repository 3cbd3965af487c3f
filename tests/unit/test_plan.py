"""The planner: safety properties for any number of replicas, and golden plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action
from harestart.inventory.load import parse_inventory
from harestart.views.plan import render_json, render_text
from tests import golden

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"


def inventory_text(n_replicas: int) -> str:
    replicas = "".join(
        f"      - {{name: r{i}, address: 10.0.1.{i}}}\n" for i in range(1, n_replicas + 1)
    )
    return (
        "groups:\n  - id: g\n    account: '7'\n"
        "    source: {name: src, address: 10.0.0.1}\n"
        f"    replicas:\n{replicas}"
        "    mha: {manager: {name: mgr, address: 10.0.0.9}, config: /etc/mha/g.cnf}\n"
    )


@given(st.integers(min_value=1, max_value=40))
def test_safety_properties_hold_for_any_number_of_replicas(n: int) -> None:
    group = parse_inventory(inventory_text(n), "inv.yml").groups[0]
    plan = build_plan(group)
    actions = [s.action for s in plan.steps]
    # preflight first, failover manager off before anything restarts, on after the last restart
    assert actions[0] is Action.PREFLIGHT
    assert actions[1] is Action.STOP_FAILOVER
    assert actions[-2:] == [Action.START_FAILOVER, Action.VERIFY]
    restarts = [
        s for s in plan.steps if s.action in (Action.RESTART_REPLICA, Action.RESTART_SOURCE)
    ]
    first_restart = min(s.number for s in restarts)
    last_restart = max(s.number for s in restarts)
    stop = next(s.number for s in plan.steps if s.action is Action.STOP_FAILOVER)
    start = next(s.number for s in plan.steps if s.action is Action.START_FAILOVER)
    assert stop < first_restart and last_restart < start
    # every node exactly once; replicas before the source; the source last
    hosts = [s.host or "" for s in restarts]
    assert sorted(hosts) == sorted(n.name for n in group.db_nodes)
    assert len(set(hosts)) == len(hosts)
    assert restarts[-1].action is Action.RESTART_SOURCE and restarts[-1].host == "src"
    assert all(s.action is Action.RESTART_REPLICA for s in restarts[:-1])
    # numbered 1..N, and every restart has gates
    assert [s.number for s in plan.steps] == list(range(1, len(plan.steps) + 1))
    assert all(s.gates for s in restarts)


def test_planner_is_deterministic() -> None:
    group = parse_inventory(inventory_text(3), "inv.yml").groups[0]
    assert build_plan(group) == build_plan(group)
    assert render_json([build_plan(group)]) == render_json([build_plan(group)])


def test_json_shape_matches_documented_contract() -> None:
    group = parse_inventory(inventory_text(2), "inv.yml").groups[0]
    (doc,) = json.loads(render_json([build_plan(group)]))
    assert doc["group"] == "g" and doc["account"] == "7"
    allowed = {a.value for a in Action}
    for step in doc["steps"]:
        assert step["action"] in allowed
        assert isinstance(step["gates"], list) and all(isinstance(g, str) for g in step["gates"])
        for part in ("checks_before", "checks_after"):
            assert all(isinstance(g, str) for g in step[part])
        for act in step["actions"]:
            assert act["kind"] and act["host"] and "`" in act["do"]
        if step["action"] in (
            "restart_replica",
            "restart_source",
            "stop_failover",
            "start_failover",
        ):
            assert step["host"]
        else:
            assert "host" not in step


def test_text_plan_shows_every_gate_and_every_action() -> None:
    group = parse_inventory(inventory_text(1), "inv.yml").groups[0]
    plan = build_plan(group)
    text = render_text(plan, verbose=True)
    for s in plan.steps:
        assert f"{s.number:>3}. [{s.action.value}]" in text
        for g in s.gates:
            assert f"gate: {g.describe()}" in text
        for a in s.actions:
            assert f"do: {a.describe()}" in text
        for a in s.cleanup:
            assert f"finally: {a.describe()}" in text


def test_every_state_change_is_an_explicit_action_with_its_exact_statement() -> None:
    from harestart.domain.commands import detached, surviving_disconnect
    from harestart.domain.plan.model import PlanOptions

    group = parse_inventory(inventory_text(2), "inv.yml").groups[0]
    text = render_text(build_plan(group, PlanOptions(preflush=True)), verbose=True)
    assert f"`{surviving_disconnect(group.source.restart_command or '')}`" in text
    assert f"`{group.mha.stop_command}`" in text
    assert f"`{detached(group.mha.start_command, group.mha.log)}`" in text
    assert "`SET GLOBAL innodb_max_dirty_pages_pct = 0`" in text
    assert "finally: on src: `SET GLOBAL innodb_max_dirty_pages_pct = <its value before>`" in text
    assert (
        "do: on r1: `STOP REPLICA IO_THREAD` (MariaDB, MySQL < 8.0.22: `STOP SLAVE IO_THREAD`)"
        in text
    )
    assert "`KILL <thread id>`" in text
    assert "`SET GLOBAL read_only = <ON|OFF as before>`" in text
    assert "only if it came back different from before the restart" in text
    # Without detaching: no IO-thread stop before the restart, no KILL, a conditional
    # reconnect after it instead.
    attached = render_text(build_plan(group, PlanOptions(detach_replicas=False)))
    assert "KILL" not in attached and "innodb_max_dirty_pages_pct" not in attached
    assert (
        "`STOP REPLICA IO_THREAD` (MariaDB, MySQL < 8.0.22: `STOP SLAVE IO_THREAD`) then"
        in attached
    )
    assert "only if its IO thread is not running" in attached


@pytest.mark.parametrize("name", sorted(golden.CASES))
def test_golden_plans(name: str) -> None:
    """Each golden plan is made as tests/golden.py says and matches its committed file
    (regenerated only by ``make golden``, never by a test)."""
    assert golden.CASES[name]() == golden.expected(name)


def test_golden_switchover_plan_uses_the_lab_network() -> None:
    assert "SOURCE_HOST='db2', SOURCE_PORT=3306" in golden.expected("plan-lab-switchover.json")


@given(
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=0, max_value=30),
)
def test_replica_batches_respect_parallelism_and_minimum_healthy(
    n: int, k: int, min_healthy: int
) -> None:
    from harestart.domain.plan.build import replica_batches

    sizes = replica_batches(n, k, min_healthy)
    assert sum(sizes) == n and all(s >= 1 for s in sizes)
    for size in sizes:
        assert size <= k
        assert size == 1 or n - size >= min_healthy


def test_plan_shows_parallel_batches_and_keeps_the_order() -> None:
    from harestart.domain.plan.model import PlanOptions

    group = parse_inventory(inventory_text(3), "inv.yml").groups[0]
    plan = build_plan(group, PlanOptions(replica_parallelism=2))
    batches = [(s.host, s.batch) for s in plan.steps if s.action is Action.RESTART_REPLICA]
    assert batches == [("r1", 1), ("r2", 1), ("r3", 2)]
    (doc,) = json.loads(render_json([plan]))
    assert [s.get("batch") for s in doc["steps"] if s["action"] == "restart_replica"] == [1, 1, 2]
    assert "(batch 1, in parallel)" in render_text(plan)
    assert build_plan(group).steps[2].batch is None  # sequential plans have no batches
