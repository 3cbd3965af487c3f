"""`make bench`: what a restart costs beyond the mysqld restarts themselves, measured on a lab.

    python -m bench [--flavor mariadb|mysql] [--replicas N] [--repeat N] [--dirty] [--json PATH]

For each repetition, on one lab cluster (1 source + N replicas + MHA) of the chosen flavour
(MariaDB 10.11 or Oracle MySQL 9.7):
- floor: each node's raw restart (the inventory's restart command over SSH, timed until mysqld
  answers a query again), MHA's raw stop (until NOT_RUNNING) and start (until PING_OK);
- harestart: `harestart run --format json` total and per-step times;
- overhead = total - floor, overall and per node (step time - raw restart);
- replica recovery: from the source answering again to every replica running both threads and
  caught up (from the run's JSON log: the gates' timestamps);
- source write downtime: a writer inserts a row every 50 ms during the run; the longest gap
  between acknowledged writes;
- the same run with --no-detach-replicas: the source step and the write gap when the
  replicas stay connected (idle Binlog Dump threads hold a MySQL source's shutdown).
--dirty also dirties the buffer pool with a bulk update before each run and measures the run
twice, without and with --preflush. Finally `harestart plan` of a generated 1,000-group
inventory is timed (wall clock, a fresh process).

Results: a table with the targets beside them on stdout, and JSON (default
build/bench-FLAVOR.json); when the other flavour's JSON is there too, the headline figures of
both are printed side by side. The benchmark asserts nothing; tests never assert timings.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import yaml

from bench import inplace
from bench.writegap import APP_USER, create_app_account
from harestart.domain.actions import RestartIoThread
from harestart.domain.plan.build import start_mha, stop_mha
from harestart.engine.observe import observe_group
from harestart.inventory.credentials import mysql_endpoint
from harestart.inventory.load import load_inventory
from harestart.log import configure as configure_logging
from harestart.wiring import environment
from tests.integration import lab

REPO = Path(__file__).resolve().parents[1]

TARGETS = {
    "total_vs_floor": 1.15,
    "replica_recovery_s": 1.0,
    "downtime_over_source_restart_s": 0.5,
    "overhead_per_node_s": 0.3,
    "plan_1000_groups_s": 1.0,
    "detection_per_node_s": 0.3,  # pending restarts (#23), one extra SSH command at most
}


def now() -> float:
    return time.monotonic()


def poll(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Seconds until ``check`` is true (polling); raise on timeout."""
    t0 = now()
    while True:
        try:
            if check():
                return now() - t0
        except Exception:  # noqa: S110 - a node restarting refuses connections: not yet
            pass
        if now() - t0 > timeout:
            raise TimeoutError("benchmark wait timed out")
        time.sleep(interval)


