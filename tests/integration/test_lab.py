"""The lab is real: replication flows, MHA watches the group, mysqld restarts over SSH.

These tests check the lab itself (not harestart), so they use pymysql and paramiko directly.
They run on both lab flavours (MariaDB and Oracle MySQL): the ``cluster`` fixture and the
``flavor`` fixture are parametrized over them.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

import paramiko
import pytest
import yaml

from .conftest import ClusterFactory
from .lab import LabCluster, LabNode, ready_count, wait_for

pytestmark = pytest.mark.integration


def _uptime(cluster: LabCluster, node: str) -> int:
    rows = cluster.sql(node, "SHOW GLOBAL STATUS LIKE 'Uptime'")
    return int(rows[0]["Value"])


CREATE_ROWS = (
    "CREATE TABLE IF NOT EXISTS labdb.rows (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))"
)


def _insert_and_wait(cluster: LabCluster, value: str, timeout: float = 120) -> None:
    """Insert a row on the source; wait until every replica has it and the source's GTID."""
    cluster.sql("db1", CREATE_ROWS)
    cluster.sql("db1", "INSERT INTO labdb.rows (v) VALUES (%s)", (value,))
    target = cluster.source_gtid()

    def has_row(r: LabNode) -> bool:
        rows = cluster.sql(r, "SELECT v FROM labdb.rows WHERE v = %s", (value,))
        return bool(rows) and cluster.applied(r, target)

    for replica in cluster.replicas:
        wait_for(
            f"row {value!r} and GTID {target} on {replica.name}",
            functools.partial(has_row, replica),
            timeout=timeout,
        )


