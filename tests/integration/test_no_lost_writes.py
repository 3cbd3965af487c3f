"""No lost writes: a writer inserts on the source throughout three consecutive full runs.

Only acknowledged inserts are recorded (an INSERT whose OK packet came back, autocommit). An
insert whose acknowledgement was lost may still have been committed; that is allowed: the test
requires acknowledged ⊆ present on every node, then identical contents (counts, CHECKSUM TABLE)
on the source and every replica.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import HOST, wait_for
from .writer import Writer, longest_gap

pytestmark = pytest.mark.integration

RUNS = 3


def test_no_acknowledged_write_is_lost_across_three_runs(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    # Runs with the default detach of the replicas before each source restart: the writes
    # the source acknowledges while they are detached must still reach them (GTID fetch).
    cluster = cluster_factory(2, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    cluster.sql(
        "db1",
        "CREATE TABLE labdb.writes ("
        " id BIGINT PRIMARY KEY,"
        " payload VARCHAR(64),"
        " at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)"
        ") ENGINE=InnoDB",
    )
    assert cluster.source.mysql_port is not None
    writer = Writer(HOST, cluster.source.mysql_port, cluster.admin_user, cluster.admin_password)
    writer.start()
    per_run: list[dict[str, Any]] = []
    try:
        # The writer is already acknowledging before the first run starts.
        wait_for("the writer's first acknowledged insert", lambda: writer.acked, timeout=60)
        for run_no in range(1, RUNS + 1):
            before_acks, before_errors = len(writer.acked), writer.errors
            started = time.monotonic()
            out = harestart(
                "run",
                str(inventory),
                "--yes",
                "--format",
                "json",
                "--log-file",
                str(tmp_path / f"run{run_no}.jsonl"),
                state_dir=tmp_path / "state",
            )
            elapsed = time.monotonic() - started
            acks = writer.acked[before_acks:]
            per_run.append(
                {
                    "run": run_no,
                    "seconds": round(elapsed, 1),
                    "acked": len(acks),
                    "errors": writer.errors - before_errors,
                    "longest_ack_gap_s": round(longest_gap(acks), 2),
                }
            )
            assert out.returncode == 0, f"run {run_no}: exit {out.returncode}\n{out.stderr}"
            result = out.json()
            assert result["state"] == "ACTIVE" and result["ok"] is True, f"run {run_no}: {result}"
            # The writer was really writing during this run (not stuck for its whole length).
            assert len(acks) > 50, f"run {run_no}: only {len(acks)} acknowledged inserts"
    finally:
        writer.join()
        print(f"\nwriter: {len(writer.acked)} acked, {writer.errors} errors {writer.error_kinds}")
        for r in per_run:
            print(f"  {r}")

    acked = {row_id for row_id, _ in writer.acked}
    assert len(acked) > 50
    assert writer.errors > 0, "the source never went away: did the runs restart it?"

    target = cluster.wait_replicated(timeout=300)
    counts: dict[str, int] = {}
    checksums: dict[str, Any] = {}
    for n in cluster.db_nodes:
        present = {int(r["id"]) for r in cluster.sql(n.name, "SELECT id FROM labdb.writes")}
        missing = acked - present
        assert not missing, (
            f"{n.name} lacks {len(missing)} acknowledged rows (e.g. {sorted(missing)[:10]}) "
            f"after applying GTID {target}"
        )
        counts[n.name] = len(present)
        checksums[n.name] = cluster.sql(n.name, "CHECKSUM TABLE labdb.writes")[0]["Checksum"]
    print(f"rows per node: {counts}; checksums: {checksums}; gtid: {target}")
    assert len(set(counts.values())) == 1, counts
    assert len(set(checksums.values())) == 1 and None not in checksums.values(), checksums
