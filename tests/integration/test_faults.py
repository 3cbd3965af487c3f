"""One real fault each: harestart stops in a known state, tells the truth, and can finish.

Every test starts its own cluster (faults leave marks) and drives the real CLI. The faults
whose behaviour depends on the server's SQL run on MariaDB and on MySQL (the ``flavor``
fixture); the ones that do not (SSH, MHA, locks, signals, credentials) run on MariaDB only.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import finish, harestart, journal, start_harestart, wait_for_event
from .lab import LabCluster, ready_count, uptime, wait_for, wait_restart_running

pytestmark = pytest.mark.integration


def edit_inventory(path: Path, change: Any) -> Path:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def step_status(doc: dict[str, Any]) -> dict[str, str]:
    return {
        (f"{s['action']}:{s['host']}" if s["host"] else s["action"]): s["status"]
        for s in doc["steps"]
    }


def run_past_preflight(inv: Path, tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """Start `harestart run` in the background; return once preflight passed and MHA is being
    stopped, i.e. the moment a fault can be injected without preflight refusing it."""
    log = tmp_path / "run.jsonl"
    proc = start_harestart(
        "run", str(inv), "--yes", *extra, "--log-file", str(log), state_dir=tmp_path
    )
    wait_for_event(
        log,
        lambda e: e.get("event") == "step.started" and e.get("step") == "stop_failover:mha",
        proc=proc,
    )
    return proc


def snapshot(cluster: LabCluster) -> dict[str, int]:
    return {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}


def test_replica_that_fails_to_start_stops_the_run_and_resume_completes_after_the_fix(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml", restart_timeout=45)
    before = snapshot(cluster)
    src_uptime = uptime(cluster, "db1")
    cluster.break_config("db2")

    out = harestart("run", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["state"] == "ERROR" and res["failure"]["step"] == "restart_replica:db2"
    assert step_status(res)["restart_source:db1"] == "pending"
    assert uptime(cluster, "db1") >= src_uptime  # the source was not touched
    assert snapshot(cluster)["db3"] == before["db3"]
    assert (
        res["failover_enabled"] is False
        and "automatic failover is OFF" in res["failure"]["failover"]
    )
    assert "NOT_RUNNING" in res["mha_after"]
    assert cluster.mha_status()[0] == 2

    status = harestart("status", str(inv), state_dir=tmp_path)
    assert "UNFINISHED RUN" in status.stdout and "harestart resume" in status.stdout
    assert "group lab (account 100001): ERROR, NOT healthy" in status.stdout

    cluster.fix_config("db2")  # mysqld on db2 is still down: resume starts it
    out = harestart("resume", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    res = out.json()
    assert res["state"] == "ACTIVE" and res["resumed"] is True
    after = snapshot(cluster)
    assert after == {"db1": before["db1"] + 1, "db2": before["db2"] + 1, "db3": before["db3"] + 1}
    assert cluster.mha_status()[0] == 0
    assert journal(tmp_path)["finished"] is True


def test_replica_sql_thread_failing_after_restart_fails_the_gate_with_the_server_error(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml", catchup_timeout=20)
    cluster.sql("db1", "CREATE TABLE labdb.conflict (id INT PRIMARY KEY)")
    wait_for("table on db2", lambda: cluster.sql("db2", "SHOW TABLES FROM labdb LIKE 'conflict'"))
    # A row that exists only on db2 (not binlogged): the source's insert will collide there.
    cluster.local_sql("db2", "INSERT INTO labdb.conflict VALUES (7)")
    before = snapshot(cluster)
    proc = run_past_preflight(inv, tmp_path, "--format", "json")
    cluster.sql("db1", "INSERT INTO labdb.conflict VALUES (7)")
    out = finish(proc)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["failure"]["step"] == "restart_replica:db2"
    assert "Duplicate entry '7'" in res["failure"]["reason"]
    after = snapshot(cluster)
    assert after["db1"] == before["db1"] and after["db3"] == before["db3"]


def test_replica_lagging_beyond_the_timeout_fails_and_nothing_more_restarts(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml", catchup_timeout=8, max_lag=2)
    # db2 applies events only 120 s after they were written (delayed replication).
    cluster.set_delay("db2", 120)
    before = snapshot(cluster)
    proc = run_past_preflight(inv, tmp_path, "--format", "json")
    cluster.sql("db1", "CREATE TABLE labdb.lagging (id INT PRIMARY KEY)")
    out = finish(proc)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["failure"]["step"] == "restart_replica:db2"
    assert "not reached within 8 s" in res["failure"]["reason"]
    after = snapshot(cluster)
    assert after["db1"] == before["db1"] and after["db3"] == before["db3"]
    assert after["db2"] == before["db2"] + 1


def test_unreachable_replica_ssh_is_refused_at_preflight(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml")

    def close_port(doc: dict[str, Any]) -> None:
        doc["groups"][0]["replicas"][0]["ssh"]["port"] = 1  # nothing listens there

    edit_inventory(inv, close_port)
    before = snapshot(cluster)
    out = harestart("run", str(inv), "--yes", state_dir=tmp_path)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "db2 (replica): SSH unreachable" in out.stderr and "nothing was changed" in out.stderr
    assert "Traceback" not in out.stderr
    assert snapshot(cluster) == before and cluster.mha_status()[0] == 0
    assert not (tmp_path / "journals").exists() or not list((tmp_path / "journals").glob("*"))


def test_mha_that_does_not_stop_is_refused_before_any_restart(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml", failover_timeout=8)
    # A stop command that does not stop anything: MHA keeps monitoring.
    edit_inventory(inv, lambda d: d["groups"][0]["mha"].update(stop_command="true"))
    before = snapshot(cluster)
    out = harestart("run", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["failure"]["step"] == "stop_failover:mha"
    assert "MHA stopped (NOT_RUNNING): not reached within 8 s" in res["failure"]["reason"]
    assert snapshot(cluster) == before
    assert cluster.mha_status()[0] == 0 and res["failover_enabled"] is True


def test_mha_failing_to_start_at_the_end_reports_its_log_tail(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml", failover_timeout=40)
    # The manager is started with a configuration that does not exist: it dies at once.
    edit_inventory(
        inv,
        lambda d: d["groups"][0]["mha"].update(
            start_command="masterha_manager --conf=/etc/mha/missing.cnf"
        ),
    )
    out = harestart("run", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["state"] == "ERROR" and res["failure"]["step"] == "start_failover:mha"
    assert "MHA died after starting" in res["failure"]["reason"]
    assert "missing.cnf" in res["failure"]["reason"]  # the log tail names the problem
    assert res["failover_enabled"] is False


def test_source_that_fails_to_start_stops_the_run_with_mha_off(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml", restart_timeout=45)
    cluster.break_config("db1")
    before = snapshot(cluster)
    out = harestart("run", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1, out.stderr
    res = out.json()
    assert res["failure"]["step"] == "restart_source:db1"
    nodes = {n["name"]: n for n in res["nodes"]}
    assert nodes["db1"]["reachable"] is False
    assert res["failover_enabled"] is False
    assert "automatic failover is OFF" in res["failure"]["failover"]
    # Replicas were restarted once each, before the source, and not touched afterwards.
    after = snapshot(cluster)
    assert after["db2"] == before["db2"] + 1 and after["db3"] == before["db3"] + 1
    assert cluster.mha_status()[0] == 2
    text = harestart("status", str(inv), state_dir=tmp_path)
    assert "db1 (source): MySQL unreachable" in text.stdout or "UNREACHABLE" in text.stdout


def test_sigkill_during_a_replica_restart_then_resume_does_not_restart_it_twice(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    before = snapshot(cluster)
    log = tmp_path / "run.jsonl"
    proc = start_harestart("run", str(inv), "--yes", "--log-file", str(log), state_dir=tmp_path)

    def issued() -> bool:
        try:
            steps = journal(tmp_path)["steps"]
        except (ValueError, FileNotFoundError):
            return False
        return any(s["key"] == "restart_replica:db2" and s["restart_issued_at"] for s in steps)

    wait_for("db2's restart noted in the journal", issued, timeout=120, interval=0.02)
    # ... and really running on db2 (the journal is written just before the command is sent).
    wait_restart_running(cluster, "db2")
    proc.send_signal(signal.SIGKILL)  # while db2's restart is in flight
    proc.wait(timeout=30)
    assert journal(tmp_path)["finished"] is False

    # The restart command outlives the SSH session that started it (harestart runs it so that
    # a dropped session cannot kill it halfway and leave mysqld stopped).
    wait_for(
        "db2 back by itself",
        lambda: ready_count(cluster, "db2") == before["db2"] + 1 and cluster.sql("db2", "SELECT 1"),
        timeout=120,
    )

    locked = harestart("resume", str(inv), "--yes", state_dir=tmp_path)
    assert (
        locked.returncode == 4 and "stale lock" in locked.stderr and "--break-lock" in locked.stderr
    )
    out = harestart(
        "resume", str(inv), "--yes", "--break-lock", "--format", "json", state_dir=tmp_path
    )
    assert out.returncode == 0, out.stderr
    res = out.json()
    detail = next(
        s["detail"] for s in res["steps"] if s["host"] == "db2" and s["action"] == "restart_replica"
    )
    assert "not restarted again" in detail
    assert snapshot(cluster) == {n: c + 1 for n, c in before.items()}
    assert cluster.mha_status()[0] == 0


def test_resume_refuses_when_a_replica_was_repointed_after_the_failure(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    edit_inventory(
        inv, lambda d: d["groups"][0]["replicas"][1].update(restart_command="service nope restart")
    )
    out = harestart("run", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 1 and out.json()["failure"]["step"] == "restart_replica:db3"
    cluster.repoint("db3", "db2")
    wait_for("db3 replicating from db2", lambda: cluster.replicating("db3"), timeout=60)
    before = snapshot(cluster)
    out = harestart("resume", str(inv), "--yes", state_dir=tmp_path)
    assert out.returncode == 3, out.stderr
    assert "db3 replicates from server_id 2" in out.stderr
    assert snapshot(cluster) == before


def test_second_run_on_the_same_group_exits_4_with_the_holder(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    first = run_past_preflight(inv, tmp_path)
    second = harestart("run", str(inv), "--yes", "--discard-unfinished", state_dir=tmp_path)
    assert second.returncode == 4, second.stderr
    assert f"pid {first.pid}" in second.stderr and "harestart run" in second.stderr
    status = harestart("status", str(inv), state_dir=tmp_path)
    assert "lock: held by a running run" in status.stdout
    assert "group lab (account 100001): REBOOT" in status.stdout
    assert finish(first).returncode == 0


def test_sigint_during_a_wait_exits_130_and_resume_completes(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    before = snapshot(cluster)
    log = tmp_path / "run.jsonl"
    proc = start_harestart("run", str(inv), "--yes", "--log-file", str(log), state_dir=tmp_path)
    # MHA's start takes seconds (INITIALIZING_MONITOR): interrupt while harestart waits on it.
    wait_for_event(
        log,
        lambda e: e.get("event") == "wait.started" and e.get("step") == "start_failover:mha",
        proc=proc,
    )
    proc.send_signal(signal.SIGINT)
    out = finish(proc)
    assert out.returncode == 130, out.stdout + out.stderr
    assert "SIGINT received" in out.stderr and "harestart resume" in out.stderr
    assert "Traceback" not in out.stderr
    j = journal(tmp_path)
    unfinished = [s for s in j["steps"] if s["status"] not in ("done", "skipped")]
    assert unfinished[0]["key"] == "start_failover:mha" and unfinished[0]["status"] == "interrupted"
    assert j["outcome"] == "interrupted"

    res = harestart("resume", str(inv), "--yes", "--format", "json", state_dir=tmp_path)
    assert res.returncode == 0, res.stderr
    assert snapshot(cluster) == {n: c + 1 for n, c in before.items()}  # nothing restarted twice
    assert cluster.mha_status()[0] == 0


def test_wrong_password_and_changed_host_key_are_refused_at_preflight(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    wrong = tmp_path / "wrong_password"
    wrong.write_text("not-the-password")
    os.chmod(wrong, 0o600)
    edit_inventory(inv, lambda d: d["defaults"]["mysql"].update(password_file=str(wrong)))
    before = snapshot(cluster)
    out = harestart("plan", str(inv), "--probe", state_dir=tmp_path)
    assert out.returncode == 3 and "Access denied for user 'harestart'" in out.stderr
    assert "not-the-password" not in out.stderr

    # A known_hosts whose entry for db2's port holds another key: a possible MITM.
    inv2 = cluster.write_inventory(tmp_path / "inv2.yml")
    other = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    port = cluster.node("db2").ssh_port
    lines = [
        line
        for line in cluster.known_hosts.read_text().splitlines()
        if not line.startswith(f"[127.0.0.1]:{port} ")
    ]
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    lines.append(f"[127.0.0.1]:{port} {key_type} {key}")
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join(lines) + "\n")
    edit_inventory(inv2, lambda d: d["defaults"]["ssh"].update(known_hosts=str(kh)))
    out = harestart("run", str(inv2), "--yes", state_dir=tmp_path)
    assert out.returncode == 3, out.stderr
    assert "db2 (replica): SSH unreachable" in out.stderr and "host key" in out.stderr
    assert snapshot(cluster) == before

    # Unknown hosts are refused too, unless the operator explicitly accepts new keys.
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inv3 = cluster.write_inventory(tmp_path / "inv3.yml")
    edit_inventory(inv3, lambda d: d["defaults"]["ssh"].update(known_hosts=str(empty)))
    out = harestart("plan", str(inv3), "--probe", state_dir=tmp_path)
    assert out.returncode == 3 and "not in known_hosts" in out.stderr
    out = harestart("--accept-new-host-keys", "plan", str(inv3), "--probe", state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    learned = empty.read_text()
    assert all(f"[127.0.0.1]:{n.ssh_port}" in learned for n in cluster.nodes)
    assert harestart("plan", str(inv3), "--probe", state_dir=tmp_path).returncode == 0