def answers(cluster: lab.LabCluster, node: str) -> bool:
    n = cluster.node(node)
    conn = pymysql.connect(
        host="127.0.0.1",
        port=n.mysql_port or 0,
        user=cluster.admin_user,
        password=cluster.admin_password,
        connect_timeout=1,
        read_timeout=2,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True
    finally:
        conn.close()


class Writer:
    """Inserts a row every 50 ms on the source as the application account (no SUPER or
    CONNECTION_ADMIN, as real applications run); records the time of each acknowledged
    insert (monotonic, and wall time for matching the run's and mysqld's logs)."""

    def __init__(self, cluster: lab.LabCluster, password: str) -> None:
        self.cluster = cluster
        self.password = password
        self.acks: list[float] = []
        self.wall_acks: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.seq = 0

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host="127.0.0.1",
            port=self.cluster.source.mysql_port or 0,
            user=APP_USER,
            password=self.password,
            database="labdb",
            connect_timeout=1,
            read_timeout=2,
            write_timeout=2,
            autocommit=True,
        )

    def _loop(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                self.seq += 1
                with conn.cursor() as cur:  # ids unique across writers and repetitions
                    cur.execute("INSERT INTO bench_writes (id) VALUES (%s)", (time.time_ns(),))
                self.acks.append(now())
                self.wall_acks.append(time.time())
            except pymysql.MySQLError:
                if conn is not None:
                    with contextlib.suppress(Exception):  # the connection is gone anyway
                        conn.close()
                conn = None
            self.stop.wait(0.05)

    def longest_gap(self, start: float, end: float) -> float:
        acks = [a for a in self.acks if start <= a <= end]
        points = [start, *acks, end]
        return max(b - a for a, b in itertools.pairwise(points))

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def floor(cluster: lab.LabCluster, inventory: Path) -> dict[str, float]:
    """Raw costs: each restart command alone, MHA stop and start alone."""
    group = load_inventory(inventory).groups[0]
    env = environment()
    connector = env.connector()
    mha = env.failover_manager(group, connector)
    out: dict[str, float] = {}
    try:
        t0 = now()
        mha.stop(stop_mha(group).command)
        poll(lambda: mha.status().stopped(), 120, 0.05)
        out["mha_stop"] = now() - t0
        for node in (*group.replicas, group.source):
            shell = connector.shell(node.name, node.ssh)
            assert node.restart_command is not None
            t0 = now()
            shell.run(node.restart_command, timeout=300)
            poll(functools.partial(answers, cluster, node.name), 120)
            out[f"restart:{node.name}"] = now() - t0
        # Repair what a raw source restart leaves behind (replicas waiting for Connect_Retry):
        # not part of the floor, only to hand MHA a healthy group.
        for r in group.replicas:
            endpoint = mysql_endpoint(r)
            dialect = connector.mysql(r.name, endpoint).dialect()
            for statement in RestartIoThread(host=r.name).sql(dialect):
                connector.commands(r.name, endpoint).execute(statement)
        poll(lambda: all(cluster.replicating(r.name) for r in group.replicas), 120, 0.05)
        t0 = now()
        mha.start(start_mha(group).command)
        poll(lambda: mha.status().healthy(), 180, 0.05)
        out["mha_start"] = now() - t0
    finally:
        connector.close_all()
    return out


# (label, workers, detect pending restarts): `status` detects, a run's observations do not.
OBSERVATIONS = (
    ("all at once", None, False),
    ("one after the other", 1, False),
    ("all at once, pending", None, True),
    ("one after the other, pending", 1, True),
)


def observation_cost(inventory: Path, repeat: int = 5) -> dict[str, list[float]]:
    """One observation of the group (what preflight, verify and `status` do), on fresh
    connections as a run makes them: every host at once (harestart) vs one after the other,
    without and with pending-restart detection (`status`; its cost per node is the difference
    of the two one-after-the-other rows, divided by the nodes: ``detection_per_node``)."""
    group = load_inventory(inventory).groups[0]
    out: dict[str, list[float]] = {label: [] for label, _, _ in OBSERVATIONS}
    for _ in range(repeat):
        for label, workers, detect in OBSERVATIONS:
            env = environment()
            connector = env.connector()
            try:
                mha = env.failover_manager(group, connector)
                t0 = now()
                state = observe_group(group, connector, mha, workers=workers, detect_pending=detect)
                out[label].append(now() - t0)
            finally:
                connector.close_all()
            if not all(n.reachable for n in state.nodes):
                raise SystemExit(f"bench: a node did not answer: {state.notes()}")
    nodes = len(group.db_nodes)
    out["detection_per_node"] = [
        (with_ - without) / nodes
        for with_, without in zip(
            out["one after the other, pending"], out["one after the other"], strict=True
        )
    ]
    return out


ERROR_LOG = "/var/log/mysql/error.log"  # both flavours' lab nodes


def harestart_run(
    cluster: lab.LabCluster, inventory: Path, state: Path, app_password: str, *extra: str
) -> dict[str, Any]:
    log_file = state / f"run-{time.time_ns()}.jsonl"
    env = {**os.environ, "HARESTART_STATE_DIR": str(state)}
    load = os.getloadavg()
    if cluster.flavor == "mysql":  # the shutdown's connection phase in the error log (Notes)
        cluster.sql(cluster.source, "SET GLOBAL log_error_verbosity = 3")
    with Writer(cluster, app_password) as writer:
        # Measure from the first acknowledged write: connecting the writer is not downtime.
        poll(lambda: bool(writer.acks), 60, 0.01)
        t0 = now()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harestart",
                "run",
                str(inventory),
                "--yes",
                "--format",
                "json",
                "--log-file",
                str(log_file),
                *extra,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            check=False,
            timeout=900,
        )
        t1 = now()
    if proc.returncode != 0:
        raise RuntimeError(f"harestart run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    events = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]

    def at(pred: Callable[[dict[str, Any]], bool]) -> float:
        e = next(e for e in events if pred(e))
        return dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()

    source = cluster.source.name
    back = at(
        lambda e: (
            e["event"] == "gate.held"
            and e.get("gate", "").startswith(f"{source}: mysqld answers again")
        )
    )
    recovered = at(lambda e: e["event"] == "gate.held" and e.get("kind") == "ReplicasReconnected")
    steps = {
        (f"{s['action']}:{s['host']}" if s["host"] else s["action"]): s["duration_s"]
        for s in result["steps"]
    }
    return {
        "total": result["duration_s"],
        "wall": t1 - t0,
        "steps": steps,
        "replica_recovery": recovered - back,
        "write_downtime": writer.longest_gap(t0, t1),
        "acked_writes": len(writer.acks),
        "loadavg": [round(x, 2) for x in load],
        "in_place": attribution(cluster, writer, events),
    }


def attribution(
    cluster: lab.LabCluster, writer: Writer, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The source restart's write gap, phase by phase (bench.inplace)."""
    log = cluster.exec(cluster.source, ["cat", ERROR_LOG])[1].splitlines()
    return inplace.attribute(writer.wall_acks, events, log, cluster.source.name)


def dirty_buffer_pool(cluster: lab.LabCluster) -> None:
    """About 5 MB of changed pages: dirty, yet under the lab's 16 MB redo log, so InnoDB is not
    forced into a flush storm that would stall writers whatever harestart does."""
    cluster.sql(
        "db1", "UPDATE labdb.bench_bulk SET payload = REPEAT(CHAR(65 + FLOOR(RAND() * 26)), 200)"
    )


def prepare(cluster: lab.LabCluster, dirty: bool) -> str:
    """The bench tables (and bulk rows with ``dirty``); returns the application's password."""
    password = create_app_account(cluster)
    cluster.sql(
        "db1",
        "CREATE TABLE IF NOT EXISTS labdb.bench_writes (id BIGINT PRIMARY KEY, "
        "at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))",
    )
    if dirty:
        cluster.sql(
            "db1",
            "CREATE TABLE IF NOT EXISTS labdb.bench_bulk (id INT PRIMARY KEY "
            "AUTO_INCREMENT, payload VARCHAR(255))",
        )
        # 32,768 rows by doubling: the same SQL on MariaDB and MySQL (no sequence tables).
        cluster.sql("db1", "INSERT INTO labdb.bench_bulk (payload) VALUES (REPEAT('x', 200))")
        for _ in range(15):
            cluster.sql(
                "db1", "INSERT INTO labdb.bench_bulk (payload) SELECT payload FROM labdb.bench_bulk"
            )
    cluster.wait_replicated(timeout=120)
    return password


def plan_at_scale(tmp: Path, groups: int = 1000) -> list[float]:
    doc: dict[str, Any] = {
        "defaults": {
            "ssh": {"user": "ops", "sudo": True},
            "mysql": {"user": "harestart", "password_env": "HARESTART_MYSQL_PASSWORD"},
        },
        "groups": [
            {
                "id": f"g{i:04d}",
                "account": str(100000 + i % 50),
                "source": {"name": f"g{i}-db1", "address": f"10.{i // 250}.{i % 250}.1"},
                "replicas": [
                    {"name": f"g{i}-db{j}", "address": f"10.{i // 250}.{i % 250}.{j}"}
                    for j in (2, 3)
                ],
                "mha": {
                    "manager": {"name": f"g{i}-mha", "address": f"10.{i // 250}.{i % 250}.9"},
                    "config": "/etc/mha/app.cnf",
                },
            }
            for i in range(groups)
        ],
    }
    path = tmp / "fleet.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    times = []
    for _ in range(3):
        t0 = now()
        subprocess.run(
            [sys.executable, "-m", "harestart", "plan", str(path), "--format", "json"],
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        times.append(now() - t0)
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s: dict[str, float]) -> str:
    return f"{s['median']:7.2f} s  ({s['min']:.2f}-{s['max']:.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dirty", action="store_true", help="also compare --preflush on a dirty pool")
    ap.add_argument("--flavor", choices=("mariadb", "mysql"), default="mariadb")
    ap.add_argument("--json", type=Path, help="default: build/bench-FLAVOR.json")
    args = ap.parse_args()
    json_path: Path = args.json or REPO / "build" / f"bench-{args.flavor}.json"

    configure_logging(log_file=None, verbose=False)  # adapters' events: warnings only
    lab.ensure_lab_image(args.flavor)
    tmp = Path(tempfile.mkdtemp(prefix="harestart-bench-"))
    print(
        f"starting a {args.flavor} lab cluster: 1 source + {args.replicas} replicas + MHA ...",
        flush=True,
    )
    cluster = lab.start_cluster(args.replicas, name="bench", flavor=args.flavor)
    try:
        inventory = cluster.write_inventory(tmp / "inv.yml")
        app_password = prepare(cluster, args.dirty)
        server_version = str(cluster.sql(cluster.source, "SELECT @@version AS v")[0]["v"])
        rows: list[dict[str, Any]] = []
        for i in range(args.repeat):
            print(f"repetition {i + 1}/{args.repeat}: floor ...", flush=True)
            f = floor(cluster, inventory)
            print(f"repetition {i + 1}/{args.repeat}: harestart run ...", flush=True)
            if args.dirty:
                dirty_buffer_pool(cluster)
            r = harestart_run(cluster, inventory, tmp, app_password)
            row: dict[str, Any] = {"floor": f, "run": r}
            print(
                f"repetition {i + 1}/{args.repeat}: harestart run --no-detach-replicas ...",
                flush=True,
            )
            row["run_attached"] = harestart_run(
                cluster, inventory, tmp, app_password, "--no-detach-replicas"
            )
            print(
                f"repetition {i + 1}/{args.repeat}: harestart run --no-offline-mode ...", flush=True
            )
            row["run_online"] = harestart_run(
                cluster, inventory, tmp, app_password, "--no-offline-mode"
            )
            if args.dirty:
                dirty_buffer_pool(cluster)
                print(f"repetition {i + 1}/{args.repeat}: harestart run --preflush ...", flush=True)
                row["run_preflush"] = harestart_run(
                    cluster, inventory, tmp, app_password, "--preflush"
                )
            rows.append(row)
        print("observation: every host at once vs one after the other ...", flush=True)
        observing = observation_cost(inventory)
        plan_times = plan_at_scale(tmp)
    finally:
        cluster.stop()

    nodes = [n.name for n in cluster.db_nodes]
    floor_total = [sum(r["floor"].values()) for r in rows]
    totals = [r["run"]["total"] for r in rows]
    per_node_overhead = {
        n: summary(
            [
                r["run"]["steps"][
                    f"restart_source:{n}" if n == cluster.source.name else f"restart_replica:{n}"
                ]
                - r["floor"][f"restart:{n}"]
                for r in rows
            ]
        )
        for n in nodes
    }
    src = cluster.source.name
    report: dict[str, Any] = {
        "flavor": args.flavor,
        "server": server_version,
        "machine": f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()})",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "replicas": args.replicas,
        "repeat": args.repeat,
        "targets": TARGETS,
        "floor": {
            **{f"restart {n}": summary([r["floor"][f"restart:{n}"] for r in rows]) for n in nodes},
            "MHA stop": summary([r["floor"]["mha_stop"] for r in rows]),
            "MHA start": summary([r["floor"]["mha_start"] for r in rows]),
            "total": summary(floor_total),
        },
        "harestart": {
            "total": summary(totals),
            **{k: summary([r["run"]["steps"][k] for r in rows]) for k in rows[0]["run"]["steps"]},
        },
        "overhead": {
            "total": summary([t - f for t, f in zip(totals, floor_total, strict=True)]),
            "ratio": summary([t / f for t, f in zip(totals, floor_total, strict=True)]),
            "per node": per_node_overhead,
        },
        "replica_recovery": summary([r["run"]["replica_recovery"] for r in rows]),
        "source_write_downtime": summary([r["run"]["write_downtime"] for r in rows]),
        "raw_source_restart": summary([r["floor"][f"restart:{src}"] for r in rows]),
        "plan_1000_groups": summary(plan_times),
        "observe_group": {k: summary(v) for k, v in observing.items()},
        "detach": {
            "detached: source step": summary(
                [r["run"]["steps"][f"restart_source:{src}"] for r in rows]
            ),
            "attached: source step": summary(
                [r["run_attached"]["steps"][f"restart_source:{src}"] for r in rows]
            ),
            "detached: write downtime": summary([r["run"]["write_downtime"] for r in rows]),
            "attached: write downtime": summary(
                [r["run_attached"]["write_downtime"] for r in rows]
            ),
        },
    }
    report["in_place"] = in_place_section(rows)
    report["loadavg"] = [run["loadavg"] for r in rows for k, run in r.items() if k != "floor"]
    if args.dirty:
        report["preflush"] = {
            "without: source step": summary(
                [r["run"]["steps"][f"restart_source:{src}"] for r in rows]
            ),
            "with: source step": summary(
                [r["run_preflush"]["steps"][f"restart_source:{src}"] for r in rows]
            ),
            "without: write downtime": summary([r["run"]["write_downtime"] for r in rows]),
            "with: write downtime": summary([r["run_preflush"]["write_downtime"] for r in rows]),
        }
    print_report(report)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2))
    other = json_path.with_name(f"bench-{'mysql' if args.flavor == 'mariadb' else 'mariadb'}.json")
    if other.exists():
        print_side_by_side([json.loads(other.read_text()), report])
    print(f"\nJSON: {json_path}")
    return 0


