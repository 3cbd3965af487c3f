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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from harestart.engine.state.snapshots import current

from . import lab
from .conftest import ClusterFactory
from .harestart_cli import Outcome, harestart, start_harestart
from .lab import HOST, LabCluster, ready_count, wait_for
from .switching import APP_PASSWORD, APP_USER, prepare, switch_inventory

pytestmark = pytest.mark.integration


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
    first_id: int = 1  # a shared cluster's table already holds earlier tests' rows

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
        next_id = self.first_id
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


@pytest.fixture(scope="module")
def refusing(lab_docker: None, flavor: str, request: pytest.FixtureRequest) -> Iterator[LabCluster]:
    """One switchover-ready cluster per flavour for the tests whose switch must not happen:
    each leaves db1 the writable source, MHA PING_OK and replication running."""
    artifacts = lab.ARTIFACTS_DIR / lab._safe_name(f"{request.node.name}-refusing-{flavor}")
    cluster = lab.start_cluster(2, artifacts=artifacts, flavor=flavor)
    try:
        prepare(cluster)
        yield cluster
    finally:
        if request.session.testsfailed:
            cluster.save_logs(artifacts)
        cluster.stop()


def writer_from(cluster: LabCluster) -> Background:
    rows = cluster.sql("db1", "SELECT COALESCE(MAX(id), 0) + 1 AS next_id FROM labdb.writes")
    return Background(cluster, first_id=int(rows[0]["next_id"]))


def test_a_failing_before_switch_hook_stops_the_run_with_the_old_source_writable(
    refusing: LabCluster, tmp_path: Path
) -> None:
    """The hook that would move the VIP fails: the replicas were restarted, the switch never
    began (db1 still the writable source, never restarted), exit 1 with the hook's output."""
    cluster = refusing
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    doc = yaml.safe_load(inventory.read_text())
    doc["defaults"]["hooks"] = {
        "before_switch": {"command": "echo moving the VIP to $HARESTART_NEW_SOURCE; exit 5",
                          "timeout": 20}}  # fmt: skip
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    bg = writer_from(cluster)
    bg.start()
    try:
        wait_for("the first acknowledged write", lambda: bg.acked, timeout=60)
        out = run_switchover(cluster, inventory, tmp_path, "hook")
        acked_before = len(bg.acked)
        wait_for("writes after the run", lambda: len(bg.acked) > acked_before + 5, timeout=30)
    finally:
        bg.join()
    assert out.returncode == 1, out.stderr[-4000:]
    result = out.json()
    failure = result["failure"]
    assert failure["step"] == "switchover:db2", failure
    assert "hook before_switch" in failure["reason"], failure
    assert "moving the VIP to db2" in failure["reason"], failure
    assert "db1 is still the writable source" in failure["next_steps"][0], failure
    assert bg.overlaps == []
    assert bg.writable() == ["db1"]
    assert ready_count(cluster, "db1") == starts["db1"]  # the old source was not restarted
    for name in ("db2", "db3"):
        assert ready_count(cluster, name) == starts[name] + 1, name
    assert result["state"] == "ERROR" and "PING_OK" in result["mha_after"]
    present = {int(r["id"]) for r in cluster.sql("db1", "SELECT id FROM labdb.writes")}
    assert not set(bg.acked) - present
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


def test_a_long_transaction_on_the_source_is_refused_or_killed(
    refusing: LabCluster, tmp_path: Path
) -> None:
    cluster = refusing
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
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
    refusing: LabCluster, tmp_path: Path
) -> None:
    """db2 (the candidate) applies 3 s late with writes flowing: within max_lag (5 s) for the
    restarts, over --switch-max-lag (1 s): the switch is refused before it changes anything."""
    cluster = refusing
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    cluster.set_delay("db2", 3)
    bg = writer_from(cluster)
    try:
        bg.start()
        wait_for("the first acknowledged write", lambda: bg.acked, timeout=60)
        out = run_switchover(cluster, inventory, tmp_path, "lagging")
    finally:
        bg.join()
        cluster.set_delay("db2", 0)
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
            switch = json.loads(current(path.read_bytes())).get("memory", {}).get("switch")
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


