"""Each server's own SQL, chosen from its version string: pure data, no I/O.

harestart never finds a server's dialect by trying statements until one works (a failed
statement costs a round trip, fills the server's log and can hide a real error). The version
decides, once per connection:

- **MariaDB** (any supported version): ``SHOW SLAVE STATUS``, ``START/STOP SLAVE``,
  ``MASTER_GTID_WAIT`` and ``@@gtid_binlog_pos``; it has no ``super_read_only``.
- **MySQL 8.4 and 9.x**: the new words only (8.4 removed ``SHOW SLAVE STATUS``,
  ``START SLAVE``...): ``SHOW REPLICA STATUS``, ``START/STOP REPLICA``,
  ``WAIT_FOR_EXECUTED_GTID_SET`` and ``@@gtid_executed`` GTID sets; ``super_read_only``.
- **MySQL 8.0.22 - 8.3** understand both; harestart speaks the new words.
- **MySQL before 8.0.22** (5.7, early 8.0): the old words.
"""

from __future__ import annotations

from dataclasses import dataclass

from harestart.domain.flavor import Flavor, flavor_from_version, version_tuple
from harestart.domain.secret import Secret
from harestart.domain.sql import Sql, identifier

# MySQL 8.0.22 introduced SHOW REPLICA STATUS / START REPLICA (8.4 removed the old words).
_MYSQL_REPLICA_WORDS = (8, 0, 22)
# MySQL 5.7.8 introduced super_read_only.
_MYSQL_SUPER_READ_ONLY = (5, 7, 8)
# MySQL 5.7.5 introduced offline_mode (MariaDB has none).
_MYSQL_OFFLINE_MODE = (5, 7, 5)


@dataclass(frozen=True)
class ReplicationSource:
    """Where a replica is pointed: the values of ``CHANGE MASTER TO`` / ``CHANGE REPLICATION
    SOURCE TO`` (sent as parameters, never pasted into the statement)."""

    host: str
    port: int
    user: str


@dataclass(frozen=True)
class Dialect:
    """The statements harestart sends to one server."""

    flavor: Flavor
    version: tuple[int, int, int]
    replica_word: str  # "REPLICA" or "SLAVE"
    has_super_read_only: bool

    @property
    def has_offline_mode(self) -> bool:
        """``offline_mode`` (MySQL 5.7.5+): ON disconnects the sessions of accounts without
        CONNECTION_ADMIN (or SUPER) and refuses new ones; MariaDB has no such variable."""
        return self.flavor is Flavor.MYSQL and self.version >= _MYSQL_OFFLINE_MODE

    @property
    def show_replica_status(self) -> str:
        return f"SHOW {self.replica_word} STATUS"

    @property
    def stop_io_thread(self) -> str:
        return f"STOP {self.replica_word} IO_THREAD"

    @property
    def start_io_thread(self) -> str:
        return f"START {self.replica_word} IO_THREAD"

    @property
    def start_replica(self) -> str:
        return f"START {self.replica_word}"

    @property
    def stop_replica(self) -> str:
        return f"STOP {self.replica_word}"

    @property
    def reset_replica_all(self) -> str:
        return f"RESET {self.replica_word} ALL"

    @property
    def executed_set_query(self) -> str:
        """Every GTID this server executed (switchover: compared for errant transactions)."""
        if self.flavor is Flavor.MARIADB:
            return "SELECT @@global.gtid_current_pos AS pos"
        return "SELECT @@global.gtid_executed AS pos"

    def change_source(self, source: ReplicationSource, password: Secret | None) -> Sql:
        """Re-point replication with GTID; every value a parameter (``password`` None: the
        plan's view, an empty password shown ``'***'``). MariaDB: ``slave_pos`` (the old source
        first copies its binary log position into ``gtid_slave_pos``, see
        ``SET_SLAVE_POS_FROM_BINLOG``)."""
        args = (source.host, source.port, source.user, password or Secret(""))
        if self.flavor is Flavor.MARIADB:
            return Sql(
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, "
                "MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos",
                args,
            )
        return Sql(
            "CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%s, SOURCE_USER=%s, "
            "SOURCE_PASSWORD=%s, SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1",
            args,
        )

    @property
    def gtid_position_query(self) -> str:
        """What a replica must have applied to hold everything this server wrote."""
        if self.flavor is Flavor.MARIADB:
            return "SELECT @@global.gtid_binlog_pos AS pos"
        return "SELECT @@global.gtid_executed AS pos"

    def wait_for_gtid(self, position: str, seconds: float) -> Sql:
        """Blocks on the server for up to ``seconds``; the result ``r`` is 0 once applied."""
        if self.flavor is Flavor.MARIADB:  # 0: reached, -1: timed out
            return Sql("SELECT MASTER_GTID_WAIT(%s, %s) AS r", (position, seconds))
        # 0: reached, 1: timed out
        return Sql("SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS r", (position, seconds))

    @property
    def read_only_query(self) -> str:
        if self.has_super_read_only:
            return (
                "SELECT @@global.read_only AS read_only, "
                "@@global.super_read_only AS super_read_only"
            )
        return "SELECT @@global.read_only AS read_only"

    def set_read_only_statements(
        self, read_only: bool, super_read_only: bool | None
    ) -> tuple[str, ...]:
        """Statements that leave exactly this state (``super_read_only`` None: not managed).

        The server links the two: ``super_read_only=ON`` implies ``read_only=ON``, and
        ``read_only=OFF`` implies ``super_read_only=OFF``; so the order matters.
        """
        if not read_only:
            return ("SET GLOBAL read_only = OFF",)
        statements = ["SET GLOBAL read_only = ON"]
        if self.has_super_read_only and super_read_only is not None:
            statements.append(f"SET GLOBAL super_read_only = {'ON' if super_read_only else 'OFF'}")
        return tuple(statements)


