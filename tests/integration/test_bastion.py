"""The jump-host path is real: a whole restart through a bastion, MySQL tunnelled too.

The cluster's nodes publish no port at all; only the ``bastion`` container's SSH port is on
127.0.0.1. harestart reaches db1..dbN and mha as ``name:22`` through the bastion (SSH
``direct-tcpip``) and every mysqld as ``name:3306`` through an SSH tunnel over the bastion.
The test's own checks use ``docker exec`` (see tests/integration/lab.py), never the network.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events
from .lab import HOST, LabCluster, ready_count, uptime

pytestmark = pytest.mark.integration


def published_ports(cluster: LabCluster) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per container, what ``docker inspect`` says is published: {"22/tcp": [bindings]}."""
    out = {}
    for n in cluster.containers:
        c = n.container.get_wrapped_container()
        c.reload()
        ports = c.attrs["NetworkSettings"]["Ports"] or {}
        out[n.name] = {port: bindings for port, bindings in ports.items() if bindings}
    return out


def test_run_and_status_through_the_bastion(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, bastion=True, flavor=flavor)
    assert cluster.bastion is not None
    port = cluster.bastion.ssh_port

    # Only the bastion is reachable from the host, and only on 127.0.0.1.
    published = published_ports(cluster)
    assert published.pop("bastion") == {"22/tcp": [{"HostIp": HOST, "HostPort": str(port)}]}
    assert published == {"db1": {}, "db2": {}, "db3": {}, "mha": {}}

    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    known = cluster.known_hosts.read_text().splitlines()
    assert {line.split()[0] for line in known} == {f"[{HOST}]:{port}", "db1", "db2", "db3", "mha"}

    # status: every node reachable through the jump host, with its true server_id.
    out = harestart("status", str(inventory), "--format", "json", state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = out.json()
    assert doc["healthy"] is True
    by_name = {n["name"]: n for n in doc["nodes"]}
    for n in cluster.db_nodes:
        assert by_name[n.name]["reachable"] is True, by_name[n.name]
        real = cluster.sql(n, "SELECT @@server_id AS id")[0]["id"]
        assert by_name[n.name]["server_id"] == int(real) == n.server_id
    for r in cluster.replicas:
        assert by_name[r.name]["replication"]["source_server_id"] == cluster.source.server_id
    assert doc["mha"]["state"] == "PING_OK"

    # run: the whole restart through the bastion.
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    uptimes = {n.name: uptime(cluster, n.name) for n in cluster.db_nodes}
    measured = time.monotonic()
    run_log = tmp_path / "run.jsonl"
    out = harestart(
        "run",
        str(inventory),
        "--yes",
        "--format",
        "json",
        "--log-file",
        str(run_log),
        state_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    result = out.json()
    assert result["state"] == "ACTIVE" and result["ok"] is True and result["failure"] is None
    assert [(s["action"], s["host"]) for s in result["steps"]] == [
        ("preflight", None),
        ("stop_failover", "mha"),
        ("restart_replica", "db2"),
        ("restart_replica", "db3"),
        ("restart_source", "db1"),
        ("start_failover", "mha"),
        ("verify", None),
    ]
    assert all(s["status"] == "done" for s in result["steps"]), result["steps"]
    assert "PING_OK" in result["mha_after"]

    # Every mysqld restarted exactly once: one more start in its error log, and an Uptime
    # below what it would be without a restart (the lab is young: the run may take as long as
    # the servers had been up, so "smaller than before" alone could miss a restart).
    elapsed = time.monotonic() - measured
    for n in cluster.db_nodes:
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
        assert uptime(cluster, n.name) < uptimes[n.name] + elapsed - 2, n.name
    code, text = cluster.mha_status()
    assert code == 0 and "PING_OK" in text

    # The log shows the commands ran over SSH, and that SSH and MySQL went through the bastion.
    events = log_events(run_log)
    commands = [e for e in events if e["event"] == "ssh.command"]
    assert any(cluster.restart_command in e["command"] for e in commands)
    assert {e["host"] for e in commands} >= {"db1", "db2", "db3", "mha"}
    via = f"via ops@{HOST}:{port}"
    ssh_targets = {e["host"]: e["target"] for e in events if e["event"] == "ssh.connect"}
    for name in ("db1", "db2", "db3", "mha"):
        assert ssh_targets[name] == f"ops@{name}:22 {via}", ssh_targets
    mysql_targets = {e["host"]: e["target"] for e in events if e["event"] == "mysql.connect"}
    for n in cluster.db_nodes:
        assert mysql_targets[n.name] == f"harestart@{n.name}:3306 {via}", mysql_targets
