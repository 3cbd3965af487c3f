"""#21 probe 6 on a real cluster: one group's state files are never another's.

The issue's scenario: group ``x:y`` killed (SIGKILL) mid-run on the lab, then ``status --group
x_y`` (never run) reported x:y's unfinished run and stale lock as its own and proposed
``harestart resume ... --group x_y``: the two ids shared one lock and one journal name. It is
about files, not the server: MariaDB only.
"""

from __future__ import annotations

import copy
import signal
from pathlib import Path
from typing import Any

import pytest

from harestart.engine.state.journal import Journal, journal_path
from harestart.engine.state.lock import lock_path

from .conftest import ClusterFactory
from .harestart_cli import harestart, start_harestart, wait_for_event
from .lab import ready_count, wait_for, wait_restart_running
from .test_faults import edit_inventory

pytestmark = pytest.mark.integration

ACCOUNT = "100001"


def also_as(group_id: str) -> Any:
    """An inventory edit: the first group listed a second time under ``group_id``."""

    def change(doc: dict[str, Any]) -> None:
        twin = copy.deepcopy(doc["groups"][0])
        twin["id"] = group_id
        doc["groups"].append(twin)

    return change


def test_a_group_killed_mid_run_leaves_its_journal_and_lock_to_itself_only(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    """#21 probe 6: after x:y was killed mid-run, x_y (never run) showed x:y's unfinished run
    and stale lock and proposed to resume it; now x_y is not running, has no lock and no
    resume proposal, and x:y still reports its own unfinished run and stale lock."""
    cluster = cluster_factory(1)
    inv = edit_inventory(
        cluster.write_inventory(tmp_path / "inv.yml", group_id="x:y", account=ACCOUNT),
        also_as("x_y"),
    )
    before = ready_count(cluster, "db2")
    log = tmp_path / "run.jsonl"
    proc = start_harestart(
        "run", str(inv), "--group", "x:y", "--yes", "--log-file", str(log), state_dir=tmp_path
    )
    wait_for_event(
        log,
        lambda e: e.get("event") == "step.started" and e.get("step") == "restart_replica:db2",
        proc=proc,
    )

    def issued() -> bool:
        found = Journal.load(journal_path(tmp_path, ACCOUNT, "x:y"))
        return found is not None and any(
            s.key == "restart_replica:db2" and s.restart_issued_at for s in found.steps
        )

    # Killed once db2's restart runs on the host (the journal notes it just before sending).
    wait_for("db2's restart noted in the journal", issued, timeout=120, interval=0.02)
    wait_restart_running(cluster, "db2")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The restart command outlives the killed run: let db2 come back before looking at it.
    wait_for(
        "db2 back by itself",
        lambda: ready_count(cluster, "db2") == before + 1 and cluster.sql("db2", "SELECT 1"),
        timeout=120,
    )
    assert journal_path(tmp_path, ACCOUNT, "x:y").exists()
    assert lock_path(tmp_path, ACCOUNT, "x:y").exists()
    assert not journal_path(tmp_path, ACCOUNT, "x_y").exists()

    out = harestart("status", str(inv), "--group", "x_y", "--format", "json", state_dir=tmp_path)
    assert out.returncode in (0, 1), out.stderr  # by health: MHA was left stopped by x:y's run
    doc = out.json()
    assert doc["group"] == "x_y" and doc["state"] != "REBOOT"
    assert doc["unfinished_run"] is None and doc["lock"] is None
    assert "did not finish" not in (doc["state_reason"] or "")
    assert "lock" not in (doc["state_reason"] or "")
    text = harestart("status", str(inv), "--group", "x_y", state_dir=tmp_path).stdout
    assert "UNFINISHED RUN" not in text and "harestart resume" not in text and "lock:" not in text

    out = harestart("status", str(inv), "--group", "x:y", "--format", "json", state_dir=tmp_path)
    doc = out.json()
    assert doc["group"] == "x:y" and doc["state"] == "ERROR"
    assert doc["unfinished_run"]["resume"] == f"harestart resume {inv} --group x:y"
    assert doc["lock"]["stale"] is True
