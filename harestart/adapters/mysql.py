"""MySQL / MariaDB over pymysql: the questions harestart asks and the statements it sends.

The only module that imports pymysql. One ``MysqlSession`` per server (one connection,
reopened on demand) carries both ports: ``PyMysqlReader`` (the questions gates, waits and
observation ask) and ``PyMysqlCommands`` (sends exactly the statements an action gives it).
Every pymysql error leaves as ``MysqlError`` with the host, the action and the server's own
``(errno) message``; the password never appears.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import pymysql
import pymysql.cursors
import structlog

from harestart.domain.dialect import (
    BINLOG_DUMP_PREFIX,
    SHOW_PROCESSLIST,
    Dialect,
    dialect_for,
    global_status,
    gtid_subset,
    long_transactions,
    read_global,
)
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.pending.settings import ServerSettings, parse_settings, settings_statements
from harestart.domain.sql import Sql
from harestart.domain.topology import (
    Flavor,
    ReadOnlyState,
    ReplicaStatus,
    ServerInfo,
    parse_replica_status,
    parse_server_info,
)
from harestart.errors import HarestartError, MysqlError

log = structlog.get_logger("harestart.mysql")

# (via, remote_host, remote_port) -> local (host, port) forwarding to it
TunnelFactory = Callable[[SshEndpoint, str, int], tuple[str, int]]

_CONNECTION_LOST = frozenset({2003, 2006, 2013, 2055})  # can't connect, gone away, lost

Row = dict[str, Any]

# MySQL's multi-threaded applier: the coordinator's error points at this table.
WORKER_TABLE = "replication_applier_status_by_worker"
WORKER_ERROR_QUERY = (
    "SELECT LAST_ERROR_NUMBER AS n, LAST_ERROR_MESSAGE AS message "
    "FROM performance_schema.replication_applier_status_by_worker WHERE LAST_ERROR_NUMBER <> 0 "
    "ORDER BY LAST_ERROR_TIMESTAMP DESC LIMIT 1"
)


class MysqlSession:
    """One pymysql connection to a server (autocommit, dict rows), reopened on demand.

    A statement that fails because the connection was lost (mysqld restarted) is retried once
    on a fresh connection; if that cannot be opened, ``MysqlError`` says why.
    """

    def __init__(
        self, name: str, endpoint: MysqlEndpoint, tunnel_factory: TunnelFactory | None = None
    ) -> None:
        self._name = name
        self.endpoint = endpoint
        self._tunnel_factory = tunnel_factory
        self._local: tuple[str, int] | None = None  # tunnel entrance, opened once
        self._conn: pymysql.connections.Connection[pymysql.cursors.DictCursor] | None = None
        self._dialect: Dialect | None = None  # from the version, once per connection

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"MysqlSession({self._name!r}, {self.endpoint.describe()!r})"

    # -- connection ---------------------------------------------------------------------------

    def _address(self) -> tuple[str, int]:
        ep = self.endpoint
        if ep.tunnel is None:
            return ep.host, ep.port
        if self._local is None:
            if self._tunnel_factory is None:
                raise MysqlError(
                    self._name, "connect", f"{ep.describe()} needs an SSH tunnel; none available"
                )
            try:
                self._local = self._tunnel_factory(ep.tunnel, ep.host, ep.port)
            except HarestartError as exc:
                raise MysqlError(
                    self._name, f"connect to {ep.describe()}", f"tunnel: {exc}"
                ) from exc
        return self._local

    def _connect(self) -> pymysql.connections.Connection[pymysql.cursors.DictCursor]:
        ep = self.endpoint
        host, port = self._address()
        started = time.monotonic()
        try:
            # The handshake (the server's greeting, authentication) under connect_timeout: a
            # frozen host accepts TCP and never greets, and pymysql would wait read_timeout
            # (30 s) for it. Queries get read_timeout once connected.
            conn = pymysql.connect(
                host=host,
                port=port,
                user=ep.user,
                password=ep.password.reveal() if ep.password else "",
                connect_timeout=ep.connect_timeout,
                read_timeout=ep.connect_timeout,
                write_timeout=ep.connect_timeout,
                cursorclass=pymysql.cursors.DictCursor,
                autocommit=True,
                charset="utf8mb4",
                defer_connect=True,
            )
            conn.connect()
            _set_timeouts(conn, ep.read_timeout)
        except pymysql.MySQLError as exc:
            raise self.error(f"connect to {ep.describe()}", exc) from exc
        except OSError as exc:  # pragma: no cover - pymysql wraps these as OperationalError
            raise MysqlError(
                self._name, f"connect to {ep.describe()}", str(exc.strerror or exc)
            ) from exc
        log.debug(
            "mysql.connect",
            host=self._name,
            target=ep.describe(),
            duration_s=round(time.monotonic() - started, 3),
        )
        return conn

    def _connection(
        self,
    ) -> tuple[pymysql.connections.Connection[pymysql.cursors.DictCursor], bool]:
        """The open connection and whether it was just made."""
        if self._conn is not None and self._conn.open:
            return self._conn, False
        self._drop()
        self._conn = self._connect()
        return self._conn, True

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self._dialect = None  # the server may come back as another version (an upgrade)

    def close(self) -> None:
        self._drop()

    def error(self, action: str, exc: BaseException) -> MysqlError:
        code, message = _errno_message(exc)
        reason = f"({code}) {message}" if code else message
        secret = self.endpoint.password.reveal() if self.endpoint.password else ""
        if secret and secret in reason:
            reason = reason.replace(secret, "***")
        return MysqlError(self._name, action, reason)

    def query(self, action: str, statement: Sql | str) -> list[Row]:
        """Run one statement (an ``Sql``: its text and values handed to the driver apart, the
        driver quotes each value; a ``str``: a fixed statement without values); retry once on
        a fresh connection if the old one was lost."""
        sql = statement if isinstance(statement, Sql) else None
        text = sql.text if sql is not None else str(statement)
        args = sql.driver_args() if sql is not None else None
        for attempt in (1, 2):
            conn, fresh = self._connection()
            # Every statement sent, with its values (a secret as ***): `plan`'s completeness
            # is checked against these events.
            log.debug(
                "mysql.query",
                host=self._name,
                statement=text,
                args=sql.logged_args() if sql is not None else [],
            )
            try:
                with conn.cursor() as cursor:
                    cursor.execute(text, args)
                    return list(cursor.fetchall())
            except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
                code, _ = _errno_message(exc)
                lost = code in _CONNECTION_LOST or isinstance(exc, pymysql.InterfaceError)
                if lost:
                    self._drop()
                    if attempt == 1 and not fresh:
                        continue
                raise self.error(action, exc) from exc
            except pymysql.MySQLError as exc:
                raise self.error(action, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def one(self, action: str, statement: Sql | str) -> Row:
        rows = self.query(action, statement)
        if not rows:
            raise MysqlError(self._name, action, f"no row returned by {statement}")
        return rows[0]

    # -- dialect ------------------------------------------------------------------------------

    def dialect(self) -> Dialect:
        """The server's own SQL, chosen from its version (see ``harestart.domain.dialect``)."""
        if self._dialect is None:
            row = self.one("read version", "SELECT @@version AS version")
            try:
                self._dialect = dialect_for(_cell_text(row["version"]))
            except ValueError as exc:
                raise MysqlError(self._name, "read version", str(exc)) from exc
        return self._dialect

    def ping(self) -> bool:
        """True when the server answers, reconnecting once if needed; never raises."""
        try:
            conn, fresh = self._connection()
            if not fresh:
                conn.ping(reconnect=False)
        except pymysql.MySQLError:
            self._drop()
            try:
                self._connection()
            except HarestartError:
                return False
        except HarestartError:
            self._drop()
            return False
        return True


