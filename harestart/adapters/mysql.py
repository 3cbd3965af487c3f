"""MySQL / MariaDB over pymysql: the few questions and replication commands harestart needs.

The only module that imports pymysql. Every pymysql error leaves as ``MysqlError`` with the
host, the action and the server's own ``(errno) message``; the password never appears.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import pymysql
import pymysql.cursors
import structlog

from harestart.endpoints import MysqlEndpoint, SshEndpoint
from harestart.errors import HarestartError, MysqlError
from harestart.topology import (
    Flavor,
    ReplicaStatus,
    ServerInfo,
    flavor_from_version,
    parse_replica_status,
    parse_server_info,
    version_tuple,
)

log = structlog.get_logger("harestart.mysql")

# (via, remote_host, remote_port) -> local (host, port) forwarding to it
TunnelFactory = Callable[[SshEndpoint, str, int], tuple[str, int]]

_CONNECTION_LOST = frozenset({2003, 2006, 2013, 2055})  # can't connect, gone away, lost
_SYNTAX_ERROR = 1064

Row = dict[str, Any]


class PyMysqlProbe:
    """``MysqlProbe`` over one pymysql connection (autocommit, dict rows), reopened on demand.

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
        self._version: str | None = None
        self._show_replica = "SHOW REPLICA STATUS"

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"PyMysqlProbe({self._name!r}, {self.endpoint.describe()!r})"

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
            conn = pymysql.connect(
                host=host,
                port=port,
                user=ep.user,
                password=ep.password.reveal() if ep.password else "",
                connect_timeout=ep.connect_timeout,
                read_timeout=ep.read_timeout,
                write_timeout=ep.read_timeout,
                cursorclass=pymysql.cursors.DictCursor,
                autocommit=True,
                charset="utf8mb4",
            )
        except pymysql.MySQLError as exc:
            raise self._error(f"connect to {ep.describe()}", exc) from exc
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

    def close(self) -> None:
        self._drop()

    def _error(self, action: str, exc: BaseException) -> MysqlError:
        code, message = _errno_message(exc)
        reason = f"({code}) {message}" if code else message
        secret = self.endpoint.password.reveal() if self.endpoint.password else ""
        if secret and secret in reason:
            reason = reason.replace(secret, "***")
        return MysqlError(self._name, action, reason)

    def _query(self, action: str, sql: str, args: tuple[object, ...] | None = None) -> list[Row]:
        """Run one statement; retry once on a fresh connection if the old one was lost."""
        for attempt in (1, 2):
            conn, fresh = self._connection()
            log.debug("mysql.query", host=self._name, statement=sql)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql, args)
                    return list(cursor.fetchall())
            except (pymysql.OperationalError, pymysql.InterfaceError) as exc:
                code, _ = _errno_message(exc)
                lost = code in _CONNECTION_LOST or isinstance(exc, pymysql.InterfaceError)
                if lost:
                    self._drop()
                    if attempt == 1 and not fresh:
                        continue
                raise self._error(action, exc) from exc
            except pymysql.MySQLError as exc:
                raise self._error(action, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _one(self, action: str, sql: str, args: tuple[object, ...] | None = None) -> Row:
        rows = self._query(action, sql, args)
        if not rows:
            raise MysqlError(self._name, action, f"no row returned by {sql}")
        return rows[0]

    # -- flavor -------------------------------------------------------------------------------

    def _server_version(self) -> str:
        if self._version is None:
            row = self._one("read version", "SELECT @@version AS version")
            self._version = _cell_text(row["version"])
        return self._version

    def _flavor(self) -> Flavor:
        return flavor_from_version(self._server_version())

    def _replica_keyword(self) -> str:
        """REPLICA where MySQL requires it (8.0.22+; 8.4 removed SLAVE); SLAVE on MariaDB,
        which accepts it in every version."""
        version = self._server_version()
        if flavor_from_version(version) is Flavor.MYSQL and version_tuple(version) >= (8, 0, 22):
            return "REPLICA"
        return "SLAVE"

    # -- MysqlProbe ---------------------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        action = "read server info"
        if self._flavor() is Flavor.MARIADB:
            gtid = (
                "@@global.gtid_current_pos AS gtid_current_pos, "
                "@@global.gtid_binlog_pos AS gtid_binlog_pos, "
                "@@global.gtid_slave_pos AS gtid_slave_pos"
            )
        else:
            gtid = "@@global.gtid_executed AS gtid_executed"
        row = self._one(
            action,
            "SELECT @@version AS version, @@server_id AS server_id, "
            f"@@global.read_only AS read_only, @@hostname AS hostname, {gtid}",
        )
        row["uptime"] = self.uptime()
        self._version = _cell_text(row["version"])
        try:
            return parse_server_info(row)
        except ValueError as exc:
            raise MysqlError(self._name, action, str(exc)) from exc

    def replica_status(self) -> ReplicaStatus | None:
        action = "read replica status"
        try:
            rows = self._query(action, self._show_replica)
        except MysqlError as exc:
            if not exc.reason.startswith(f"({_SYNTAX_ERROR})") or "SLAVE" in self._show_replica:
                raise
            self._show_replica = "SHOW SLAVE STATUS"  # before MySQL 8.0.22 / MariaDB 10.5.1
            rows = self._query(action, self._show_replica)
        if not rows:
            return None
        row = _default_channel(rows)
        try:
            return parse_replica_status(row)
        except ValueError as exc:
            raise MysqlError(self._name, action, str(exc)) from exc

    def uptime(self) -> int:
        row = self._one("read uptime", "SHOW GLOBAL STATUS LIKE 'Uptime'")
        try:
            return int(_cell_text(row.get("Value")))
        except ValueError as exc:
            raise MysqlError(self._name, "read uptime", f"not a number: {row!r}") from exc

    def read_only(self) -> bool:
        row = self._one("read read_only", "SELECT @@global.read_only AS read_only")
        return _cell_text(row["read_only"]).strip().upper() in {"1", "ON"}

    def set_read_only(self, value: bool) -> None:
        self._query("set read_only", f"SET GLOBAL read_only = {'ON' if value else 'OFF'}")

    def global_variable(self, name: str) -> str:
        _require_identifier(name)
        row = self._one(f"read {name}", f"SELECT @@global.{name} AS value")
        return _cell_text(row["value"])

    def set_global(self, name: str, value: float) -> None:
        _require_identifier(name)
        # A number, sent unquoted: numeric variables refuse strings ("Incorrect argument type").
        self._query(f"set {name}", f"SET GLOBAL {name} = %s", (float(value),))

    def global_status(self, name: str) -> str:
        row = self._one(f"read status {name}", "SHOW GLOBAL STATUS LIKE %s", (name,))
        return _cell_text(row["Value"])

    def gtid_position(self) -> str:
        """MariaDB ``@@gtid_binlog_pos`` (what this source wrote, what replicas receive);
        MySQL ``@@gtid_executed``. Newlines inside MySQL sets are removed."""
        if self._flavor() is Flavor.MARIADB:
            sql = "SELECT @@global.gtid_binlog_pos AS pos"
        else:
            sql = "SELECT @@global.gtid_executed AS pos"
        text = _cell_text(self._one("read GTID position", sql)["pos"])
        return ",".join(p.strip() for p in text.split(",") if p.strip())

    def wait_for_gtid(self, position: str, timeout: float) -> bool:
        """Wait on the server, in slices shorter than the read timeout so a long wait never
        looks like a dead connection. True when applied, False when ``timeout`` passed."""
        mariadb = self._flavor() is Flavor.MARIADB
        deadline = time.monotonic() + timeout
        slice_s = max(1.0, self.endpoint.read_timeout * 0.8)
        while True:
            remaining = deadline - time.monotonic()
            wait = max(0.0, min(slice_s, remaining))
            if mariadb:  # 0: reached, -1: timed out
                row = self._one(
                    "wait for GTID", "SELECT MASTER_GTID_WAIT(%s, %s) AS r", (position, wait)
                )
                done = _cell_text(row["r"]).strip() == "0"
            else:  # 0: reached, 1: timed out
                row = self._one(
                    "wait for GTID",
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS r",
                    (position, round(wait, 3)),
                )
                done = _cell_text(row["r"]).strip() == "0"
            if done:
                return True
            if remaining <= wait:
                return False

    def restart_io_thread(self) -> None:
        word = self._replica_keyword()
        self._query("stop IO thread", f"STOP {word} IO_THREAD")
        self._query("start IO thread", f"START {word} IO_THREAD")

    def start_replica(self) -> None:
        self._query("start replication", f"START {self._replica_keyword()}")

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


def _errno_message(exc: BaseException) -> tuple[int, str]:
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        message = str(args[1])
        if args[0] == 0 and not message:
            message = "connection is closed"
        return args[0], message
    return 0, str(exc) or type(exc).__name__


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


__all__ = ["PyMysqlProbe", "TunnelFactory"]


def _require_identifier(name: str) -> None:
    """Variable names are interpolated into SQL: only plain identifiers are accepted."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain variable name: {name!r}")
