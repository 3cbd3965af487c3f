"""What a switchover-ready lab cluster needs, shared by the switchover and proxy tests: the
source's option file read-only, an application account that read_only stops, the replication
account and each node's lab-network address in the inventory."""

from __future__ import annotations

from pathlib import Path

import yaml

from .lab import LabCluster

APP_USER, APP_PASSWORD = "app", "app-Pw-4-switch"
READ_ONLY_OPTIONS = ("read_only", "super_read_only")


def switch_inventory(cluster: LabCluster, path: Path) -> Path:
    """The cluster's inventory with what switchover needs: the replication account and each
    node's address on the lab network."""
    cluster.write_inventory(path)
    doc = yaml.safe_load(path.read_text())
    doc["defaults"]["replication"] = {"user": "repl", "password_env": "LAB_REPL_PASSWORD"}
    group = doc["groups"][0]
    for node in (group["source"], *group["replicas"]):
        node["replication_host"] = node["name"]
        node["replication_port"] = 3306
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def configure_source_read_only(cluster: LabCluster) -> None:
    """A switchover-ready source starts read-only from its configuration (the running one
    stays writable): restarted as a replica it is never a second writable node. The lab's
    source is configured writable, so the test changes its file (not the running server)."""
    conf = f"{cluster.config_dir}/60-lab.cnf"
    code, out = cluster.exec(
        "db1", ["sed", "-i", "-E", r"s/^(super_)?read_only( *)=.*/\1read_only\2= ON/", conf]
    )
    assert code == 0, f"sed on {conf} exited {code}: {out}"
    # The effect, not sed's word: the file as mysqld will read it.
    code, text = cluster.exec("db1", ["cat", conf])
    settings = [ln.split("=") for ln in text.splitlines() if ln.startswith(READ_ONLY_OPTIONS)]
    assert code == 0 and settings, f"{conf} sets no read_only:\n{text}"
    assert all(value.strip() == "ON" for _, value in settings), f"{conf}:\n{text}"


def prepare(cluster: LabCluster) -> None:
    configure_source_read_only(cluster)
    cluster.sql(
        "db1",
        "CREATE TABLE labdb.writes (id BIGINT PRIMARY KEY, payload VARCHAR(64)) ENGINE=InnoDB",
    )
    # As root on the socket (the admin account has no GRANT OPTION); replicated to all.
    cluster._sql_exec(
        cluster.source,
        f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'; "
        f"GRANT SELECT, INSERT ON labdb.* TO '{APP_USER}'@'%'",
        None,
    )
    cluster.wait_replicated(timeout=120)