class PyMysqlReader:
    """``MysqlReader`` over a server's session: the questions, none of which changes it."""

    def __init__(self, session: MysqlSession) -> None:
        self.session = session

    @property
    def name(self) -> str:
        return self.session.name

    def __repr__(self) -> str:
        return f"PyMysqlReader({self.session!r})"

    def dialect(self) -> Dialect:
        return self.session.dialect()

    def ping(self) -> bool:
        return self.session.ping()

    def close(self) -> None:
        self.session.close()

    def _one(self, action: str, statement: Sql | str) -> Row:
        return self.session.one(action, statement)

    def server_info(self) -> ServerInfo:
        action = "read server info"
        dialect = self.dialect()
        if dialect.flavor is Flavor.MARIADB:
            gtid = (
                "@@global.gtid_current_pos AS gtid_current_pos, "
                "@@global.gtid_binlog_pos AS gtid_binlog_pos, "
                "@@global.gtid_slave_pos AS gtid_slave_pos"
            )
        else:
            gtid = "@@global.gtid_executed AS gtid_executed"
        if dialect.has_super_read_only:
            gtid += ", @@global.super_read_only AS super_read_only"
        row = self._one(
            action,
            "SELECT @@version AS version, @@server_id AS server_id, "
            f"@@global.read_only AS read_only, @@hostname AS hostname, {gtid}",
        )
        row["uptime"] = self.uptime()
        try:
            return parse_server_info(row)
        except ValueError as exc:
            raise MysqlError(self.name, action, str(exc)) from exc

    def replica_status(self) -> ReplicaStatus | None:
        action = "read replica status"
        rows = self.session.query(action, self.dialect().show_replica_status)
        if not rows:
            return None
        row = _default_channel(rows)
        try:
            status = parse_replica_status(row)
        except ValueError as exc:
            raise MysqlError(self.name, action, str(exc)) from exc
        if WORKER_TABLE in status.last_sql_error:
            status = self._with_worker_error(status)
        return status

    def _with_worker_error(self, status: ReplicaStatus) -> ReplicaStatus:
        """MySQL's multi-threaded applier reports only "Coordinator stopped ... see
        performance_schema.replication_applier_status_by_worker": the worker's own error (the
        duplicate key, the missing row) is what a person needs, so read it from there."""
        try:
            rows = self.session.query("read applier worker errors", WORKER_ERROR_QUERY)
        except MysqlError as exc:  # e.g. performance_schema off: keep the coordinator's text
            log.debug("mysql.worker_error_unavailable", host=self.name, reason=str(exc))
            return status
        if not rows:
            return status
        number = _cell_text(rows[0].get("n"))
        message = _cell_text(rows[0].get("message")).strip()
        return dataclasses.replace(
            status, last_sql_error=f"{message} (applier worker error {number})"
        )

    def uptime(self) -> int:
        row = self._one("read uptime", "SHOW GLOBAL STATUS LIKE 'Uptime'")
        try:
            return int(_cell_text(row.get("Value")))
        except ValueError as exc:
            raise MysqlError(self.name, "read uptime", f"not a number: {row!r}") from exc

    def read_only(self) -> ReadOnlyState:
        row = self._one("read read_only", self.dialect().read_only_query)
        sro = row.get("super_read_only")
        return ReadOnlyState(_on(row["read_only"]), None if sro is None else _on(sro))

    def global_variable(self, name: str) -> str:
        row = self._one(f"read {name}", read_global(name))
        return _cell_text(row["value"])

    def global_status(self, name: str) -> str:
        row = self._one(f"read status {name}", global_status(name))
        return _cell_text(row["Value"])

    def gtid_position(self) -> str:
        """MariaDB ``@@gtid_binlog_pos`` (what this source wrote, what replicas receive);
        MySQL ``@@gtid_executed``. Newlines inside MySQL sets are removed."""
        sql = self.dialect().gtid_position_query
        return _gtid_text(self._one("read GTID position", sql)["pos"])

    def wait_for_gtid(self, position: str, timeout: float) -> bool:
        """Wait on the server, in slices shorter than the read timeout so a long wait never
        looks like a dead connection. True when applied, False when ``timeout`` passed."""
        dialect = self.dialect()
        deadline = time.monotonic() + timeout
        slice_s = max(1.0, self.session.endpoint.read_timeout * 0.8)
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(slice_s, remaining))
            row = self._one("wait for GTID", dialect.wait_for_gtid(position, round(wait, 3)))
            if _cell_text(row["r"]).strip() == "0":
                return True
            if remaining <= wait:
                return False

    def executed_gtid_set(self) -> str:
        sql = self.dialect().executed_set_query
        return _gtid_text(self._one("read executed GTIDs", sql)["pos"])

    def gtid_subset(self, subset: str, superset: str) -> bool:
        row = self._one("compare GTID sets", gtid_subset(subset, superset))
        return _cell_text(row["r"]).strip() == "1"

    def long_transactions(self, older_than: float) -> list[tuple[int, int]]:
        rows = self.session.query("list long transactions", long_transactions(older_than))
        return [(int(_cell_text(r["id"])), int(_cell_text(r["age"]) or 0)) for r in rows]

    def binlog_dump_threads(self) -> list[int]:
        rows = self.session.query("list replication senders", SHOW_PROCESSLIST)
        return [
            int(_cell_text(r.get("Id")))
            for r in rows
            if _cell_text(r.get("Command")).startswith(BINLOG_DUMP_PREFIX)
        ]

    def server_settings(self) -> ServerSettings:
        """Every global variable and, on MySQL, the persisted values (pending restarts)."""
        dialect = self.dialect()
        statements = settings_statements(dialect.flavor, dialect.version)
        results = [self.session.query("read global variables", s) for s in statements]
        return parse_settings(dialect.flavor, dialect.version, results)


