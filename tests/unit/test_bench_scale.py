"""The scale bench's simulated fleet really runs harestart end to end (so its figures mean it).

Timings are never asserted; only that every group was restarted through the real CLI and
engine, left a finished journal, and that nothing waited on the simulated clock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import Fleet, fleet_inventory, measure_run
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
