"""The lab's HAProxy and the example hook script (lab/hooks/haproxy_hook.py) on a real cluster.

A cluster of each flavour (db1 source, db2 + db3 replicas) with ``start_cluster(proxy=True)``
(HAProxy checks MariaDB by logging in, MySQL 9 by its greeting; see lab/entrypoint.sh):
- the writer frontend reaches the source and writes work; the reader frontend reaches only the
  replicas;
- the hook script, run by hand with harestart's hook environment, drains a replica before its
  mysqld restarts: a reader querying through the reader frontend the whole time sees no failed
  query; after the restart the hook makes it ready and HAProxy reports it UP;
- a drain that cannot finish (a client holds a session) fails the hook with a clear message;
- `harestart run --source-strategy switchover` with those hooks in the persistent mode (one
  hook process for the run, each event a JSON line on its stdin, recorded with tee): the
  program gets the hello and every event in the plan's order, once; an application writing
  through the writer frontend loses no acknowledged write and follows the source away and
  back (writing on db1 again at the end), and readers through the reader frontend see no
  failed query;
- a persistent hook program that dies mid-run (after answering db2's before_node_restart)
  fails that event with its exit status and stderr: db2 was restarted, nothing after it, exit
  1, the group ERROR, MHA started again (the group is healthy), the program gone;
- after_switch moves the writer: writes through the writer frontend land on the new source.
  This hand-made switch (last: it writes on db2 while db1 does not replicate from it) leaves
  db2 with a transaction db1 never had, which a harestart switchover rightly refuses.

The tests run in file order and put the cluster back as they found it (the switch is undone).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from . import lab
from .harestart_cli import harestart, log_events
from .lab import HOST, LabCluster, LabProxy, ready_count, wait_for
from .switching import APP_PASSWORD, APP_USER, prepare, switch_inventory
from .writer import Writer, longest_gap

pytestmark = pytest.mark.integration

HOOK = lab.REPO_ROOT / "lab" / "hooks" / "haproxy_hook.py"
QUERY_INTERVAL = 0.02  # seconds between the reader's queries
POINTS = ("before_node_restart", "after_node_restart", "before_switch", "after_switch")

# A persistent hook program that answers its hello and the first event, then dies at the second
# (after saying so on stderr). It records what it receives and its pid.
DYING = r"""
import json, os, sys
with open("program.pid", "w") as f:
    f.write(str(os.getpid()))
hello = json.loads(sys.stdin.readline())
print(json.dumps({"harestart-hook": 1, "capabilities": hello["capabilities"]}), flush=True)
for n, line in enumerate(sys.stdin, 1):
    with open("received.jsonl", "a") as f:
        f.write(line)
    if n == 2:
        print("lost the proxy's socket; giving up", file=sys.stderr, flush=True)
        sys.exit(3)
    print(json.dumps({"id": json.loads(line)["id"], "ok": True}), flush=True)
