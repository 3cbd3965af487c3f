"""`make bench` (issue #13, "Measure"): the write gap of each source strategy, small vs large
dirty buffer pool, through the lab's HAProxy.

    python -m bench.writegap [--pools 256M,4G] [--strategies restart,switchover]
                             [--hook-modes event,persistent] [--loads quiet,loaded]
                             [--repeat N] [--json PATH]

One MariaDB lab cluster (db1 source, db2 + db3 replicas, MHA) behind HAProxy
(``start_cluster(2, proxy=True)``; MariaDB only: the proxy's health checks are tested on
MariaDB), prepared for a switchover as tests/integration/switching.py does it (the
source's option file read-only, the replication account in the inventory, an application
account without SUPER that read_only stops), with lab/hooks/haproxy_hook.py as the run's hooks
(a replica is drained from the reader backend before its restart; the writer backend moves at
each switch). For each buffer-pool size:

- every DB node gets ``innodb_buffer_pool_size`` in an extra option file and mysqld restarts
  (through the lab, MHA stopped meanwhile: not through harestart). The source also gets
  settings that keep pages dirty (max_dirty_pages_pct 90, no pre-flushing, no adaptive
  flushing, io_capacity 100, a redo log 2x the pool so no checkpoint forces a flush);
- before each run a bench table is filled on the SOURCE ONLY (``sql_log_bin=0``: nothing
  replicated, no GTID, so no errant transaction) until ~85% of its pool is in use, and the
  dirty pages reached are recorded. The replicas' pools stay clean on purpose: the restart
  strategy's gap is the source's own shutdown + start (the flush of its dirty pages), and the
  switchover's gap is the switch itself, which never waits for a restart;
- for each strategy: lab/demo_writer.py's writer (one insert per ~10 ms through the writer
  frontend, as the application account; each acknowledged id recorded) and a reader (a new
  connection and ``SELECT 1`` every ~20 ms through the reader frontend) run while
  ``harestart run INVENTORY --yes --format json --source-strategy S`` runs; recorded: exit
  code, wall time, longest write gap, write-unavailable time (gaps > 100 ms), failed writes
  and reads, acknowledged rows missing from the source afterwards, and for a switchover the
  longest gap of each switch (away and back), matched to the run log's ``switch.source_read_only``
  and ``after_switch`` hook events.

Each run is repeated for each hook mode (``hooks.mode``: ``event``, a python3 process per
hook; ``persistent``, one haproxy_hook.py process per run getting each event on its stdin) and
each load: ``quiet`` (the machine as it is: other jobs may run on it, the load average is
recorded before and after each run) and ``loaded`` (a CPU burner: 2x the cores' busy-looping
processes, at the bench's own niceness, for the whole run, started before the writer).

Results: one table row per run with the targets (switchover, #24: the longest gap per switch
<= 0.1 s quiet and <= 0.3 s loaded, at every pool size; restart: grows with the pool) and JSON
(default build/bench-writegap.json), with the load average before and after every run. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql
import yaml

from lab import demo_writer
from tests.integration import lab
from tests.integration.switching import configure_source_read_only, switch_inventory

REPO = Path(__file__).resolve().parents[1]
HOOK = REPO / "lab" / "hooks" / "haproxy_hook.py"
APP_USER = "bench_app"
BENCH_TABLE = "labdb.bench_dirty"  # a constant: the f-strings below never take outside input
FILL_TARGET = 0.85  # fraction of the source's buffer pool filled with dirty pages
ROW_BYTES = 1100  # a 1,000-byte payload row as InnoDB stores it (for sizing the chunks)
MAX_CHUNK_ROWS = 50_000
TARGET_SWITCH_GAP_S = {"quiet": 0.1, "loaded": 0.3}  # issue #24, per switch
HOOK_MODES = ("event", "persistent")
LOADS = ("quiet", "loaded")
READ_INTERVAL = 0.02
RUN_TIMEOUT = 1800.0


def parse_size(text: str) -> int:
    """``256M`` / ``4G`` -> bytes."""
    m = re.fullmatch(r"(\d+)([MG])", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"a pool size is like 256M or 4G (got {text!r})")
    return int(m.group(1)) << (20 if m.group(2) == "M" else 30)


def size_label(n: int) -> str:
    return f"{n >> 30} GB" if n >= 1 << 30 and n % (1 << 30) == 0 else f"{n >> 20} MB"


# --- the cluster ------------------------------------------------------------------------------


def option_file(pool: int, source: bool) -> str:
    lines = ["[mysqld]", f"innodb_buffer_pool_size = {pool}"]
    if source:  # keep the source's pages dirty until its shutdown flushes them
        lines += [
            "innodb_max_dirty_pages_pct = 90",
            "innodb_max_dirty_pages_pct_lwm = 0",
            "innodb_adaptive_flushing = OFF",
            "innodb_io_capacity = 100",
            "innodb_io_capacity_max = 100",
            f"innodb_log_file_size = {max(2 * pool, 512 << 20)}",
            "innodb_buffer_pool_load_at_startup = OFF",
        ]
    return "\n".join(lines) + "\n"


def mha_stopped(cluster: lab.LabCluster) -> bool:
    return "NOT_RUNNING" in cluster.mha_status()[1]


def restart_mysqld(cluster: lab.LabCluster, node: lab.LabNode) -> None:
    code, out = cluster.exec(node, cluster.restart_command)
    if code != 0:
        raise RuntimeError(f"{node.name}: `{cluster.restart_command}` exited {code}: {out}")
    lab.wait_for(f"{node.name} answering", lambda: cluster.sql(node, "SELECT 1 AS ok"), timeout=600)


def configure_pool(cluster: lab.LabCluster, pool: int) -> None:
    """The pool size on every DB node (and the dirty-keeping settings on the source), each
    mysqld restarted with MHA stopped; then replication, MHA and HAProxy back as they were."""
    cluster.exec(cluster.manager, ["masterha_stop", f"--conf={cluster.mha_config}"])
    lab.wait_for("MHA stopped", lambda: mha_stopped(cluster), timeout=120, interval=1.0)
    for node in (*cluster.replicas, cluster.source):
        text = option_file(pool, node is cluster.source)
        path = f"{cluster.config_dir}/70-bench.cnf"
        code, out = cluster.exec(node, ["sh", "-c", f"cat > {path} <<'EOF'\n{text}EOF"])
        if code != 0:
            raise RuntimeError(f"{node.name}: could not write {path}: {out}")
        restart_mysqld(cluster, node)
    # The source's option file says read_only (switchover-ready): the running source is writable.
    cluster.sql(cluster.source, "SET GLOBAL read_only = OFF")
    for r in cluster.replicas:  # reconnect now, not after Connect_Retry
        cluster.stop_replication(r)
        cluster.start_replication(r)
    cluster.wait_replicated(timeout=300)
    cluster.start_mha()
    cluster.wait_mha("PING_OK", timeout=180)
    wait_proxy(cluster)


def wait_proxy(cluster: lab.LabCluster) -> None:
    proxy = cluster.proxy
    assert proxy is not None
    wanted = [("writer", cluster.source.name)] + [("readers", r.name) for r in cluster.replicas]

    def up() -> bool:
        servers = proxy.servers()
        return all(servers[w]["status"] == "UP" for w in wanted)

    lab.wait_for("HAProxy reporting the source and the replicas UP", up, timeout=120)


def create_app_account(cluster: lab.LabCluster) -> str:
    """An application account without SUPER (read_only stops it); replicated to every node."""
    password = secrets.token_hex(16)
    cluster._sql_exec(  # as root on the socket: the admin account has no GRANT OPTION
        cluster.source,
        f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{password}'; "
        f"GRANT SELECT, INSERT ON labdb.* TO '{APP_USER}'@'%'",
        None,
    )
    cluster.sql(
        cluster.source, f"CREATE TABLE IF NOT EXISTS {demo_writer.TABLE} (id BIGINT PRIMARY KEY)"
    )
    cluster.wait_replicated(timeout=120)
    return password


def write_inventory(cluster: lab.LabCluster, path: Path, mode: str = "event") -> Path:
    """The switchover tests' inventory (replication account, lab-network addresses) with the
    HAProxy hooks of lab/hooks/lab-haproxy.yml aimed at this cluster's runtime API, in hook
    mode ``mode``."""
    assert cluster.proxy is not None
    switch_inventory(cluster, path)
    doc = yaml.safe_load(path.read_text())
    command = f"HAPROXY_API={cluster.proxy.api} {sys.executable} {HOOK}"
    hooks: dict[str, Any] = {
        point: {"command": command, "timeout": 60}
        for point in ("before_node_restart", "after_node_restart", "before_switch", "after_switch")
    }
    doc["defaults"]["hooks"] = {**hooks, "mode": mode}
    # A dirty 4 GB source takes minutes to shut down: the run must wait for it.
    doc["defaults"]["health"]["restart_timeout"] = 900
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- dirtying the source's pool ---------------------------------------------------------------


def pool_status(conn: pymysql.connections.Connection[Any]) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_%'")
        rows = {str(k): v for k, v in cur.fetchall()}
        cur.execute("SELECT @@innodb_page_size")
        row = cur.fetchone()
    assert row is not None
    return {
        "page_size": int(row[0]),
        "total": int(rows["Innodb_buffer_pool_pages_total"]),
        "free": int(rows["Innodb_buffer_pool_pages_free"]),
        "dirty": int(rows["Innodb_buffer_pool_pages_dirty"]),
    }


def source_conn(cluster: lab.LabCluster) -> pymysql.connections.Connection[Any]:
    n = cluster.source
    return pymysql.connect(
        host=lab.HOST,
        port=n.mysql_port or 0,
        user=cluster.admin_user,
        password=cluster.admin_password,
        database="labdb",  # the Sequence engine's seq_1_to_N tables need a current database
        connect_timeout=5,
        autocommit=True,
    )


def fill_dirty(cluster: lab.LabCluster) -> dict[str, float]:
    """Recreate the bench table on the source alone and insert 1,000-byte rows until ~85% of
    its pool is in use; returns the seconds it took and the pages reached."""
    started = time.monotonic()
    conn = source_conn(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")  # the source only: no binlog, no GTID
            cur.execute(f"DROP TABLE IF EXISTS {BENCH_TABLE}")
            cur.execute(
                f"CREATE TABLE {BENCH_TABLE} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                "payload VARCHAR(1000) NOT NULL) ENGINE=InnoDB"
            )
            while True:
                st = pool_status(conn)
                room = st["free"] - int((1 - FILL_TARGET) * st["total"])
                rows = min(MAX_CHUNK_ROWS, room * st["page_size"] // ROW_BYTES)
                if rows < 100:
                    break
                cur.execute(  # MariaDB's Sequence engine: seq_1_to_N has N rows
                    f"INSERT INTO {BENCH_TABLE} (payload) "  # noqa: S608 - constants and an int
                    f"SELECT REPEAT(CHAR(65 + seq MOD 26), 1000) FROM seq_1_to_{int(rows)}"
                )
        st = pool_status(conn)
    finally:
        conn.close()
    return {
        "fill_s": round(time.monotonic() - started, 1),
        "pool_pages": st["total"],
        "used_pages": st["total"] - st["free"],
        "dirty_pages_after_fill": st["dirty"],
    }


# --- the writer, the reader and one run -------------------------------------------------------


@dataclass
class Writer:
    """lab/demo_writer.py's ``write`` loop in a thread, through the writer frontend."""

    port: int
    password: str = field(repr=False)
    stop: threading.Event = field(default_factory=threading.Event)
    acked: list[tuple[int, float]] = field(default_factory=list)  # (id, monotonic)
    failures: dict[str, int] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        args = (self.stop, lab.HOST, self.port, APP_USER, self.password, self.acked, self.failures)
        self._thread = threading.Thread(target=demo_writer.write, args=args, daemon=True)
        self._thread.start()

    def acks_since(self, t: float) -> int:
        return sum(1 for _, at in self.acked[-200:] if at > t)

    def join(self) -> float:
        """Stop; returns the moment (monotonic) the writer was told to stop."""
        stopped = time.monotonic()
        self.stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
        return stopped