# --- #21 probe 7: strings never reach SQL text (on the shared refusing cluster) --------------

PROBE7 = "fe80::1%x', MASTER_USER='root', MASTER_HOST='evil.example"


def test_probe7_inventory_is_refused_by_plan_and_run_with_nothing_changed(
    refusing: LabCluster, tmp_path: Path
) -> None:
    """#21 probe 7 on a real lab: a replication_host carrying SQL (`'` and assignments behind
    an IPv6 zone id) is refused at load by `plan` and `run` (exit 2, one line naming the
    field); no node restarted, MHA untouched (same pid), db1 still the only writable node,
    the replicas still replicate from db1, no journal written."""
    cluster = refusing
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    doc = yaml.safe_load(inventory.read_text())
    doc["groups"][0]["replicas"][0]["replication_host"] = PROBE7
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    mha_before = cluster.mha_status()
    assert mha_before[0] == 0 and "PING_OK" in mha_before[1], mha_before
    state = tmp_path / "state"
    for args in (("plan",), ("run", "--yes")):
        out = harestart(
            *args, str(inventory), "--source-strategy", "switchover", state_dir=state,
            env={"LAB_REPL_PASSWORD": cluster.repl_password},
        )  # fmt: skip
        assert out.returncode == 2, (args, out.stdout, out.stderr[-2000:])
        assert "Traceback" not in out.stderr and "evil.example" not in out.stdout, args
        lines = [ln for ln in out.stderr.splitlines() if "replication_host" in ln]
        assert len(lines) == 1 and "groups[0].replicas[0].replication_host: " in lines[0], lines
        assert "IPv6 zone id" in lines[0] and lines[0].endswith("node 'db2')"), lines
    assert {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes} == starts
    assert cluster.mha_status() == mha_before
    assert Background(cluster).writable() == ["db1"]
    for r in cluster.replicas:
        status = cluster.replica_status(r.name)
        assert status["source_host"] == "db1", status["raw"]
        assert cluster.replicating(r.name), r.name
    assert not list(state.rglob("*.json"))


def test_a_replication_password_with_quotes_backslash_and_percent_switches_over(
    refusing: LabCluster, tmp_path: Path
) -> None:
    """#21's SQL paragraph on a real lab: the replication password holds `'`, `\\`, `%` and
    `"` (a legitimate password). Pasted into CHANGE MASTER it would break the statement (or
    pymysql's %-formatting); sent as a parameter, a switchover run re-points every replica with
    it, away and back, and the replicas replicate afterwards (they authenticated with it)."""
    cluster = refusing
    password = f"Re'pl\\%s\"{uuid.uuid4().hex[:12]}"
    # As root on the socket (the admin account cannot ALTER USER); replicated to every node.
    cluster._sql_exec(cluster.source, "ALTER USER 'repl'@'%%' IDENTIFIED BY %s", (password,))
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    try:
        # The replicas use it before the run (their restarts reconnect); from the switch on,
        # every node replicates with what harestart's CHANGE statements sent.
        for r in cluster.replicas:
            cluster.repoint(r.name, "db1", password)
        cluster.wait_replicated(timeout=120)
        out = harestart(
            "run", str(inventory), "--yes", "--format", "json",
            "--source-strategy", "switchover",
            "--log-file", str(tmp_path / "run.jsonl"),
            state_dir=tmp_path / "state", env={"LAB_REPL_PASSWORD": password},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-4000:]
        assert out.json()["state"] == "ACTIVE"
        assert password not in out.stdout + out.stderr
        assert password not in (tmp_path / "run.jsonl").read_text()
        for n in cluster.db_nodes:  # the switch happened: every node restarted once
            assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
        assert Background(cluster).writable() == ["db1"]
        # A row written now reaches both replicas: they reconnected with the new password.
        next_id = cluster.sql("db1", "SELECT COALESCE(MAX(id), 0) + 1 AS n FROM labdb.writes")
        row_id = int(next_id[0]["n"])
        cluster.sql("db1", "INSERT INTO labdb.writes VALUES (%s, %s)", (row_id, password))
        cluster.wait_replicated(timeout=120)
        for r in cluster.replicas:
            got = cluster.sql(r.name, "SELECT payload FROM labdb.writes WHERE id = %s", (row_id,))
            assert got and got[0]["payload"] == password, r.name
        assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)
    finally:  # leave the shared cluster as the fixture promises: the lab's own password
        cluster._sql_exec(
            cluster.source, "ALTER USER 'repl'@'%%' IDENTIFIED BY %s", (cluster.repl_password,)
        )
        for r in cluster.replicas:
            cluster.repoint(r.name, "db1")
        cluster.wait_replicated(timeout=120)