"""


@pytest.fixture(scope="module")
def cluster(lab_docker: None, flavor: str, request: pytest.FixtureRequest) -> Iterator[LabCluster]:
    artifacts = lab.ARTIFACTS_DIR / lab._safe_name(f"{request.node.name}-proxy-{flavor}")
    c = lab.start_cluster(2, artifacts=artifacts, proxy=True, flavor=flavor)
    try:
        yield c
    finally:
        if request.session.testsfailed:
            c.save_logs(artifacts)
        c.stop()


def proxy_of(cluster: LabCluster) -> LabProxy:
    assert cluster.proxy is not None
    return cluster.proxy


def connect(cluster: LabCluster, port: int, **kw: Any) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=HOST,
        port=port,
        user=cluster.admin_user,
        password=cluster.admin_password,
        connect_timeout=3,
        read_timeout=10,
        write_timeout=10,
        autocommit=True,
        **kw,
    )


def server_id(cluster: LabCluster, port: int) -> int:
    conn = connect(cluster, port)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@server_id")
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


def run_hook(
    cluster: LabCluster, hook: str, node: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    """The hook script as harestart runs it: the hook environment, HAPROXY_API the published
    runtime API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARESTART_", "HAPROXY_"))}
    env.update(
        {
            "HARESTART_HOOK": hook,
            "HARESTART_ACCOUNT": "100001",
            "HARESTART_GROUP": "lab",
            "HARESTART_RUN_ID": "test-proxy",
            "HARESTART_NODE": node,
            "HARESTART_NODE_HOST": node,
            "HARESTART_ROLE": "source" if node == cluster.source.name else "replica",
            "HARESTART_OLD_SOURCE": cluster.source.name,
            "HARESTART_NEW_SOURCE": "",
            "HARESTART_STRATEGY": "restart",
            "HAPROXY_API": proxy_of(cluster).api,
            **extra,
        }
    )
    return subprocess.run(
        [sys.executable, str(HOOK)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Reader:
    """Queries ``SELECT @@server_id`` through the reader frontend, a new connection each time
    (as a pooled client reconnecting would), until ``stop`` is set."""

    cluster: LabCluster
    port: int
    stop: threading.Event = field(default_factory=threading.Event)
    served: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, server_id)
    failures: list[str] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reader", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "reader thread did not stop"

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.served.append((time.monotonic(), server_id(self.cluster, self.port)))
            except Exception as exc:
                self.failures.append(f"{time.monotonic():.3f} {type(exc).__name__}: {exc}")
            self.stop.wait(QUERY_INTERVAL)

    def served_by(self, sid: int, since: float, until: float = float("inf")) -> int:
        return sum(1 for t, s in self.served if s == sid and since <= t <= until)


def test_writer_frontend_reaches_the_source_and_writes(cluster: LabCluster) -> None:
    proxy = proxy_of(cluster)
    assert server_id(cluster, proxy.writer_port) == 1
    conn = connect(cluster, proxy.writer_port)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS labdb.proxy_t (id INT PRIMARY KEY, sid INT)")
            cur.execute("INSERT INTO labdb.proxy_t VALUES (1, @@server_id)")
    finally:
        conn.close()
    assert cluster.sql("db1", "SELECT sid FROM labdb.proxy_t WHERE id = 1") == [{"sid": 1}]
    servers = proxy.servers()
    assert servers[("writer", "db1")]["status"] == "UP"
    assert servers[("writer", "db2")]["status"] == "MAINT"
    assert servers[("writer", "db3")]["status"] == "MAINT"


def test_reader_frontend_reaches_only_replicas(cluster: LabCluster) -> None:
    proxy = proxy_of(cluster)
    seen = [server_id(cluster, proxy.reader_port) for _ in range(12)]
    assert set(seen) == {2, 3}, seen  # round robin over both replicas, never the source


def test_drained_replica_restarts_without_failed_reads(cluster: LabCluster) -> None:
    proxy = proxy_of(cluster)
    before = lab.ready_count(cluster, "db2")
    reader = Reader(cluster, proxy.reader_port)
    reader.start()
    try:
        wait_for("reads served by db2 before the drain", lambda: reader.served_by(2, 0) >= 3)
        drain = run_hook(cluster, "before_node_restart", "db2")
        assert drain.returncode == 0, drain.stderr
        assert "readers/db2 drained" in drain.stdout
        drained_at = time.monotonic()
        assert proxy.status("readers", "db2") == "DRAIN"
        assert proxy.servers()[("readers", "db2")]["scur"] == "0"

        code, out = cluster.exec("db2", cluster.restart_command)
        assert code == 0, out
        wait_for("db2's mysqld answering again", lambda: cluster.sql("db2", "SELECT 1"))
        restarted_at = time.monotonic()
        # The reader keeps going through the restart and after it, all on db3.
        wait_for("reads after the restart", lambda: reader.served_by(3, restarted_at) >= 10)
        assert reader.served_by(2, drained_at) == 0, "a drained server got new connections"

        ready = run_hook(cluster, "after_node_restart", "db2")
        assert ready.returncode == 0, ready.stderr
        assert "readers/db2 ready and UP" in ready.stdout
        assert proxy.status("readers", "db2") == "UP"
        back_at = time.monotonic()
        wait_for("reads served by db2 again", lambda: reader.served_by(2, back_at) >= 3)
    finally:
        reader.join()
    assert lab.ready_count(cluster, "db2") == before + 1, "db2's mysqld did not restart once"
    assert reader.failures == [], reader.failures
    # Reads went on while db2's mysqld was down (a busy machine may run only a few per second).
    assert reader.served_by(3, drained_at, restarted_at) >= 1


def test_drain_that_cannot_finish_fails_the_hook(cluster: LabCluster) -> None:
    proxy = proxy_of(cluster)
    held: list[pymysql.connections.Connection[Any]] = []
    try:
        # A client session on db2 that stays open through the drain.
        def on_db2() -> bool:
            conn = connect(cluster, proxy.reader_port)
            held.append(conn)
            with conn.cursor() as cur:
                cur.execute("SELECT @@server_id")
                row = cur.fetchone()
            return row is not None and int(row[0]) == 2

        wait_for("a session through the reader frontend on db2", on_db2, timeout=30)
        started = time.monotonic()
        result = run_hook(cluster, "before_node_restart", "db2", HAPROXY_DRAIN_TIMEOUT="2")
        assert result.returncode == 1
        assert "FAILED: timed out after 2s waiting for readers/db2" in result.stderr
        assert "1 current sessions" in result.stderr
        assert time.monotonic() - started < 30
        assert proxy.status("readers", "db2") == "DRAIN"

        # With HAPROXY_DRAIN_CUT the hook cuts the session left at the timeout and succeeds.
        cut = run_hook(
            cluster, "before_node_restart", "db2", HAPROXY_DRAIN_TIMEOUT="1", HAPROXY_DRAIN_CUT="1"
        )
        assert cut.returncode == 0, cut.stderr
        assert "sessions left cut (HAPROXY_DRAIN_CUT)" in cut.stdout
        wait_for(
            "no session left on readers/db2",
            lambda: proxy.servers()[("readers", "db2")]["scur"] == "0",
            timeout=10,
        )
        with pytest.raises(pymysql.err.OperationalError), held[-1].cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        for conn in held:
            conn.close()
        assert run_hook(cluster, "after_node_restart", "db2").returncode == 0
    assert proxy.status("readers", "db2") == "UP"


def test_a_switchover_run_through_the_proxy_loses_no_write_and_fails_no_read(
    cluster: LabCluster, tmp_path: Path
) -> None:
    proxy = proxy_of(cluster)
    prepare(cluster)
    inventory = switch_inventory(cluster, tmp_path / "inv.yml")
    doc = yaml.safe_load(inventory.read_text())
    # The persistent mode: one program for the run; tee records each line it is sent.
    received = tmp_path / "received.jsonl"
    command = f"tee -a {received} | HAPROXY_API={proxy.api} {sys.executable} {HOOK}"
    doc["defaults"]["hooks"] = {
        **{p: {"command": command, "timeout": 60} for p in POINTS},
        "mode": "persistent",
    }
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    writer = Writer(HOST, proxy.writer_port, APP_USER, APP_PASSWORD)
    reader = Reader(cluster, proxy.reader_port)
    writer.start()
    reader.start()
    try:
        wait_for("the first write through the proxy", lambda: writer.acked, timeout=60)
        out = harestart(
            "run", str(inventory), "--yes", "--format", "json",
            "--source-strategy", "switchover", "--log-file", str(tmp_path / "run.jsonl"),
            state_dir=tmp_path / "state", env={"LAB_REPL_PASSWORD": cluster.repl_password},
        )  # fmt: skip
        done = len(writer.acked)
        wait_for("writes after the run", lambda: len(writer.acked) > done + 5, timeout=30)
    finally:
        writer.join()
        reader.join()
    print(
        f"\nswitchover through HAProxy: {len(writer.acked)} writes acknowledged, "
        f"{writer.errors} failed, longest gap {longest_gap(writer.acked):.3f} s; "
        f"{len(reader.served)} reads"
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.json()["state"] == "ACTIVE"
    for n in cluster.db_nodes:  # every node restarted once, the old source as a replica
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
    assert reader.failures == []
    assert proxy.status("writer", "db1") == "UP" and proxy.status("writer", "db2") == "MAINT"
    assert server_id(cluster, proxy.writer_port) == 1  # the writer is back on db1
    # One program got the hello, then every event in the plan's order, each once.
    lines = [json.loads(line) for line in received.read_text().splitlines()]
    assert lines[0] == {"harestart-hook": 1, "capabilities": list(POINTS)}
    assert [(e["point"], e["node"], e["old_source"], e["new_source"]) for e in lines[1:]] == [
        ("before_node_restart", "db2", "db1", "db1"),
        ("after_node_restart", "db2", "db1", "db1"),
        ("before_node_restart", "db3", "db1", "db1"),
        ("after_node_restart", "db3", "db1", "db1"),
        ("before_switch", "db1", "db1", "db2"),
        ("after_switch", "db1", "db1", "db2"),
        ("before_node_restart", "db1", "db2", "db2"),  # the old source, as a replica
        ("after_node_restart", "db1", "db2", "db2"),
        ("before_switch", "db2", "db2", "db1"),  # the switch back
        ("after_switch", "db2", "db2", "db1"),
    ]
    assert {e["strategy"] for e in lines[1:]} == {"switchover"}
    events = log_events(tmp_path / "run.jsonl")
    assert [e["event"] for e in events if e["event"].startswith("hook.program")] == [
        "hook.program_started",
        "hook.program_stopped",
    ]
    stopped = next(e for e in events if e["event"] == "hook.program_stopped")
    assert stopped["ended"] == "exited 0"  # it ended at the end of its input
    finished = [e for e in events if e["event"] == "hook.finished"]
    assert len(finished) == 10 and {e["answer"] for e in finished} == {"ok"}
    assert {sid for _, sid in reader.served} <= {2, 3}  # the readers backend: db2 and db3
    cluster.wait_replicated(timeout=120)
    acked = {row_id for row_id, _ in writer.acked}
    for n in cluster.db_nodes:
        present = {int(r["id"]) for r in cluster.sql(n.name, "SELECT id FROM labdb.writes")}
        assert not acked - present, f"{n.name} lacks {sorted(acked - present)[:10]}"
    assert "PING_OK" in cluster.wait_mha("PING_OK", timeout=60)


def test_a_persistent_hook_that_dies_mid_run_fails_its_event(
    cluster: LabCluster, tmp_path: Path
) -> None:
    (tmp_path / "dying.py").write_text(DYING)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    doc = yaml.safe_load(inventory.read_text())
    command = f"{sys.executable} dying.py"  # run in the inventory's directory
    doc["defaults"]["hooks"] = {
        "mode": "persistent",
        "before_node_restart": {"command": command, "timeout": 60},
        "after_node_restart": {"command": command, "timeout": 60},
    }
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    cluster.wait_mha("PING_OK")
    out = harestart("run", str(inventory), "--yes", "--format", "json",
                    state_dir=tmp_path / "state")  # fmt: skip
    assert out.returncode == 1, out.stderr[-4000:]
    result = out.json()
    failure = result["failure"]
    assert failure["step"] == "restart_replica:db2" and failure["host"] == "db2"
    assert failure["reason"].startswith(
        f"hook after_node_restart for db2 failed: the persistent program `{command}` exited 3 "
        "before answering this event; stderr (its last 4096 bytes at most):\n"
        "  | lost the proxy's socket; giving up"
    )
    assert "db2 was restarted and passed its checks" in failure["next_steps"][0]
    # db2 restarted once, nothing after it; the failure policy started MHA again.
    assert ready_count(cluster, "db2") == starts["db2"] + 1
    assert ready_count(cluster, "db3") == starts["db3"]
    assert ready_count(cluster, "db1") == starts["db1"]
    assert result["state"] == "ERROR" and result["failover_enabled"] is True
    assert failure["failover"] and "PING_OK" in result["mha_after"]
    received = [json.loads(line) for line in (tmp_path / "received.jsonl").read_text().splitlines()]
    assert [(e["point"], e["node"]) for e in received] == [
        ("before_node_restart", "db2"),
        ("after_node_restart", "db2"),
    ]
    pid = int((tmp_path / "program.pid").read_text())
    wait_for(f"the program ({pid}) gone", lambda: not running(pid), timeout=30)
    cluster.wait_replicated(timeout=120)


def running(pid: int) -> bool:
    """Alive and not a zombie (one its new parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_switch_hook_refuses_an_unknown_node(cluster: LabCluster) -> None:
    result = run_hook(
        cluster, "before_switch", "db1", HARESTART_OLD_SOURCE="db1", HARESTART_NEW_SOURCE="db9"
    )
    assert result.returncode == 1
    assert "not a server of backend writer: db9" in result.stderr
    assert proxy_of(cluster).status("writer", "db1") == "UP"


def write_through(cluster: LabCluster, port: int, row_id: int) -> int:
    """Insert a row through the writer frontend; the server_id that took it."""
    conn = connect(cluster, port)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO labdb.proxy_t VALUES (%s, @@server_id)", (row_id,))
            cur.execute("SELECT @@server_id")
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


def set_writable(cluster: LabCluster, node: str, writable: bool) -> None:
    """read_only off/on; on MySQL super_read_only too (turning read_only off turns it off, and
    turning super_read_only on turns read_only on)."""
    if cluster.flavor == "mysql" and not writable:
        cluster.sql(node, "SET GLOBAL super_read_only = 1")
    else:
        cluster.sql(node, f"SET GLOBAL read_only = {0 if writable else 1}")


def switch(cluster: LabCluster, old: str, new: str) -> None:
    """What a switchover does to the servers, by hand: old read-only, new writable, then the
    hooks move the writer."""
    env = {"HARESTART_OLD_SOURCE": old, "HARESTART_NEW_SOURCE": new}
    env["HARESTART_STRATEGY"] = "switchover"
    before = run_hook(cluster, "before_switch", old, **env)
    assert before.returncode == 0, before.stderr
    set_writable(cluster, old, False)
    set_writable(cluster, new, True)
    after = run_hook(cluster, "after_switch", old, **env)
    assert after.returncode == 0, after.stderr
    assert f"writer moved: writer/{new} UP, writer/{old} in maintenance" in after.stdout


def test_after_switch_moves_the_writer(cluster: LabCluster) -> None:
    proxy = proxy_of(cluster)
    read_only_before = {n: cluster.read_only_state(n) for n in ("db1", "db2")}
    try:
        switch(cluster, "db1", "db2")
        assert proxy.status("writer", "db2") == "UP"
        assert proxy.status("writer", "db1") == "MAINT"
        assert write_through(cluster, proxy.writer_port, 2) == 2
        assert cluster.sql("db2", "SELECT sid FROM labdb.proxy_t WHERE id = 2") == [{"sid": 2}]
    finally:
        switch(cluster, "db2", "db1")
    assert proxy.status("writer", "db1") == "UP"
    assert proxy.status("writer", "db2") == "MAINT"
    assert write_through(cluster, proxy.writer_port, 3) == 1
    assert {n: cluster.read_only_state(n) for n in ("db1", "db2")} == read_only_before
    assert read_only_before["db1"][0] is False
    assert read_only_before["db2"][0] is True