@dataclass
class Reader:
    """``SELECT 1`` through the reader frontend, a new connection each time (as a pooled client
    reconnecting would), every ~20 ms until stopped."""

    port: int
    password: str = field(repr=False)
    stop: threading.Event = field(default_factory=threading.Event)
    ok: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def _once(self) -> None:
        conn = pymysql.connect(
            host=lab.HOST,
            port=self.port,
            user=APP_USER,
            password=self.password,
            connect_timeout=2,
            read_timeout=5,
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                self._once()
                self.ok += 1
            except pymysql.MySQLError as exc:
                kind = f"{type(exc).__name__} {exc.args[0] if exc.args else '?'}"
                self.failures[kind] = self.failures.get(kind, 0) + 1
            self.stop.wait(READ_INTERVAL)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reader", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)


@dataclass(frozen=True)
class Bench:
    cluster: lab.LabCluster
    inventories: dict[str, Path]  # by hook mode
    app_password: str = field(repr=False)
    tmp: Path


class Burner:
    """The ``loaded`` runs' CPU burner: ``2 x cores`` processes busy-looping (at the bench's
    own niceness) until ``stop``."""

    def __init__(self, factor: int = 2) -> None:
        self.count = factor * (os.cpu_count() or 1)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs.clear()


def harestart_run(
    bench: Bench, strategy: str, log_file: Path, mode: str = "event"
) -> subprocess.CompletedProcess[str]:
    """``harestart run`` as a user runs it (like tests/integration/harestart_cli.py), its
    journal and lock in a state directory of its own."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=bench.tmp))
    env = {
        **os.environ,
        "HARESTART_STATE_DIR": str(state),
        "LAB_REPL_PASSWORD": bench.cluster.repl_password,
    }
    return subprocess.run(
        [sys.executable, "-m", "harestart", "run", str(bench.inventories[mode]), "--yes",
         "--format", "json", "--source-strategy", strategy, "--log-file", str(log_file)],
        capture_output=True, text=True, cwd=REPO, env=env, check=False, timeout=RUN_TIMEOUT,
    )  # fmt: skip


def wall(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def phases(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """When writes were meant to stop, from the run log: the source's restart step
    (``restart_source:HOST`` started .. finished), and each switch (the old source made
    read-only .. the ``after_switch`` hook, which moves HAProxy's writer, finished)."""
    out: list[dict[str, Any]] = []
    for e in events:
        kind, step = e.get("event"), str(e.get("step", ""))
        if kind == "step.started" and step.startswith("restart_source:"):
            out.append({"what": f"source restart {e.get('host')}", "from": wall(e), "to": None})
        elif kind == "step.finished" and step.startswith("restart_source:") and out:
            out[-1]["to"] = wall(e)
        elif kind == "switch.source_read_only":
            out.append({"what": f"switch from {e.get('host')}", "from": wall(e), "to": None})
        elif kind == "switch.promoted" and out:
            out[-1]["what"] += f" to {e.get('host')}"
            out[-1]["promoted"] = wall(e)
        elif kind == "hook.finished" and e.get("point") == "after_switch" and out:
            out[-1]["to"] = out[-1]["to"] or wall(e)
            out[-1]["hook_s"] = e.get("duration_s")
            out[-1]["hook_mode"] = e.get("mode", "event")
    return out


MARGIN_S = 0.5  # a gap counts for a phase when it overlaps it widened by this much


def per_phase(
    windows: list[dict[str, Any]], gaps: list[tuple[float, float]], t0_wall: float
) -> tuple[list[dict[str, Any]], float]:
    """Per phase: its longest write gap and its write-unavailable time (gaps > 100 ms
    overlapping it); and the longest gap outside every phase (the machine's own noise)."""
    out, claimed = [], set()
    for w in windows:
        lo, hi = w["from"] - MARGIN_S, (w["to"] or w["from"]) + MARGIN_S
        inside = [i for i, (g, at) in enumerate(gaps) if at < hi and at + g > lo]
        claimed.update(inside)
        out.append(
            {
                "what": w["what"],
                "at_s": round(w["from"] - t0_wall, 2),
                "duration_s": round(w["to"] - w["from"], 3) if w["to"] else None,
                "longest_gap_s": round(max((gaps[i][0] for i in inside), default=0.0), 3),
                "unavailable_s": round(demo_writer.unavailable_time([gaps[i] for i in inside]), 3),
            }
        )
        if "promoted" in w:  # a switch: read-only -> candidate writable -> writer moved
            out[-1]["candidate_writable_after_s"] = round(w["promoted"] - w["from"], 3)
            out[-1]["after_switch_hook_s"] = w.get("hook_s")
            if w["to"] and w.get("hook_s") is not None:  # re-pointing the other nodes
                hook_began = w["to"] - w["hook_s"]
                out[-1]["repoint_s"] = round(hook_began - w["promoted"], 3)
    noise = max((g for i, (g, _) in enumerate(gaps) if i not in claimed), default=0.0)
    return out, round(noise, 3)


def missing_rows(cluster: lab.LabCluster, acked: list[tuple[int, float]]) -> int:
    """Acknowledged ids absent from the source's table (lost writes)."""
    rows = cluster.sql(cluster.source, f"SELECT id FROM {demo_writer.TABLE}")  # noqa: S608
    present = {int(r["id"]) for r in rows}
    return sum(1 for i, _ in acked if i not in present)


@dataclass
class Observed:
    """One harestart run under the writer and the reader (times: monotonic)."""

    proc: subprocess.CompletedProcess[str]
    writer: Writer
    reader: Reader
    before: dict[str, int]  # the source's pool just before the run
    t0: float
    t1: float
    t_end: float
    offset: float  # wall clock - monotonic


def observe(bench: Bench, strategy: str, log_file: Path, mode: str = "event") -> Observed:
    proxy = bench.cluster.proxy
    assert proxy is not None
    writer = Writer(proxy.writer_port, bench.app_password)
    reader = Reader(proxy.reader_port, bench.app_password)
    writer.start()
    reader.start()
    try:
        lab.wait_for("writes through the writer frontend", lambda: len(writer.acked) > 10)
        conn = source_conn(bench.cluster)
        try:
            before = pool_status(conn)
        finally:
            conn.close()
        offset = time.time() - time.monotonic()
        t0 = time.monotonic()
        proc = harestart_run(bench, strategy, log_file, mode)
        t1 = time.monotonic()
        # A gap at the very end shows: wait for ~0.5 s of writes after the run.
        lab.wait_for("writes after the run", lambda: writer.acks_since(t1) >= 50, timeout=120)
    finally:
        t_end = writer.join()
        reader.join()
    return Observed(proc, writer, reader, before, t0, t1, t_end, offset)


def run_state(stdout: str) -> str | None:
    try:
        return str(json.loads(stdout).get("state"))
    except (ValueError, AttributeError):
        return None


def events_of(log_file: Path) -> list[dict[str, Any]]:
    if not log_file.exists():
        return []
    out = []
    for line in log_file.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


@dataclass(frozen=True)
class Case:
    """One run of the bench: the pool, the strategy, the hook mode, the load."""

    pool: int
    strategy: str
    mode: str = "event"
    load: str = "quiet"
    attempt: int = 1  # of --repeat

    def label(self) -> str:
        pool = size_label(self.pool).replace(" ", "")
        return f"{pool}-{self.strategy}-{self.mode}-{self.load}-{self.attempt}"


def measure(bench: Bench, case: Case) -> dict[str, Any]:
    """Dirty the source's pool, then one harestart run under the writer and the reader (and
    the burner, for a loaded case)."""
    cluster = bench.cluster
    cluster.sql(cluster.source, f"TRUNCATE TABLE {demo_writer.TABLE}")  # ids restart at 1
    fill = fill_dirty(cluster)
    log_file = bench.tmp / f"run-{case.label()}.jsonl"
    burner = Burner()
    loadavg_before = os.getloadavg()
    if case.load == "loaded":
        burner.start()
    try:
        o = observe(bench, case.strategy, log_file, case.mode)
    finally:
        burner.stop()
    acked = [(i, t) for i, t in o.writer.acked if o.t0 <= t <= o.t_end]
    gaps = demo_writer.write_gaps([o.t0, *(t for _, t in acked), o.t_end])
    row: dict[str, Any] = {
        "pool": size_label(case.pool),
        "strategy": case.strategy,
        "hook_mode": case.mode,
        "load": case.load,
        "attempt": case.attempt,
        "burner_processes": burner.count if case.load == "loaded" else 0,
        "loadavg_before": loadavg_before,
        **fill,
        "dirty_bytes_at_start": o.before["dirty"] * o.before["page_size"],
        "dirty_pct_at_start": round(100 * o.before["dirty"] / o.before["total"], 1),
        "exit_code": o.proc.returncode,
        "state": run_state(o.proc.stdout),
        "run_wall_s": round(o.t1 - o.t0, 1),
        "longest_gap_s": round(gaps[0][0], 3) if gaps else None,
        "unavailable_s": round(demo_writer.unavailable_time(gaps), 3),
        "gaps_over_100ms": [(round(g, 3), round(at - o.t0, 2)) for g, at in gaps if g > 0.1][:10],
        "acked_writes": len(acked),
        "failed_writes": sum(o.writer.failures.values()),
        "write_failures": o.writer.failures,
        "lost_rows": missing_rows(cluster, o.writer.acked),
        "ok_reads": o.reader.ok,
        "failed_reads": sum(o.reader.failures.values()),
        "read_failures": o.reader.failures,
        "loadavg_after": os.getloadavg(),
    }
    wall_gaps = [(g, at + o.offset) for g, at in gaps]
    row["phases"], row["longest_gap_elsewhere_s"] = per_phase(
        phases(events_of(log_file)), wall_gaps, o.t0 + o.offset
    )
    if o.proc.returncode != 0:
        row["stderr_tail"] = o.proc.stderr[-3000:]
    return row


# --- report -----------------------------------------------------------------------------------


def mem_available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) / (1 << 20), 1)
    return -1.0