# --- #22 defect 3: MySQL 8.3+ tagged GTIDs (on the shared refusing cluster) ------------------


# MySQL only (MariaDB has no GTID tags; its switchover runs in the tests above): the module's
# MySQL `refusing` cluster, shared with the tests above (pytest reuses the module-scoped
# instance for the same flavour). The module's last test: the tag it leaves in the cluster's
# history reaches no other test.
@pytest.mark.parametrize("flavor", ["mysql"], indirect=True)
def test_a_source_with_tagged_gtids_switches_over_and_back(
    refusing: LabCluster, tmp_path: Path
) -> None:
    """#22 defect 3 on the real lab: after one transaction with
    ``SET gtid_next='AUTOMATIC:audit'`` on the source (gtid_executed ``uuid:1-N:audit:1``),
    `status` reads the group and a switchover run finishes (exit 0): the source role went to
    db2 and back, every node restarted once, MHA monitors again. (Before #22 the run died
    after the replicas' restarts with a ValueError on 'audit', MHA left stopped.)"""
    cluster = refusing
    assert cluster.flavor == "mysql"
    next_id = cluster.sql("db1", "SELECT COALESCE(MAX(id), 0) + 1 AS n FROM labdb.writes")
    # As root on the socket: the TRANSACTION_GTID_TAG privilege.
    cluster._sql_exec(
        cluster.source,
        "SET gtid_next='AUTOMATIC:audit'; INSERT INTO labdb.writes VALUES (%s, 'tagged')",
        (int(next_id[0]["n"]),),
    )
    executed = cluster.source_gtid()
    assert ":audit:1" in executed, executed
    cluster.wait_replicated(timeout=120)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    env = {"LAB_REPL_PASSWORD": cluster.repl_password}
    state = tmp_path / "state"

    status = harestart("status", str(inventory), "--format", "json", state_dir=state, env=env)
    assert status.returncode == 0, status.stderr[-4000:]
    doc = status.json()
    assert doc["healthy"] is True and doc["state"] == "ACTIVE", doc
    source = next(n for n in doc["nodes"] if n["name"] == "db1")
    assert ":audit:1" in source["gtid_position"], source

    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    out = run_switchover(cluster, inventory, tmp_path, "tagged")
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Traceback" not in out.stderr
    result = out.json()
    assert result["state"] == "ACTIVE" and result["failure"] is None, result
    switches = [(s["host"], s["status"]) for s in result["steps"] if s["action"] == "switchover"]
    assert switches == [("db2", "done"), ("db1", "done")], result["steps"]
    for n in cluster.db_nodes:  # every node restarted exactly once by this run
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
    assert Background(cluster).writable() == ["db1"]
    cluster.wait_replicated(timeout=120)
    for n in cluster.db_nodes:  # the tagged transaction is in every node's history
        rows = cluster.sql(
            n.name, "SELECT GTID_SUBSET(%s, @@global.gtid_executed) AS ok", (executed,)
        )
        assert int(rows[0]["ok"]) == 1, n.name
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)
    status = harestart("status", str(inventory), "--format", "json", state_dir=state, env=env)
    assert status.returncode == 0 and status.json()["state"] == "ACTIVE", status.stdout
