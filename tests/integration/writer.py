"""A continuous writer for the no-lost-writes and proxy tests: one autocommitted INSERT into
``labdb.writes (id, payload)`` at a time, each id recorded only once the server acknowledged it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pymysql

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