def phase_gaps(row: dict[str, Any]) -> str:
    """The longest gap of each phase (source restart, or switch away/back), in seconds."""
    if "error" in row:
        return "error"
    per = "/".join(f"{p['longest_gap_s']:.3f}" for p in row.get("phases", []))
    return f"{per or '?'}"


def hook_times(row: dict[str, Any]) -> str:
    """Each switch's after_switch hook duration (s), as the run log has it."""
    times = [p.get("after_switch_hook_s") for p in row.get("phases", []) if "repoint_s" in p]
    return "/".join(f"{t:.3f}" for t in times if t is not None) or "-"


def verdict(row: dict[str, Any]) -> str:
    """A switchover's gaps against #24's target for its load (restart: none)."""
    if "error" in row or row.get("exit_code"):
        return "failed run"
    if row["strategy"] != "switchover":
        return "-"
    target = TARGET_SWITCH_GAP_S[row["load"]]
    worst = max((p["longest_gap_s"] for p in row.get("phases", [])), default=None)
    if worst is None:
        return "no switch seen"
    return f"{'met' if worst <= target else 'MISSED'} (<= {target} s)"


def loads(row: dict[str, Any]) -> str:
    before, after = row.get("loadavg_before"), row.get("loadavg_after")
    return f"{before[0]:.1f}/{after[0]:.1f}" if before and after else "-"


