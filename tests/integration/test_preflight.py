"""Preflight in parallel (#24) on a real MariaDB lab: groups probed side by side say what they
say one after the other, in inventory order; a frozen host (its container paused: SSH and MySQL
connections hang instead of failing) is reported with both problems, and refuses the run.

Four groups of the inventory name the same three servers and MHA, so the same facts are
observed through the parallel path and the sequential one. How long a frozen host costs is
``bench.preflight``'s to measure, not this test's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import wait_for

pytestmark = pytest.mark.integration

GROUPS = ["lab1", "lab2", "lab3", "lab4"]


def stable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``status`` says that does not move between two looks (no uptime, GTID, lag)."""
    return [
        {
            "group": d["group"],
            "state": d["state"],
            "healthy": d["healthy"],
            "problems": d["problems"],
            "mha": d["mha"]["state"],
            "nodes": [
                {
                    "name": n["name"],
                    "role": n["role"],
                    "reachable": n["reachable"],
                    "server_id": n.get("server_id"),
                    "read_only": n.get("read_only"),
                    "pending": [r["text"] for r in n.get("pending_restart", [])],
                    "threads": (
                        (n["replication"]["io_running"], n["replication"]["sql_running"])
                        if n.get("replication")
                        else None
                    ),
                }
                for n in d["nodes"]
            ],
        }
        for d in docs
    ]


def test_groups_side_by_side_match_one_after_the_other_and_a_frozen_host_is_reported(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(2)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    doc = yaml.safe_load(inv.read_text())
    doc["groups"] = [{**doc["groups"][0], "id": g} for g in GROUPS]
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    state = tmp_path / "state"

    def status(parallel: int) -> tuple[int, list[dict[str, Any]], str]:
        out = harestart(
            "status",
            str(inv),
            "--format",
            "json",
            "--preflight-parallel",
            str(parallel),
            state_dir=state,
        )
        assert "Traceback" not in out.stderr, out.stderr
        return out.returncode, out.json(), out.stderr

    code_1, one_by_one, err = status(1)
    assert code_1 == 0, err
    code_4, side_by_side, err = status(4)
    assert code_4 == 0, err
    assert [d["group"] for d in side_by_side] == GROUPS
    assert stable(side_by_side) == stable(one_by_one)

    replica = cluster.replicas[0]
    container = replica.container.get_wrapped_container()
    container.pause()
    try:
        code, frozen, err = status(4)
        assert code == 1, err
        assert [d["group"] for d in frozen] == GROUPS
        for d in frozen:
            nodes = {n["name"]: n for n in d["nodes"]}
            db2 = nodes[replica.name]
            # both problems, each from its own probe: neither waited for the other
            assert db2["ssh_error"] and db2["mysql_error"] and not db2["reachable"], db2
            assert all(n["reachable"] for name, n in nodes.items() if name != replica.name)
            assert not d["healthy"]
        run = harestart("run", str(inv), "--all", "--yes", state_dir=state)
        assert run.returncode == 3, run.stdout + run.stderr
        assert run.stderr.count(f"{replica.name} (replica): SSH unreachable") == len(GROUPS)
        assert "nothing was changed" in run.stderr and "Traceback" not in run.stderr
    finally:
        container.unpause()

    def healthy_again() -> bool | None:
        code, docs, _ = status(4)
        return True if code == 0 and all(d["healthy"] for d in docs) else None

    wait_for("the replica answers again", healthy_again, timeout=120, interval=2)
