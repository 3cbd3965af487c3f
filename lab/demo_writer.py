#!/usr/bin/env python3
"""A small continuous writer for `make demo-switchover` (lab/demo-switchover.sh).

Inserts one row every ~10 ms through HAProxy's writer frontend, on one connection that it
re-opens after any error, and records the moment each insert is acknowledged. On SIGTERM or
SIGINT it stops and prints the write gaps: the longest time between two acknowledged inserts,
the total write-unavailable time (every gap longer than GAP_THRESHOLD), the failed attempts,
and whether every acknowledged row is in the table.

  demo_writer.py HOST PORT USER PASSWORD_FILE   (needs pymysql: run it with the venv's python)
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import pymysql

INTERVAL = 0.01  # seconds between inserts
GAP_THRESHOLD = 0.1  # a gap longer than this counts as write-unavailable time
RECONNECT_PAUSE = 0.02
TABLE = "labdb.demo_writes"  # a constant: the f-strings below never take outside input


def connect(host: str, port: int, user: str, password: str) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=host,
        port=port,
        user=user,
        password=password,
        connect_timeout=2,
        read_timeout=5,
        write_timeout=5,
        autocommit=True,
    )


def write(
    stop: threading.Event,
    host: str,
    port: int,
    user: str,
    password: str,
    acked: list[tuple[int, float]] | None = None,
    failures: dict[str, int] | None = None,
) -> tuple[list[tuple[int, float]], dict[str, int]]:
    """Insert until ``stop``; (acknowledged (id, monotonic time) in order, failures by kind).

    ``acked`` and ``failures``, when given, are filled as the writes happen (a caller in another
    thread can watch them) and returned."""
    acked = [] if acked is None else acked
    failures = {} if failures is None else failures
    conn: pymysql.connections.Connection[Any] | None = None
    next_id = 1
    while not stop.is_set():
        try:
            if conn is None:
                conn = connect(host, port, user, password)
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (next_id,))  # noqa: S608
            acked.append((next_id, time.monotonic()))
            next_id += 1
            stop.wait(INTERVAL)
        except pymysql.MySQLError as exc:
            code = exc.args[0] if exc.args else "?"
            failures[f"{type(exc).__name__} {code}"] = (
                failures.get(f"{type(exc).__name__} {code}", 0) + 1
            )
            next_id += 1  # the attempt may have committed: never reuse its id
            if conn is not None:
                conn.close()
                conn = None
            stop.wait(RECONNECT_PAUSE)
    if conn is not None:
        conn.close()
    return acked, failures


def write_gaps(times: Sequence[float]) -> list[tuple[float, float]]:
    """The gaps between consecutive moments ``times`` (in order: a start, then each acknowledged
    write, optionally an end): (length, the moment it began), longest first."""
    return sorted(((b - a, a) for a, b in itertools.pairwise(times)), reverse=True)


def unavailable_time(
    gaps: Sequence[tuple[float, float]], threshold: float = GAP_THRESHOLD
) -> float:
    """The write-unavailable time: the sum of the gaps longer than ``threshold``."""
    return sum(g for g, _ in gaps if g > threshold)


def report(
    acked: list[tuple[int, float]], failures: dict[str, int], started: float, missing: int
) -> str:
    times = [started] + [t for _, t in acked]
    gaps = [(g, at - started) for g, at in write_gaps(times)]
    unavailable = unavailable_time(gaps)
    lines = [
        f"writes acknowledged: {len(acked)} in {times[-1] - started:.1f} s "
        f"(one every ~{INTERVAL * 1000:.0f} ms through the writer frontend)",
        f"failed write attempts: {sum(failures.values())}"
        + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(failures.items()))})" if failures else ""),
        f"longest write gap: {gaps[0][0] * 1000:.0f} ms" if gaps else "longest write gap: -",
        f"write-unavailable time (gaps > {GAP_THRESHOLD * 1000:.0f} ms): "
        f"{unavailable * 1000:.0f} ms",
        f"acknowledged writes missing from the table: {missing}",
        f"gaps > {GAP_THRESHOLD * 1000:.0f} ms (length, at second):",
    ]
    lines += [f"  {g * 1000:7.0f} ms at {at:6.1f} s" for g, at in gaps[:10] if g > GAP_THRESHOLD]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, user = argv[0], int(argv[1]), argv[2]
    password = Path(argv[3]).read_text().strip()
    conn = connect(host, port, user, password)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id BIGINT PRIMARY KEY)")
        cur.execute(f"TRUNCATE TABLE {TABLE}")
    conn.close()

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("demo writer: writing", flush=True)
    started = time.monotonic()
    acked, failures = write(stop, host, port, user, password)

    conn = connect(host, port, user, password)
    with conn.cursor() as cur:
        cur.execute(f"SELECT id FROM {TABLE}")  # noqa: S608
        present = {int(row[0]) for row in cur.fetchall()}
    conn.close()
    missing = sum(1 for i, _ in acked if i not in present)
    print(report(acked, failures, started, missing), flush=True)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
