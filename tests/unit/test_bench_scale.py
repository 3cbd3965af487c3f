"""The scale bench's simulated fleet really runs harestart end to end (so its figures mean it).

Timings are never asserted; only that every group was restarted through the real CLI and
engine, left a finished journal, and that nothing waited on the simulated clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import (
    PLAN_PROFILE_TOP,
    Fleet,
    fleet_inventory,
    measure_plan,
    measure_run,
    profile_plan,
)
from harestart.inventory.load import parse_inventory


@pytest.mark.parametrize("parallel", [1, 3])
def test_a_small_simulated_fleet_is_restarted_group_by_group(parallel: int) -> None:
    r = measure_run(5, parallel)
    assert r["exit_code"] == 0
    assert r["restarts"] == 15 and r["journals"] == 5  # 3 nodes per group, one journal each
    assert r["simulated_waits"] == 0  # zero-time restarts: the engine never had to wait
    assert r["cpu_ms_per_group"] > 0 and r["peak_rss_mb"] > 0


def test_the_generated_inventory_is_valid_and_every_host_routes_to_its_group(
    tmp_path: Path,
) -> None:
    inv = parse_inventory(fleet_inventory(300), "fleet.yml")
    assert len(inv.groups) == 300
    fleet = Fleet(300, tmp_path)
    for g in inv.groups:
        world = fleet.worlds[g.id]
        assert all(fleet.routes[n.name] is world for n in g.db_nodes)
        assert fleet.routes[g.mha.manager.name] is world


def test_the_plan_measure_repeats_and_records_the_load_average() -> None:
    p = measure_plan(25, repeat=2)
    assert p["exit_code"] == 0, p["stderr"]
    assert len(p["runs"]) == 2 and all(len(r["load_avg"]) == 3 for r in p["runs"])
    assert p["wall_s"] in [r["wall_s"] for r in p["runs"]] and p["peak_rss_mb"] > 0


def test_the_plan_profile_names_where_time_and_memory_go() -> None:
    prof = profile_plan(25)
    assert prof["exit_code"] == 0 and len(prof["load_avg"]) == 3
    top = [e["function"] for e in prof["top_cumulative_harestart"]]
    assert any("cli.py" in f and "(plan)" in f for f in top), top
    assert len(prof["top_own_time"]) == PLAN_PROFILE_TOP
    assert prof["traced_peak_mb"] > 0 and prof["top_alive_after_load"]
    assert any("inventory/" in m["site"] for m in prof["top_alive_after_load"])