# The runs of a repetition whose source restart is attributed, and how each one differs.
IN_PLACE_RUNS = (
    ("run", "default"),
    ("run_online", "--no-offline-mode"),
    ("run_attached", "--no-detach-replicas"),
)


def in_place_section(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run kind's write gap and its phases (bench.inplace), median (min-max) over the
    repetitions that showed that phase, with the load averages of those runs (``load``)."""
    out: dict[str, dict[str, Any]] = {}
    for key, label in IN_PLACE_RUNS:
        runs = [r[key] for r in rows if key in r]
        if not runs:
            continue
        load = [run["loadavg"] for run in runs]
        out[f"{label}: write gap"] = {
            **summary([r["in_place"]["gap_s"] for r in runs]),
            "load": load,
        }
        names = list(dict.fromkeys(p for r in runs for p in r["in_place"]["phases"]))
        for name in names:
            values = [
                r["in_place"]["phases"][name] for r in runs if name in r["in_place"]["phases"]
            ]
            out[f"{label}: {name}"] = {**summary(values), "load": load}
    return out


def print_report(rep: dict[str, Any]) -> None:
    t = rep["targets"]
    print(f"\nharestart bench — {rep['date']} — {rep['machine']}")
    print(
        f"lab: 1 source + {rep['replicas']} replicas + MHA; {rep['repeat']} repetitions; "
        "median (min-max)\n"
    )
    print("floor (raw costs)")
    for k, v in rep["floor"].items():
        print(f"  {k:<28} {fmt(v)}")
    print("harestart run")
    for k, v in rep["harestart"].items():
        print(f"  {k:<28} {fmt(v)}")
    o = rep["overhead"]
    ratio = o["ratio"]["median"]
    print("against the targets")
    print(f"  {'overhead (total - floor)':<28} {fmt(o['total'])}")
    print(
        f"  {'total / floor':<28} {ratio:7.2f} x     target <= {t['total_vs_floor']} x  "
        f"{'ok' if ratio <= t['total_vs_floor'] else 'MISSED'}"
    )
    for n, v in o["per node"].items():
        ok = v["median"] <= t["overhead_per_node_s"]
        print(
            f"  {'overhead ' + n:<28} {fmt(v)}  target <= {t['overhead_per_node_s']} s  "
            f"{'ok' if ok else 'MISSED'}"
        )
    rr = rep["replica_recovery"]
    print(
        f"  {'replica recovery':<28} {fmt(rr)}  target <= {t['replica_recovery_s']} s  "
        f"{'ok' if rr['median'] <= t['replica_recovery_s'] else 'MISSED'}"
    )
    wd, raw = rep["source_write_downtime"], rep["raw_source_restart"]
    limit = raw["median"] + t["downtime_over_source_restart_s"]
    print(
        f"  {'source write downtime':<28} {fmt(wd)}  target <= raw source restart "
        f"{raw['median']:.2f} + {t['downtime_over_source_restart_s']} = {limit:.2f} s  "
        f"{'ok' if wd['median'] <= limit else 'MISSED'}"
    )
    p = rep["plan_1000_groups"]
    print(
        f"  {'plan of 1,000 groups (wall)':<28} {fmt(p)}  target < {t['plan_1000_groups_s']} s  "
        f"{'ok' if p['median'] < t['plan_1000_groups_s'] else 'MISSED'}"
    )
    if "observe_group" in rep:
        print("one observation of the group (preflight, verify, status), fresh connections")
        for k, v in rep["observe_group"].items():
            limit = t.get("detection_per_node_s") if k == "detection_per_node" else None
            verdict = (
                ""
                if limit is None
                else (f"  target < {limit} s  {'ok' if v['median'] < limit else 'MISSED'}")
            )
            print(f"  {k:<28} {fmt(v)}{verdict}")
    print("source restart: replicas detached first (default) / left attached")
    for k, v in rep["detach"].items():
        print(f"  {k:<28} {fmt(v)}")
    if rep.get("in_place"):
        print("the source's write gap, phase by phase (writer, run log, mysqld's error log)")
        for k, v in rep["in_place"].items():
            print(f"  {k:<70} {fmt(v)}")
    if "preflush" in rep:
        print("dirty buffer pool: without / with --preflush")
        for k, v in rep["preflush"].items():
            print(f"  {k:<28} {fmt(v)}")


HEADLINES: tuple[tuple[str, Callable[[dict[str, Any]], dict[str, float]]], ...] = (
    ("floor total", lambda r: r["floor"]["total"]),
    ("harestart run total", lambda r: r["harestart"]["total"]),
    ("overhead (total - floor)", lambda r: r["overhead"]["total"]),
    ("raw source restart", lambda r: r["raw_source_restart"]),
    ("source step, detached", lambda r: r["detach"]["detached: source step"]),
    ("source step, attached", lambda r: r["detach"]["attached: source step"]),
    ("write downtime, detached", lambda r: r["detach"]["detached: write downtime"]),
    ("write downtime, attached", lambda r: r["detach"]["attached: write downtime"]),
    ("replica recovery", lambda r: r["replica_recovery"]),
)


def print_side_by_side(reports: list[dict[str, Any]]) -> None:
    """Headline medians of the MariaDB and the MySQL bench, from their JSON files."""
    reports = sorted(reports, key=lambda r: str(r.get("flavor", "mariadb")))
    names = [f"{r.get('flavor', 'mariadb')} {r.get('server', '')}".strip() for r in reports]
    print("\nboth flavours (medians; each from its own latest `make bench FLAVOR=...`)")
    print(f"  {'':<28} " + "".join(f"{n[:26]:>28}" for n in names))
    for label, pick in HEADLINES:
        cells = []
        for r in reports:
            try:
                cells.append(f"{pick(r)['median']:>26.2f} s")
            except KeyError:
                cells.append(f"{'-':>28}")
        print(f"  {label:<28} " + "".join(cells))


if __name__ == "__main__":
    raise SystemExit(main())