def _ssh(cluster: LabCluster, node: str) -> paramiko.SSHClient:
    """SSH from the host as ops, key only, strict host key checking against known_hosts."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(cluster.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=cluster.node(node).ssh_port,
        username="ops",
        key_filename=str(cluster.key_file),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client


def _role_flags(cluster: LabCluster, read_only: bool) -> tuple[bool, bool | None]:
    """The lab's (read_only, super_read_only) for a role: MySQL replicas run super_read_only
    too; MariaDB has no such variable (None)."""
    return (read_only, read_only if cluster.flavor == "mysql" else None)


def test_topology_and_roles(cluster: LabCluster) -> None:
    assert [n.name for n in cluster.nodes] == ["db1", "db2", "db3", "mha"]
    version = str(cluster.sql("db1", "SELECT @@version AS v")[0]["v"])
    assert ("MariaDB" in version) == (cluster.flavor == "mariadb"), version
    ids = {n.name: cluster.sql(n, "SELECT @@server_id AS id")[0]["id"] for n in cluster.db_nodes}
    assert ids == {"db1": 1, "db2": 2, "db3": 3}
    roles = {n.name: cluster.read_only_state(n) for n in cluster.db_nodes}
    assert roles == {
        "db1": _role_flags(cluster, False),
        "db2": _role_flags(cluster, True),
        "db3": _role_flags(cluster, True),
    }
    for replica in cluster.replicas:
        status = cluster.replica_status(replica)
        assert status["source_host"] == "db1"
        assert status["auto_position"] is True
        if cluster.flavor == "mariadb":
            assert status["raw"]["Using_Gtid"] == "Slave_Pos"
    # Every mapped port is on 127.0.0.1 and distinct.
    ports = [n.ssh_port for n in cluster.nodes] + [n.mysql_port for n in cluster.db_nodes]
    assert len(set(ports)) == len(ports)


def test_write_on_source_reaches_every_replica(cluster: LabCluster) -> None:
    value = f"hello-{uuid.uuid4().hex[:8]}"
    _insert_and_wait(cluster, value)
    source_pos = cluster.source_gtid()
    assert source_pos
    for replica in cluster.replicas:
        assert cluster.applied(replica, source_pos)
        rows = cluster.sql(replica, "SELECT COUNT(*) AS n FROM labdb.rows WHERE v = %s", (value,))
        assert rows[0]["n"] == 1


def test_masterha_check_repl_passes(cluster: LabCluster) -> None:
    code, out = cluster.exec("mha", ["masterha_check_repl", f"--conf={cluster.mha_config}"])
    assert code == 0, out
    assert "MySQL Replication Health is OK" in out


def test_masterha_check_status_ping_ok(cluster: LabCluster) -> None:
    code, out = cluster.mha_status()
    assert code == 0, out
    assert "PING_OK" in out
    assert "master:db1" in out


def test_restart_replica_over_ssh_from_host(cluster: LabCluster) -> None:
    uptime_before = _uptime(cluster, "db2")
    starts_before = ready_count(cluster, "db2")
    started = time.time()
    client = _ssh(cluster, "db2")
    try:
        _, stdout, stderr = client.exec_command(f"sudo {cluster.restart_command}", timeout=120)
        code = stdout.channel.recv_exit_status()
        output = stdout.read().decode() + stderr.read().decode()
    finally:
        client.close()
    assert code == 0, output

    # mysqld really restarted: its start time (now - Uptime) lies after the restart began.
    (uptime_after,) = wait_for("db2 answers after restart", lambda: (_uptime(cluster, "db2"),))
    assert time.time() - uptime_after >= started - 1.5, (uptime_before, uptime_after)
    # Exactly one more start in the error log (the path tests grep on both flavours).
    assert ready_count(cluster, "db2") == starts_before + 1
    # read_only (and MySQL's super_read_only) come back from the config file.
    assert cluster.read_only_state("db2") == _role_flags(cluster, True)

    wait_for("db2 replication threads", lambda: cluster.replicating("db2"), timeout=120)
    _insert_and_wait(cluster, f"after-restart-{uuid.uuid4().hex[:8]}")
    # MHA only watches the source; it keeps running through a replica restart.
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


def test_write_inventory(cluster: LabCluster, tmp_path: Path) -> None:
    path = cluster.write_inventory(tmp_path / "inv.yml", group_id="g1", account="42", max_lag=2)
    doc = yaml.safe_load(path.read_text())
    assert doc["defaults"]["ssh"]["user"] == "ops"
    assert doc["defaults"]["ssh"]["sudo"] is True
    assert doc["defaults"]["health"]["max_lag"] == 2
    assert doc["defaults"]["health"]["restart_timeout"] == 120
    assert doc["defaults"]["restart_command"] == f"service {cluster.flavor} restart"
    with open(doc["defaults"]["mysql"]["password_file"]) as fh:
        assert fh.read() == cluster.admin_password
    group = doc["groups"][0]
    assert (group["id"], group["account"]) == ("g1", "42")
    assert group["source"] == {
        "name": "db1",
        "address": "127.0.0.1",
        "ssh": {"port": cluster.source.ssh_port},
        "mysql": {"port": cluster.source.mysql_port},
    }
    assert [r["name"] for r in group["replicas"]] == ["db2", "db3"]
    assert group["mha"]["manager"]["ssh"]["port"] == cluster.manager.ssh_port
    assert group["mha"]["config"] == "/etc/mha/app1.cnf"
    known = (cluster.known_hosts).read_text().splitlines()
    assert {line.split()[0] for line in known} == {
        f"[127.0.0.1]:{n.ssh_port}" for n in cluster.nodes
    }


def test_masterha_stop_then_start_again(cluster_factory: ClusterFactory, flavor: str) -> None:
    cluster = cluster_factory(replicas=1, connect_retry=2, flavor=flavor)
    assert cluster.flavor == flavor
    assert cluster.replica_status("db2")["connect_retry"] == 2

    cluster.exec("mha", ["masterha_stop", f"--conf={cluster.mha_config}"])  # exit code unreliable

    def stopped() -> bool:
        code, out = cluster.mha_status()
        return code == 2 and "NOT_RUNNING" in out

    wait_for("MHA NOT_RUNNING", stopped, timeout=60, interval=1.0)
    # The container outlives MHA, and the lab's start command brings MHA back.
    cluster.start_mha()
    out = cluster.wait_mha("PING_OK", timeout=120)
    assert "master:db1" in out