COLUMNS = (
    ("pool", 6),
    ("strategy", 10),
    ("hooks", 10),
    ("load", 6),
    ("dirty MB", 8),
    ("gap per phase s", 15),
    ("after_switch s", 14),
    ("elsewhere s", 11),
    ("failed w/r", 10),
    ("lost", 4),
    ("wall s", 6),
    ("load 1m b/a", 11),
    ("target", 18),
)


def table_row(row: dict[str, Any]) -> str:
    ok = "error" not in row
    cells = (
        row["pool"],
        row["strategy"],
        row.get("hook_mode", "event"),
        row.get("load", "quiet"),
        f"{row['dirty_bytes_at_start'] >> 20}" if ok else "-",
        phase_gaps(row),
        hook_times(row) if ok else "-",
        f"{row['longest_gap_elsewhere_s']}" if ok else "-",
        f"{row['failed_writes']}/{row['failed_reads']}" if ok else "-",
        f"{row['lost_rows']}" if ok else "-",
        f"{row['run_wall_s']}" if ok else "-",
        loads(row),
        verdict(row),
    )
    return " | ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True))


def print_table(report: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = report["runs"]
    print(f"\nwrite gaps through HAProxy — {report['date']} — {report['machine']}")
    print(f"MariaDB {report.get('server', '?')}; lab: db1 source, db2 + db3 replicas, MHA, HAProxy")
    print(f"load average before/after: {report['loadavg_before']} / {report['loadavg_after']}")
    header = " | ".join(f"{name:>{w}}" for name, w in COLUMNS)
    print(header)
    print("-" * len(header))
    for row in rows:
        print(table_row(row))
    print(
        "targets (#24): switchover longest gap per switch <= 0.1 s quiet, <= 0.3 s loaded (a "
        "CPU burner at 2x the cores), at every pool size; restart's gap grows with the pool; 0 "
        "lost rows; 0 failed reads.\n"
        "gap = the longest write gap overlapping the source restart step / each switch (run "
        "log); elsewhere = the longest one outside them (the machine's own noise); load 1m b/a "
        "= the 1-minute load average before / after the run ('quiet' is the shared machine as "
        "it was)."
    )
    for r in rows:
        if "error" in r or r.get("exit_code"):
            print(f"  {r['pool']} {r['strategy']} {r.get('hook_mode')} {r.get('load')}: "
                  f"exit {r.get('exit_code')} {r.get('error', '')}")  # fmt: skip
            continue
        phases_text = "; ".join(
            f"{p['what']}: {p['duration_s']} s long"
            + (
                f" (candidate writable after {p['candidate_writable_after_s']} s, re-pointing "
                f"{p.get('repoint_s')} s, after_switch hook {p['after_switch_hook_s']} s)"
                if "candidate_writable_after_s" in p
                else ""
            )
            + f", longest gap {p['longest_gap_s']} s"
            for p in r["phases"]
        )
        print(f"  {r['pool']} {r['strategy']} {r['hook_mode']} {r['load']}: {phases_text}")


# --- main -------------------------------------------------------------------------------------


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same clean-up as Ctrl-C


def prepare(cluster: lab.LabCluster, tmp: Path) -> Bench:
    configure_source_read_only(cluster)  # read by mysqld at the next restart (configure_pool)
    password = create_app_account(cluster)
    inventories = {m: write_inventory(cluster, tmp / f"inventory-{m}.yml", m) for m in HOOK_MODES}
    return Bench(cluster, inventories, password, tmp)


def cases(args: argparse.Namespace, pool: int) -> list[Case]:
    """The runs at one pool size: each strategy x hook mode x load, ``--repeat`` times. The
    restart strategy runs with the first hook mode only: its gap is the source's own restart,
    which no hook is part of."""
    return [
        Case(pool, strategy, mode, load, attempt)
        for attempt in range(1, args.repeat + 1)
        for strategy in args.strategies
        for mode in (args.hook_modes if strategy == "switchover" else args.hook_modes[:1])
        for load in args.loads
    ]


def measure_all(bench: Bench, args: argparse.Namespace, report: dict[str, Any]) -> None:
    for pool in args.pools:
        print(f"== pool {size_label(pool)}: restarting every mysqld with it ...", flush=True)
        t0 = time.monotonic()
        configure_pool(bench.cluster, pool)
        report["reconfigure_s"][size_label(pool)] = round(time.monotonic() - t0, 1)
        for case in cases(args, pool):
            print(f"== {case.label()}: dirtying the source, then the run ...", flush=True)
            try:
                row = measure(bench, case)
            except Exception as exc:  # a bench records a failure and goes on
                row = {"pool": size_label(pool), "strategy": case.strategy,
                       "hook_mode": case.mode, "load": case.load, "error": repr(exc)}  # fmt: skip
            row["mem_available_gib"] = mem_available_gib()
            report["runs"].append(row)
            summary = {k: row.get(k) for k in ("exit_code", "longest_gap_s", "fill_s", "error")}
            print(f"   {summary} {phase_gaps(row)} {verdict(row)}", flush=True)
            args.json.write_text(json.dumps(report, indent=2))


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.writegap", description=__doc__)
    ap.add_argument("--pools", default="256M,4G", help="buffer-pool sizes (default 256M,4G)")
    ap.add_argument("--strategies", default="restart,switchover")
    ap.add_argument("--hook-modes", default=",".join(HOOK_MODES), help="event and/or persistent")
    ap.add_argument("--loads", default=",".join(LOADS), help="quiet and/or loaded")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each case (default 1)")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "bench-writegap.json")
    args = ap.parse_args()
    args.pools = [parse_size(p) for p in args.pools.split(",")]
    for name, allowed in (("strategies", ("restart", "switchover")), ("hook_modes", HOOK_MODES),
                          ("loads", LOADS)):  # fmt: skip
        chosen = [s.strip() for s in getattr(args, name).split(",")]
        if not chosen or not set(chosen) <= set(allowed):
            ap.error(f"--{name.replace('_', '-')}: one or more of {', '.join(allowed)}")
        setattr(args, name, chosen)
    if args.repeat < 1:
        ap.error("--repeat: at least 1")
    return args


def main() -> int:
    args = parse_args()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, on_sigterm)
    report: dict[str, Any] = {
        "flavor": "mariadb",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()})",
        "loadavg_before": os.getloadavg(),
        "mem_available_gib_before": mem_available_gib(),
        "targets": {"switchover_gap_per_switch_s": TARGET_SWITCH_GAP_S},
        "reconfigure_s": {},
        "runs": [],
    }
    lab.ensure_lab_image("mariadb")
    tmp = Path(tempfile.mkdtemp(prefix="harestart-writegap-"))
    print("starting a MariaDB lab: db1 source, db2 + db3 replicas, MHA, HAProxy ...", flush=True)
    cluster = lab.start_cluster(2, name="writegap", proxy=True, flavor="mariadb")
    try:
        report["server"] = str(cluster.sql(cluster.source, "SELECT @@version AS v")[0]["v"])
        measure_all(prepare(cluster, tmp), args, report)
    finally:
        print("== removing the lab's containers", flush=True)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_after"] = os.getloadavg()
    args.json.write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
