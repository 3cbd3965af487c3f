"""MySQL's offline_mode before the source's in-place restart (#24, "MySQL in place"), on a real
MySQL 9.7 group: the application's session is sent away before the restart command, and a
source restart that fails gives the application its server back (offline_mode OFF)."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events
from .lab import HOST, LabCluster

pytestmark = pytest.mark.integration

APP_USER, APP_PASSWORD = "offline_app", "offline-App-Pw-1"


def app_account(cluster: LabCluster) -> None:
    # As root on the socket (the admin account has no GRANT OPTION); replicated to all.
    cluster._sql_exec(
        cluster.source,
        f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'; "
        f"GRANT SELECT, INSERT ON labdb.* TO '{APP_USER}'@'%'; "
        "CREATE TABLE IF NOT EXISTS labdb.offline_writes (id INT PRIMARY KEY)",
        None,
    )
    cluster.wait_replicated(timeout=120)


def app_connect(cluster: LabCluster) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    return pymysql.connect(
        host=HOST,
        port=cluster.source.mysql_port or 0,
        user=APP_USER,
        password=APP_PASSWORD,
        database="labdb",
        connect_timeout=10,
        read_timeout=10,
        autocommit=True,
    )


def test_a_failed_source_restart_leaves_offline_mode_off_and_the_app_writing(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(2, flavor="mysql")
    app_account(cluster)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    doc = yaml.safe_load(inventory.read_text())
    doc["groups"][0]["source"]["restart_command"] = "false"  # fails before any stop
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    before = app_connect(cluster)  # an application session, idle when the step begins

    log = tmp_path / "run.jsonl"
    out = harestart(
        "run", str(inventory), "--yes", "--format", "json", "--log-file", str(log),
        state_dir=tmp_path,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert out.json()["failure"]["step"] == "restart_source:db1"
    events = [
        (e["event"], e.get("host")) for e in log_events(log) if e["event"].startswith("offline.")
    ]
    assert events == [("offline.on", "db1"), ("offline.off", "db1")]

    # offline_mode sent the idle session away (mysqld itself never stopped) ...
    with pytest.raises(pymysql.err.OperationalError), before.cursor() as cur:
        cur.execute("SELECT 1")
    # ... and the failed step gave the server back: OFF, the application writes again.
    assert cluster.sql("db1", "SELECT @@global.offline_mode AS m")[0]["m"] == 0
    with app_connect(cluster) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO offline_writes (id) VALUES (1)")
