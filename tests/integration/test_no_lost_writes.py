"""No lost writes: a writer inserts on the source throughout three consecutive full runs.

Only acknowledged inserts are recorded (an INSERT whose OK packet came back, autocommit). An
insert whose acknowledgement was lost may still have been committed; that is allowed: the test
requires acknowledged ⊆ present on every node, then identical contents (counts, CHECKSUM TABLE)
on the source and every replica.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from .conftest import ClusterFactory
from .harestart_cli import harestart
from .lab import HOST, wait_for

pytestmark = pytest.mark.integration

RUNS = 3
INSERT_INTERVAL = 0.02  # seconds between inserts
RECONNECT_BACKOFF = 0.2


@dataclass
class Writer:
    """Inserts rows with client-generated ids on the source until ``stop`` is set."""

    host: str
    port: int
    user: str
    password: str
    stop: threading.Event = field(default_factory=threading.Event)
    # (id, monotonic time of the acknowledgement), in acknowledgement order.
    acked: list[tuple[int, float]] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "writer thread did not stop"

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            autocommit=True,
            connect_timeout=2,
            read_timeout=5,
            write_timeout=5,
        )

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        kind = type(exc).__name__
        if isinstance(exc, pymysql.err.MySQLError) and exc.args:
            kind = f"{kind}({exc.args[0]})"
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def _loop(self) -> None:
        conn: pymysql.connections.Connection[Any] | None = None
        while not self.stop.is_set():
            if conn is None:
                try:
                    conn = self._connect()
                except Exception as exc:
                    self._error(exc)
                    self.stop.wait(RECONNECT_BACKOFF)
                    continue
            row_id = next(self._ids)  # never reused: a lost ack may still have committed
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO labdb.writes (id, payload) VALUES (%s, %s)",
                        (row_id, uuid.uuid4().hex),
                    )
            except Exception as exc:
                self._error(exc)
                with contextlib.suppress(Exception):  # the connection is gone either way
                    conn.close()
                conn = None
                self.stop.wait(RECONNECT_BACKOFF)
                continue
            # Only now: the server acknowledged the autocommitted INSERT.
            self.acked.append((row_id, time.monotonic()))
            self.stop.wait(INSERT_INTERVAL)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def longest_gap(acks: list[tuple[int, float]]) -> float:
    times = [t for _, t in acks]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def test_no_acknowledged_write_is_lost_across_three_runs(
    cluster_factory: ClusterFactory, tmp_path: Path, flavor: str
) -> None:
    # Runs with the default detach of the replicas before each source restart: the writes
    # the source acknowledges while they are detached must still reach them (GTID fetch).
    cluster = cluster_factory(2, flavor=flavor)
    inventory = cluster.write_inventory(tmp_path / "inv.yml")
    cluster.sql(
        "db1",
        "CREATE TABLE labdb.writes ("
        " id BIGINT PRIMARY KEY,"
        " payload VARCHAR(64),"
        " at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)"
        ") ENGINE=InnoDB",
    )
    assert cluster.source.mysql_port is not None
    writer = Writer(HOST, cluster.source.mysql_port, cluster.admin_user, cluster.admin_password)
    writer.start()
    per_run: list[dict[str, Any]] = []
    try:
        # The writer is already acknowledging before the first run starts.
        wait_for("the writer's first acknowledged insert", lambda: writer.acked, timeout=60)
        for run_no in range(1, RUNS + 1):
            before_acks, before_errors = len(writer.acked), writer.errors
            started = time.monotonic()
            out = harestart(
                "run",
                str(inventory),
                "--yes",
                "--format",
                "json",
                "--log-file",
                str(tmp_path / f"run{run_no}.jsonl"),
                state_dir=tmp_path / "state",
            )
            elapsed = time.monotonic() - started
            acks = writer.acked[before_acks:]
            per_run.append(
                {
                    "run": run_no,
                    "seconds": round(elapsed, 1),
                    "acked": len(acks),
                    "errors": writer.errors - before_errors,
                    "longest_ack_gap_s": round(longest_gap(acks), 2),
                }
            )
            assert out.returncode == 0, f"run {run_no}: exit {out.returncode}\n{out.stderr}"
            result = out.json()
            assert result["state"] == "ACTIVE" and result["ok"] is True, f"run {run_no}: {result}"
            # The writer was really writing during this run (not stuck for its whole length).
            assert len(acks) > 50, f"run {run_no}: only {len(acks)} acknowledged inserts"
    finally:
        writer.join()
        print(f"\nwriter: {len(writer.acked)} acked, {writer.errors} errors {writer.error_kinds}")
        for r in per_run:
            print(f"  {r}")

    acked = {row_id for row_id, _ in writer.acked}
    assert len(acked) > 50
    assert writer.errors > 0, "the source never went away: did the runs restart it?"

    target = cluster.wait_replicated(timeout=300)
    counts: dict[str, int] = {}
    checksums: dict[str, Any] = {}
    for n in cluster.db_nodes:
        present = {int(r["id"]) for r in cluster.sql(n.name, "SELECT id FROM labdb.writes")}
        missing = acked - present
        assert not missing, (
            f"{n.name} lacks {len(missing)} acknowledged rows (e.g. {sorted(missing)[:10]}) "
            f"after applying GTID {target}"
        )
        counts[n.name] = len(present)
        checksums[n.name] = cluster.sql(n.name, "CHECKSUM TABLE labdb.writes")[0]["Checksum"]
    print(f"rows per node: {counts}; checksums: {checksums}; gtid: {target}")
    assert len(set(counts.values())) == 1, counts
    assert len(set(checksums.values())) == 1 and None not in checksums.values(), checksums
