"""The lab is real: replication flows, MHA watches the group, mysqld restarts over SSH.

These tests check the lab itself (not harestart), so they use pymysql and paramiko directly.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import paramiko
import pytest
import yaml

from .conftest import ClusterFactory
from .lab import LabCluster, wait_for

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
    target = cluster.sql("db1", "SELECT @@gtid_binlog_pos AS pos")[0]["pos"]
    for replica in cluster.replicas:
        wait_for(
            f"row {value!r} and GTID {target} on {replica.name}",
            lambda r=replica: (
                cluster.sql(r, "SELECT v FROM labdb.rows WHERE v = %s", (value,))
                and cluster.sql(r, "SELECT @@gtid_slave_pos AS pos")[0]["pos"] == target
            ),
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


def test_topology_and_roles(cluster: LabCluster) -> None:
    assert [n.name for n in cluster.nodes] == ["db1", "db2", "db3", "mha"]
    ids = {n.name: cluster.sql(n, "SELECT @@server_id AS id")[0]["id"] for n in cluster.db_nodes}
    assert ids == {"db1": 1, "db2": 2, "db3": 3}
    assert cluster.sql("db1", "SELECT @@read_only AS ro")[0]["ro"] == 0
    for replica in cluster.replicas:
        assert cluster.sql(replica, "SELECT @@read_only AS ro")[0]["ro"] == 1
        status = cluster.slave_status(replica)
        assert status["Master_Host"] == "db1"
        assert status["Using_Gtid"] == "Slave_Pos"
    # Every mapped port is on 127.0.0.1 and distinct.
    ports = [n.ssh_port for n in cluster.nodes] + [n.mysql_port for n in cluster.db_nodes]
    assert len(set(ports)) == len(ports)


def test_write_on_source_reaches_every_replica(cluster: LabCluster) -> None:
    value = f"hello-{uuid.uuid4().hex[:8]}"
    _insert_and_wait(cluster, value)
    source_pos = cluster.sql("db1", "SELECT @@gtid_current_pos AS pos")[0]["pos"]
    for replica in cluster.replicas:
        assert cluster.sql(replica, "SELECT @@gtid_slave_pos AS pos")[0]["pos"] == source_pos
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
    assert cluster.sql("db2", "SELECT @@read_only AS ro")[0]["ro"] == 1  # from the config file

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
    assert doc["defaults"]["restart_command"] == "service mariadb restart"
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


def test_masterha_stop_then_start_again(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(replicas=1, connect_retry=2)
    assert cluster.slave_status("db2")["Connect_Retry"] == 2

    cluster.exec("mha", ["masterha_stop", f"--conf={cluster.mha_config}"])  # exit code unreliable

    def stopped() -> bool:
        code, out = cluster.mha_status()
        return code == 2 and "NOT_RUNNING" in out

    wait_for("MHA NOT_RUNNING", stopped, timeout=60, interval=1.0)
    # The container outlives MHA, and the lab's start command brings MHA back.
    cluster.start_mha()
    out = cluster.wait_mha("PING_OK", timeout=120)
    assert "master:db1" in out
