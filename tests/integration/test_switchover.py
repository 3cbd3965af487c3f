"""The switchover strategy on real clusters (both lab flavours): 1 source + 2 replicas.

A writer inserts (as an application account without any admin privilege, so read_only stops
it) on whichever node is writable, recording acknowledged ids; a watcher asserts that at no
instant two nodes are writable. The run must restart every node once, end with the
inventory's source, MHA PING_OK, every acknowledged row on every node and equal checksums.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from .conftest import ClusterFactory
from .harestart_cli import Outcome, harestart, start_harestart
from .lab import HOST, LabCluster, ready_count, wait_for

pytestmark = pytest.mark.integration

APP_USER, APP_PASSWORD = "app", "app-Pw-4-switch"


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
        "db1",
        f"sed -i -E 's/^(super_)?read_only( *)=.*/\\1read_only\\2= ON/' {conf} && "
        f"grep -E '^(super_)?read_only' {conf}",
    )
    assert code == 0 and "= ON" in out, out


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


def _connect(port: int, user: str, password: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=HOST, port=port, user=user, password=password, autocommit=True,
        connect_timeout=2, read_timeout=5, write_timeout=5,
    )  # fmt: skip


def _read_only(port: int, cluster: LabCluster) -> bool | None:
    try:
        conn = _connect(port, cluster.admin_user, cluster.admin_password)
    except pymysql.MySQLError:
        return None  # down (restarting): not writable
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@global.read_only")
            row = cur.fetchone()
            return bool(int(row[0])) if row else None
    finally:
        conn.close()


@dataclass
class Background:
    """A writer to the writable node and a watcher of read_only on every node."""

    cluster: LabCluster
    stop: threading.Event = field(default_factory=threading.Event)
    acked: list[int] = field(default_factory=list)
    errors: int = 0
    overlaps: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def ports(self) -> dict[str, int]:
        return {n.name: int(n.mysql_port or 0) for n in self.cluster.db_nodes}

    def writable(self) -> list[str]:
        return [n for n, p in self.ports().items() if _read_only(p, self.cluster) is False]

    def start(self) -> None:
        for target in (self._write, self._watch):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)

    def _write(self) -> None:
        next_id = 1
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    found = self.writable()
                    if not found:
                        self.stop.wait(0.05)
                        continue
                    conn = _connect(self.ports()[found[0]], APP_USER, APP_PASSWORD)
                row_id, next_id = next_id, next_id + 1
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO labdb.writes VALUES (%s, %s)", (row_id, uuid.uuid4().hex)
                    )
                self.acked.append(row_id)
                self.stop.wait(0.01)
            except pymysql.MySQLError:
                self.errors += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None

    def _watch(self) -> None:
        while not self.stop.is_set():
            first = set(self.writable())
            if len(first) > 1:
                again = set(self.writable()) & first  # still both: a real overlap
                if len(again) > 1:
                    self.overlaps.append(f"{time.monotonic():.2f}: {sorted(again)}")
            self.stop.wait(0.02)


def check_end_state(cluster: LabCluster, bg: Background) -> None:
    assert bg.overlaps == [], f"two writable nodes at once: {bg.overlaps}"
    assert bg.writable() == ["db1"]
    assert len(bg.acked) > 50, f"only {len(bg.acked)} acknowledged writes"
    cluster.wait_replicated(timeout=120)
    acked = set(bg.acked)
    sums = {}
    for n in cluster.db_nodes:
        present = {int(r["id"]) for r in cluster.sql(n.name, "SELECT id FROM labdb.writes")}
        assert not acked - present, f"{n.name} lacks {sorted(acked - present)[:10]}"
        sums[n.name] = cluster.sql(n.name, "CHECKSUM TABLE labdb.writes")[0]["Checksum"]
    assert len(set(sums.values())) == 1, sums
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


RUNS = 3


def run_switchover(
    cluster: LabCluster, inventory: Path, tmp_path: Path, name: str, *extra: str
) -> Outcome:
    return harestart(
        "run", str(inventory), "--yes", "--format", "json",
        "--source-strategy", "switchover", *extra,
        "--log-file", str(tmp_path / f"{name}.jsonl"),
        state_dir=tmp_path / "state",
        env={"LAB_REPL_PASSWORD": cluster.repl_password},
    )  # fmt: skip


def test_switchover_runs_move_the_source_away_and_back(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    """Three switchover runs in a row under a continuous writer."""
    cluster = cluster_factory(2, flavor=flavor)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    prepare(cluster)
    bg = Background(cluster)
    bg.start()
    timings = []
    try:
        wait_for("the first acknowledged write", lambda: bg.acked, timeout=60)
        for run_no in range(1, RUNS + 1):
            starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
            started, errors = time.monotonic(), bg.errors
            out = run_switchover(cluster, inventory, tmp_path, f"run{run_no}")
            timings.append((round(time.monotonic() - started, 1), bg.errors - errors))
            assert out.returncode == 0, f"run {run_no}: {out.stderr[-4000:]}"
            assert out.json()["state"] == "ACTIVE"
            assert cluster.repl_password not in out.stdout + out.stderr
            for n in cluster.db_nodes:  # every node restarted exactly once by this run
                assert ready_count(cluster, n.name) == starts[n.name] + 1, (run_no, n.name)
            assert bg.writable() == ["db1"], run_no
    finally:
        bg.join()
    print(f"\nruns (s, failed inserts): {timings}; writer {len(bg.acked)} acked")
    check_end_state(cluster, bg)


def test_a_long_transaction_on_the_source_is_refused_or_killed(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    cluster = cluster_factory(2, flavor=flavor)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    prepare(cluster)
    port = int(cluster.source.mysql_port or 0)
    held = _connect(port, APP_USER, APP_PASSWORD)
    held.autocommit(False)
    with held.cursor() as cur:  # an open transaction, older than 1 s by the switch
        cur.execute("INSERT INTO labdb.writes VALUES (%s, %s)", (10**9, "held open"))
    try:
        out = run_switchover(cluster, inventory, tmp_path, "refused")
        assert out.returncode == 1, out.stderr[-4000:]
        failure = out.json()["failure"]
        assert failure["step"] == "switchover:db2" and "open longer than" in failure["reason"]
        assert _read_only(port, cluster) is False  # refused before any change
        assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)
        out = run_switchover(
            cluster, inventory, tmp_path, "killed", "--long-transactions", "kill",
            "--discard-unfinished",
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-4000:]
        with pytest.raises(pymysql.MySQLError), held.cursor() as cur:
            cur.execute("SELECT 1")  # its session was killed
    finally:
        with contextlib.suppress(Exception):
            held.close()
    assert not cluster.sql("db1", "SELECT id FROM labdb.writes WHERE id = %s", (10**9,))
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


def test_a_lagging_candidate_is_refused_before_any_switch(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    """db2 (the candidate) applies 3 s late with writes flowing: within max_lag (5 s) for the
    restarts, over --switch-max-lag (1 s): the switch is refused before it changes anything."""
    cluster = cluster_factory(2, flavor=flavor)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    prepare(cluster)
    cluster.set_delay("db2", 3)
    bg = Background(cluster)
    bg.start()
    try:
        wait_for("the first acknowledged write", lambda: bg.acked, timeout=60)
        out = run_switchover(cluster, inventory, tmp_path, "lagging")
    finally:
        bg.join()
    assert out.returncode == 1, out.stderr[-4000:]
    failure = out.json()["failure"]
    assert failure["step"] == "switchover:db2", failure
    assert "lag" in failure["reason"], failure
    assert bg.overlaps == []
    assert bg.writable() == ["db1"]  # never made read-only: refused before any change
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


def _switch_phase(state_dir: Path) -> str | None:
    for path in (state_dir / "journals").glob("*.json"):
        try:
            switch = json.loads(path.read_text()).get("memory", {}).get("switch")
        except (ValueError, OSError):
            return None
        if switch and switch.get("candidate") == "db2":
            return str(switch.get("phase"))
    return None


def test_sigkill_mid_switch_then_resume_finishes_it(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    """kill -9 once the first switch began (the source read-only): `resume` finishes it, and
    at no instant are two nodes writable."""
    cluster = cluster_factory(2, flavor=flavor)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    prepare(cluster)
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    env = {"LAB_REPL_PASSWORD": cluster.repl_password}
    bg = Background(cluster)
    bg.start()
    try:
        wait_for("the first acknowledged write", lambda: bg.acked, timeout=60)
        proc = start_harestart(
            "run", str(inventory), "--yes", "--source-strategy", "switchover",
            "--log-file", str(tmp_path / "run.jsonl"), state_dir=tmp_path / "state", env=env,
        )  # fmt: skip
        wait_for(
            "the switch to db2 journalled",
            lambda: _switch_phase(tmp_path / "state") is not None,
            timeout=240,
            interval=0.01,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        killed_at = _switch_phase(tmp_path / "state")
        out = harestart(
            "resume", str(inventory), "--yes", "--break-lock", "--format", "json",
            "--source-strategy", "switchover",
            "--log-file", str(tmp_path / "resume.jsonl"), state_dir=tmp_path / "state", env=env,
        )  # fmt: skip
    finally:
        bg.join()
    print(f"\nkilled at phase {killed_at}")
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.json()["state"] == "ACTIVE"
    for n in cluster.db_nodes:
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
    check_end_state(cluster, bg)