def dialect_for(version: str) -> Dialect:
    """The dialect of a server from its ``@@version`` (e.g. ``9.7.4-2``, ``10.11.19-MariaDB``)."""
    flavor = flavor_from_version(version)
    numbers = version_tuple(version)
    if flavor is Flavor.MARIADB:
        return Dialect(flavor, numbers, "SLAVE", has_super_read_only=False)
    word = "REPLICA" if numbers >= _MYSQL_REPLICA_WORDS else "SLAVE"
    return Dialect(flavor, numbers, word, has_super_read_only=numbers >= _MYSQL_SUPER_READ_ONLY)


# Every flavour lists a source's replication senders in SHOW PROCESSLIST with a Command of
# "Binlog Dump" (file/position) or "Binlog Dump GTID" (MySQL auto-position).
SHOW_PROCESSLIST = "SHOW PROCESSLIST"
# MariaDB: a node that was the source continues, as a replica, from what its binary log holds.
SET_SLAVE_POS_FROM_BINLOG = "SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos"


def long_transactions(older_than: float) -> Sql:
    """Transactions open longer than ``older_than`` seconds (not harestart's own), oldest
    first."""
    return Sql(
        "SELECT trx_mysql_thread_id AS id, TIMESTAMPDIFF(SECOND, trx_started, NOW()) AS age "
        "FROM information_schema.innodb_trx WHERE trx_started < NOW() - INTERVAL %s SECOND "
        "AND trx_mysql_thread_id <> CONNECTION_ID() ORDER BY trx_started",
        (float(older_than),),
    )


def kill(thread_id: int) -> Sql:
    return Sql("KILL %s", (int(thread_id),))


def gtid_subset(subset: str, superset: str) -> Sql:
    return Sql("SELECT GTID_SUBSET(%s, %s) AS r", (subset, superset))


def global_status(name: str) -> Sql:
    return Sql("SHOW GLOBAL STATUS LIKE %s", (name,))


def read_global(name: str) -> Sql:
    return Sql(f"SELECT @@global.{identifier(name)} AS value")


def set_global(name: str, value: float) -> Sql:
    """A number, sent unquoted: numeric variables refuse strings ("Incorrect argument
    type")."""
    return Sql(f"SET GLOBAL {identifier(name)} = %s", (float(value),))


BINLOG_DUMP_PREFIX = "Binlog Dump"


__all__ = [
    "BINLOG_DUMP_PREFIX",
    "SET_SLAVE_POS_FROM_BINLOG",
    "SHOW_PROCESSLIST",
    "Dialect",
    "ReplicationSource",
    "dialect_for",
    "global_status",
    "gtid_subset",
    "kill",
    "long_transactions",
    "read_global",
    "set_global",
]