class PyMysqlCommands:
    """``MysqlCommands`` over a server's session: sends exactly the statement it is given."""

    def __init__(self, session: MysqlSession) -> None:
        self.session = session

    @property
    def name(self) -> str:
        return self.session.name

    def __repr__(self) -> str:
        return f"PyMysqlCommands({self.session!r})"

    def execute(self, statement: Sql, *, tolerate: frozenset[int] = frozenset()) -> bool:
        try:
            self.session.query(f"send `{statement.shown()}`", statement)
        except MysqlError as exc:
            if any(exc.reason.startswith(f"({code})") for code in tolerate):
                log.info(
                    "mysql.tolerated", host=self.name, statement=statement.text, reason=exc.reason
                )
                return False
            raise
        return True


def _errno_message(exc: BaseException) -> tuple[int, str]:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        message = str(args[1])
        if args[0] == 0 and not message:
            message = "connection is closed"
        return args[0], message
    return 0, str(exc) or type(exc).__name__


def _on(value: object) -> bool:
    return _cell_text(value).strip().upper() in {"1", "ON"}


def _cell_text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _default_channel(rows: list[Row]) -> Mapping[str, object]:
    """With several channels (MySQL multi-source), the default unnamed one; else the first."""
    for row in rows:
        if _cell_text(row.get("Channel_Name", row.get("Connection_name", ""))) == "":
            return row
    return rows[0]


__all__ = ["MysqlSession", "PyMysqlCommands", "PyMysqlReader", "TunnelFactory"]


def _set_timeouts(conn: pymysql.connections.Connection[Any], seconds: float) -> None:
    """Read and write timeouts of an open connection (pymysql has no public setter; it applies
    ``_read_timeout``/``_write_timeout`` to the socket before each read and write)."""
    conn._read_timeout = seconds  # type: ignore[attr-defined]
    conn._write_timeout = seconds  # type: ignore[attr-defined]


def _gtid_text(value: object) -> str:
    """A GTID position or set as one line (MySQL breaks long sets with newlines)."""
    return ",".join(p.strip() for p in _cell_text(value).split(",") if p.strip())
