"""Speed features on real clusters: no Connect_Retry wait, parallel replicas, parallel groups.

These assert behaviour against generous deadlines; the numbers themselves are `make bench`'s.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events
from .lab import LabCluster, ready_count

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("detach", ["--detach-replicas", "--no-detach-replicas"])
def test_replicas_reconnect_without_waiting_for_connect_retry(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str, detach: str
) -> None:
    cluster = cluster_factory(2, connect_retry=3600, flavor=flavor)
    for r in cluster.replicas:
        assert cluster.replica_status(r.name)["connect_retry"] == 3600
    # Waiting for a reconnect by itself would take an hour; the catch-up deadline is 90 s.
    inv = cluster.write_inventory(tmp_path / "inv.yml", catchup_timeout=90)
    out = harestart(
        "run", str(inv), "--yes", detach, "--format", "json", state_dir=tmp_path, timeout=400
    )
    assert out.returncode == 0, out.stderr
    res = out.json()
    source_step = next(s for s in res["steps"] if s["action"] == "restart_source")
    assert source_step["status"] == "done" and source_step["duration_s"] < 90
    for r in cluster.replicas:
        assert cluster.replicating(r.name)


class HealthSampler:
    """Samples every replica's replication health from the host while a run goes on.

    One connection per replica, kept open and reopened only when lost: a replica is unhealthy
    when it cannot be reached or does not run both threads, never because a fresh connection
    was slow to open on a busy machine. Each sample keeps the reason for every unhealthy one.
    """

    def __init__(self, cluster: LabCluster) -> None:
        self.cluster = cluster
        self.samples: list[tuple[float, dict[str, bool]]] = []
        self.reasons: list[dict[str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self._conns: dict[str, pymysql.connections.Connection[Any]] = {}

    def _healthy(self, name: str, port: int) -> tuple[bool, str]:
        show, io, sql = (
            ("SHOW REPLICA STATUS", "Replica_IO_Running", "Replica_SQL_Running")
            if self.cluster.flavor == "mysql"
            else ("SHOW SLAVE STATUS", "Slave_IO_Running", "Slave_SQL_Running")
        )
        try:
            conn = self._conns.get(name)
            if conn is None:
                conn = self._conns[name] = pymysql.connect(
                    host="127.0.0.1",
                    port=port,
                    user=self.cluster.admin_user,
                    password=self.cluster.admin_password,
                    connect_timeout=5,
                    read_timeout=5,
                    cursorclass=pymysql.cursors.DictCursor,
                )
            with conn.cursor() as cur:
                cur.execute(show)
                row: dict[str, Any] | None = cur.fetchone()
        except pymysql.MySQLError as exc:
            dropped = self._conns.pop(name, None)
            if dropped is not None:
                with contextlib.suppress(Exception):
                    dropped.close()
            return False, f"{type(exc).__name__}: {exc}"
        if not row:
            return False, "no replica status"
        return row[io] == "Yes" and row[sql] == "Yes", f"IO {row[io]}, SQL {row[sql]}"

    def _loop(self) -> None:
        while not self.stop.is_set():
            at = time.time()
            seen = {r.name: self._healthy(r.name, r.mysql_port or 0) for r in self.cluster.replicas}
            self.samples.append((at, {name: ok for name, (ok, _) in seen.items()}))
            self.reasons.append({name: why for name, (ok, why) in seen.items() if not ok})
            self.stop.wait(0.05)

    def __enter__(self) -> HealthSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for conn in self._conns.values():
            with contextlib.suppress(Exception):
                conn.close()


def test_parallel_replica_restarts_keep_the_minimum_healthy(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(3, flavor=flavor)
    inv = cluster.write_inventory(tmp_path / "inv.yml")  # health.min_healthy_replicas: 1
    plan = harestart(
        "plan", str(inv), "--replica-parallelism", "2", "--format", "json", state_dir=tmp_path
    )
    (doc,) = plan.json()
    batches = [
        (s["host"], s.get("batch")) for s in doc["steps"] if s["action"] == "restart_replica"
    ]
    assert batches == [("db2", 1), ("db3", 1), ("db4", 2)]

    before = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    with HealthSampler(cluster) as sampler:
        out = harestart(
            "run",
            str(inv),
            "--yes",
            "--replica-parallelism",
            "2",
            "--format",
            "json",
            state_dir=tmp_path,
        )
    assert out.returncode == 0, out.stderr
    steps = out.json()["steps"]
    # The replica phase: from the first replica restart until the source's step begins (the
    # source restart itself disconnects every replica for a moment, by design).
    begin = min(_epoch(s["started_at"]) for s in steps if s["action"] == "restart_replica")
    end = next(_epoch(s["started_at"]) for s in steps if s["action"] == "restart_source")
    phase = [h for at, h in sampler.samples if begin <= at <= end]
    assert len(phase) > 20
    # never fewer than min_healthy_replicas
    low = [
        (at, why)
        for (at, h), why in zip(sampler.samples, sampler.reasons, strict=True)
        if begin <= at <= end and sum(h.values()) < 1
    ]
    assert not low, f"no healthy replica at {len(low)} samples, e.g. {low[:3]}"
    # Two replicas were down at the same time at some point: the batch really ran in parallel.
    assert any(not h["db2"] and not h["db3"] for h in phase)
    assert {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes} == {
        k: v + 1 for k, v in before.items()
    }


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_all_groups_restart_in_parallel(cluster_factory: ClusterFactory, tmp_path: Path) -> None:
    a = cluster_factory(1, name="groupa")
    b = cluster_factory(1, name="groupb")
    doc_a = yaml.safe_load(a.write_inventory(tmp_path / "a.yml", group_id="alpha").read_text())
    doc_b = yaml.safe_load(
        b.write_inventory(tmp_path / "b.yml", group_id="beta", account="100002").read_text()
    )
    # One inventory, two groups; each group carries its own connection settings.
    groups = []
    for doc in (doc_a, doc_b):
        g = doc["groups"][0]
        g["ssh"] = doc["defaults"]["ssh"]
        g["mysql"] = doc["defaults"]["mysql"]
        g["health"] = doc["defaults"]["health"]
        g["restart_command"] = doc["defaults"]["restart_command"]
        groups.append(g)
    inv = tmp_path / "both.yml"
    inv.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    before = {(c.name, n.name): ready_count(c, n.name) for c in (a, b) for n in c.db_nodes}

    out = harestart(
        "run",
        str(inv),
        "--all",
        "--parallel-groups",
        "2",
        "--yes",
        "--format",
        "json",
        state_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    results = out.json()
    assert [r["group"] for r in results] == ["alpha", "beta"]
    assert all(r["state"] == "ACTIVE" and r["ok"] for r in results)
    after = {(c.name, n.name): ready_count(c, n.name) for c in (a, b) for n in c.db_nodes}
    assert after == {k: v + 1 for k, v in before.items()}
    assert a.mha_status()[0] == 0 and b.mha_status()[0] == 0


def test_preflush_flushes_the_source_and_the_setting_comes_back(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(1, flavor=flavor)
    original = float(cluster.sql("db1", "SELECT @@innodb_max_dirty_pages_pct AS v")[0]["v"])
    # Leave dirty pages behind: a bulk write the source has not flushed yet (16,384 rows by
    # doubling: the same SQL on both engines).
    cluster.sql(
        "db1", "CREATE TABLE labdb.bulk (id INT AUTO_INCREMENT PRIMARY KEY, p VARCHAR(200))"
    )
    cluster.sql("db1", "INSERT INTO labdb.bulk (p) VALUES (REPEAT('x', 200))")
    for _ in range(14):
        cluster.sql("db1", "INSERT INTO labdb.bulk (p) SELECT p FROM labdb.bulk")
    inv = cluster.write_inventory(tmp_path / "inv.yml")
    log = tmp_path / "run.jsonl"
    out = harestart(
        "run",
        str(inv),
        "--yes",
        "--preflush",
        "--format",
        "json",
        "--log-file",
        str(log),
        state_dir=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    events = log_events(log)
    start = next(e for e in events if e["event"] == "preflush.start")
    assert start["host"] == "db1" and float(start["was"]) == original
    flushed = [e for e in events if e["event"] == "gate.held" and "pre-flush" in e.get("gate", "")]
    assert flushed, "the pre-flush gate never held"
    # The restart reset the setting to the server's configured value.
    now = float(cluster.sql("db1", "SELECT @@innodb_max_dirty_pages_pct AS v")[0]["v"])
    assert now == original
    cluster.wait_replicated()
    assert cluster.sql("db2", "SELECT COUNT(*) AS n FROM labdb.bulk")[0]["n"] == 16384
