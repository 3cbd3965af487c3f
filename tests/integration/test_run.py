"""`harestart run` / `status` / `plan --probe` against real MHA clusters, MariaDB and MySQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events
from .lab import LabCluster, ready_count, uptime, wait_for

pytestmark = pytest.mark.integration


def write_rows(cluster: LabCluster, n: int) -> list[str]:
    cluster.sql("db1", "CREATE TABLE IF NOT EXISTS labdb.before_run (v VARCHAR(64) PRIMARY KEY)")
    values = [uuid.uuid4().hex for _ in range(n)]
    for v in values:
        cluster.sql("db1", "INSERT INTO labdb.before_run (v) VALUES (%s)", (v,))
    return values


@pytest.mark.parametrize("replicas", [1, 2])
def test_run_restarts_every_node_once_replicas_first_with_mha_off_then_on(
    cluster_factory: ClusterFactory, tmp_path: Path, replicas: int, flavor: str
) -> None:
    cluster = cluster_factory(replicas, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    rows = write_rows(cluster, 20)
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    mha_pid_before = cluster.mha_status()[1]

    out = harestart(
        "run",
        str(inventory),
        "--yes",
        "--format",
        "json",
        "--log-file",
        str(tmp_path / "run.jsonl"),
        state_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = out.json()

    # The JSON result is complete.
    assert result["group"] == "lab" and result["account"] == "100001"
    assert result["state"] == "ACTIVE" and result["ok"] is True and result["failure"] is None
    assert result["started_at"] and result["finished_at"] and result["duration_s"] > 0
    assert "PING_OK" in result["mha_before"] and "PING_OK" in result["mha_after"]
    actions = [(s["action"], s["host"]) for s in result["steps"]]
    assert actions == [
        ("preflight", None),
        ("stop_failover", "mha"),
        *[("restart_replica", r.name) for r in cluster.replicas],
        ("restart_source", "db1"),
        ("start_failover", "mha"),
        ("verify", None),
    ]
    for s in result["steps"]:
        assert s["status"] == "done" and s["started_at"] and s["duration_s"] is not None
        assert s["detail"]

    # Each mysqld restarted exactly once (the servers' own error logs), replicas before the
    # source (the source has the smallest Uptime now).
    for n in cluster.db_nodes:
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
    src_up = uptime(cluster, "db1")
    assert all(uptime(cluster, r.name) > src_up for r in cluster.replicas)

    # MHA was stopped before the first mysqld restart (the run log's command order), and is
    # monitoring again with a new manager process.
    events = log_events(tmp_path / "run.jsonl")
    commands = [e["command"] for e in events if e["event"] == "ssh.command"]
    first_restart = next(i for i, c in enumerate(commands) if cluster.restart_command in c)
    stop = next(i for i, c in enumerate(commands) if c.startswith("masterha_stop"))
    assert stop < first_restart
    stopped_seen = [
        i
        for i, e in enumerate(events)
        if e["event"] == "ssh.command"
        and e["command"].startswith("masterha_check_status")
        and e["exit_status"] == 2
    ]
    restart_event = next(
        i
        for i, e in enumerate(events)
        if e["event"] == "ssh.command" and cluster.restart_command in e["command"]
    )
    assert stopped_seen and stopped_seen[0] < restart_event
    code, text = cluster.mha_status()
    assert code == 0 and "PING_OK" in text and text != mha_pid_before
    assert all(e.get("group") == "lab" for e in events if e["event"] == "ssh.command")

    # The source's replicas were detached before its restart and reattached after it, in the
    # server's own words, and every node keeps its read_only / super_read_only.
    statements = [e["statement"] for e in events if e["event"] == "mysql.query"]
    word = "SLAVE" if flavor == "mariadb" else "REPLICA"
    assert f"STOP {word} IO_THREAD" in statements and f"START {word} IO_THREAD" in statements
    assert not any(("SLAVE" if word == "REPLICA" else "REPLICA") in st for st in statements)
    assert cluster.read_only_state("db1") == (False, False if flavor == "mysql" else None)
    for r in cluster.replicas:
        assert cluster.read_only_state(r.name) == (True, True if flavor == "mysql" else None)

    # masterha_check_repl passes and every row written before the run is on every node.
    code, text = cluster.exec("mha", ["masterha_check_repl", f"--conf={cluster.mha_config}"])
    assert code == 0 and "MySQL Replication Health is OK" in text
    for n in cluster.db_nodes:
        have = {r["v"] for r in cluster.sql(n.name, "SELECT v FROM labdb.before_run")}
        assert set(rows) <= have, n.name


def test_status_and_probe_report_true_values(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    out = harestart("status", str(inventory), "--format", "json", state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = out.json()
    assert doc["healthy"] is True
    by_name = {n["name"]: n for n in doc["nodes"]}
    for n in cluster.db_nodes:
        real = cluster.sql(n.name, "SELECT @@server_id AS id, @@read_only AS ro, @@version AS v")[0]
        assert by_name[n.name]["server_id"] == real["id"] == n.server_id
        assert by_name[n.name]["read_only"] is bool(real["ro"])
        assert by_name[n.name]["version"] == real["v"] and by_name[n.name]["flavor"] == flavor
    for r in cluster.replicas:
        rep = by_name[r.name]["replication"]
        assert rep["io_running"] == "Yes" and rep["sql_running"] == "Yes"
        assert rep["source_server_id"] == cluster.source.server_id
    assert doc["mha"]["state"] == "PING_OK"

    probe = harestart("plan", str(inventory), "--probe", state_dir=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert f"observed: db2 (replica): {flavor}" in probe.stdout
    assert "from server 1" in probe.stdout and "MHA PING_OK" in probe.stdout


def test_probe_refuses_when_a_replica_stopped_or_points_elsewhere(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    uptimes = {n.name: uptime(cluster, n.name) for n in cluster.db_nodes}

    cluster.stop_replication("db2")
    out = harestart("plan", str(inventory), "--probe", state_dir=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "db2: replication threads are not both running (IO No, SQL No)" in out.stderr
    assert "Traceback" not in out.stderr

    # db3 repointed at db2: a replica of the wrong source (compared by server_id).
    cluster.start_replication("db2")
    cluster.repoint("db3", "db2")
    wait_for("db3 replicating from db2", lambda: cluster.replicating("db3"), timeout=60)
    out = harestart("plan", str(inventory), "--probe", state_dir=tmp_path)
    assert out.returncode == 3
    assert (
        "db3 replicates from server_id 2" in out.stderr
        and "not from the listed source db1" in out.stderr
    )

    # run refuses the same way and changes nothing.
    out = harestart("run", str(inventory), "--yes", state_dir=tmp_path)
    assert out.returncode == 3 and "nothing was changed" in out.stderr
    assert all(uptime(cluster, n) >= u for n, u in uptimes.items())
    assert "PING_OK" in cluster.mha_status()[1]


def test_failing_restart_stops_the_run_before_the_source(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml", restart_timeout=30)
    # db2's mysqld will not start again: an unknown option in its config.
    cluster.break_config("db2")
    src_uptime = uptime(cluster, "db1")
    db3_starts = ready_count(cluster, "db3")

    out = harestart("run", str(inventory), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    result = out.json()
    assert result["state"] == "ERROR" and result["ok"] is False
    assert result["failure"]["step"] == "restart_replica:db2"
    assert result["failover_enabled"] is False
    steps = {(s["action"], s["host"]): s["status"] for s in result["steps"]}
    assert steps[("restart_replica", "db2")] == "failed"
    assert steps[("restart_replica", "db3")] == "pending"
    assert steps[("restart_source", "db1")] == "pending"
    nodes = {n["name"]: n for n in result["nodes"]}
    assert nodes["db2"]["reachable"] is False and nodes["db1"]["reachable"] is True
    # Nothing after the failed step was touched.
    assert uptime(cluster, "db1") >= src_uptime
    assert ready_count(cluster, "db3") == db3_starts
    assert cluster.mha_status()[0] == 2  # MHA stays off; the result says so
