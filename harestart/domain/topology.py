"""Pure replication domain: typed snapshots parsed from server rows, and predicates on them.

Nothing here does I/O. Adapters fetch rows (``SELECT @@...``, ``SHOW REPLICA STATUS``,
``masterha_check_status``) and hand them to the parsers below; decision code asks the
resulting frozen objects questions (``threads_running()``, ``lag_within(5)``...).

Parsers raise ``ValueError`` on rows they cannot understand; adapters turn that into their
own error type with the host attached.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Re-exported (``as``: mypy's explicit re-export) where they were always imported from.
from harestart.domain.flavor import Flavor as Flavor  # noqa: PLC0414
from harestart.domain.flavor import flavor_from_version as flavor_from_version  # noqa: PLC0414
from harestart.domain.flavor import version_tuple as version_tuple  # noqa: PLC0414

# --------------------------------------------------------------------------------------------
# Cell helpers: pymysql returns str, int, Decimal, bytes or None depending on column type.


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):  # includes bool
        return int(value)
    text = _text(value).strip()
    if text == "" or text.upper() == "NULL":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _int(value: object, default: int = 0) -> int:
    parsed = _opt_int(value)
    return default if parsed is None else parsed


def _bool(value: object) -> bool:
    text = _text(value).strip().upper()
    return text in {"1", "ON", "YES", "TRUE"}


def _normalise_keys(row: Mapping[str, object]) -> dict[str, object]:
    """Lower-case keys, strip ``@@`` / ``@@global.`` so either spelling of a query works."""
    out: dict[str, object] = {}
    for key, value in row.items():
        name = _text(key).strip().lower()
        name = name.removeprefix("@@").removeprefix("global.").removeprefix("session.")
        out[name] = value
    return out


# --------------------------------------------------------------------------------------------
# Server identity: its flavor and version are in domain.flavor (what `plan` needs, without
# the parsers below), imported above.


@dataclass(frozen=True)
class ReadOnlyState:
    """``read_only`` and, where the server has it (MySQL), ``super_read_only``.

    A restart must leave both exactly as they were: a replica that comes back writable takes
    writes that never reach the source; a source that comes back read-only stops the
    application. ``super_read_only`` None means "no such variable" (MariaDB).
    """

    read_only: bool
    super_read_only: bool | None = None

    def describe(self) -> str:
        """``writable``, ``read-only`` or ``super-read-only``."""
        if self.super_read_only:
            return "super-read-only"
        return "read-only" if self.read_only else "writable"

    def token(self) -> str:
        """Compact text for the journal: ``0``, ``1``, ``1s`` (super) or ``1-`` (not super)."""
        if self.super_read_only is None:
            return "1" if self.read_only else "0"
        return ("1" if self.read_only else "0") + ("s" if self.super_read_only else "-")

    @classmethod
    def from_token(cls, token: str) -> ReadOnlyState:
        text = token.strip()
        if text not in {"0", "1", "0-", "1-", "1s"}:
            raise ValueError(f"not a read_only token: {token!r}")
        sro = None if len(text) == 1 else text[1] == "s"
        return cls(text[0] == "1", sro)


@dataclass(frozen=True)
class ServerInfo:
    """What one ``SELECT @@...`` tells about a server.

    GTID positions: MariaDB fills ``gtid_current_pos``, ``gtid_binlog_pos`` and
    ``gtid_slave_pos``; MySQL fills ``gtid_executed``. Unused ones are "".
    """

    version: str
    flavor: Flavor
    version_tuple: tuple[int, int, int]
    server_id: int
    read_only: bool
    uptime: int
    hostname: str
    gtid_current_pos: str = ""
    gtid_binlog_pos: str = ""
    gtid_slave_pos: str = ""
    gtid_executed: str = ""
    super_read_only: bool | None = None  # None where the server has no such variable (MariaDB)

    @property
    def read_only_state(self) -> ReadOnlyState:
        return ReadOnlyState(self.read_only, self.super_read_only)

    @property
    def gtid_position(self) -> str:
        """The position replicas must reach to have everything this server wrote.

        MariaDB: ``@@gtid_binlog_pos`` (what the source has written to its binlog, the
        thing replicas receive; ``gtid_current_pos`` may also contain ``gtid_slave_pos``
        domains a former replica applied). MySQL: ``@@gtid_executed``.
        """
        if self.flavor is Flavor.MARIADB:
            return self.gtid_binlog_pos
        return self.gtid_executed

    def describe(self) -> str:
        ro = self.read_only_state.describe()
        return (
            f"{self.hostname or '?'} server {self.server_id}, {self.version}, {ro}, "
            f"up {self.uptime} s, GTID {self.gtid_position or 'none'}"
        )


def parse_server_info(variables_row: Mapping[str, object]) -> ServerInfo:
    """Parse a row with keys ``version``, ``server_id``, ``read_only``, ``hostname``,
    ``uptime`` and the flavor's GTID variables (``@@``-prefixed keys are accepted too).
    """
    row = _normalise_keys(variables_row)
    version = _text(row.get("version")).strip()
    if not version:
        raise ValueError("server row has no version")
    flavor = flavor_from_version(version)
    server_id = _opt_int(row.get("server_id"))
    if server_id is None:
        raise ValueError(f"server row has no numeric server_id: {row.get('server_id')!r}")
    return ServerInfo(
        version=version,
        flavor=flavor,
        version_tuple=version_tuple(version),
        server_id=server_id,
        read_only=_bool(row.get("read_only")),
        uptime=_int(row.get("uptime")),
        hostname=_text(row.get("hostname")).strip(),
        gtid_current_pos=_gtid_text(row.get("gtid_current_pos")),
        gtid_binlog_pos=_gtid_text(row.get("gtid_binlog_pos")),
        gtid_slave_pos=_gtid_text(row.get("gtid_slave_pos")),
        gtid_executed=_gtid_text(row.get("gtid_executed")),
        super_read_only=(
            None if row.get("super_read_only") is None else _bool(row.get("super_read_only"))
        ),
    )


def _gtid_text(value: object) -> str:
    """GTID sets come with newlines after commas (MySQL); keep them on one line."""
    return ",".join(part.strip() for part in _text(value).split(",") if part.strip())


# --------------------------------------------------------------------------------------------
# Replica status


# normalised field -> column names, MySQL 8.0.22+ spelling first, then MariaDB / old MySQL.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "io_running": ("Replica_IO_Running", "Slave_IO_Running"),
    "sql_running": ("Replica_SQL_Running", "Slave_SQL_Running"),
    "lag_seconds": ("Seconds_Behind_Source", "Seconds_Behind_Master"),
    "source_host": ("Source_Host", "Master_Host"),
    "source_port": ("Source_Port", "Master_Port"),
    "source_server_id": ("Source_Server_Id", "Master_Server_Id"),
    "source_log_file": ("Source_Log_File", "Master_Log_File"),
    "read_source_log_pos": ("Read_Source_Log_Pos", "Read_Master_Log_Pos"),
    "exec_source_log_pos": ("Exec_Source_Log_Pos", "Exec_Master_Log_Pos"),
    "gtid_io_pos": ("Gtid_IO_Pos", "Retrieved_Gtid_Set"),
    "executed_gtid_set": ("Executed_Gtid_Set",),
    "last_io_errno": ("Last_IO_Errno",),
    "last_io_error": ("Last_IO_Error",),
    "last_sql_errno": ("Last_SQL_Errno",),
    "last_sql_error": ("Last_SQL_Error",),
    "sql_state": ("Replica_SQL_Running_State", "Slave_SQL_Running_State"),
    "io_state": ("Replica_IO_State", "Slave_IO_State"),
    "connect_retry": ("Connect_Retry",),
}


def _cell(row: Mapping[str, object], name: str) -> object:
    for column in _COLUMNS[name]:
        if column in row:
            return row[column]
    return None


@dataclass(frozen=True)
class ReplicaStatus:
    """One replication channel, normalised from MariaDB or MySQL 8.0.22+/8.4 column names.

    ``io_running`` / ``sql_running`` keep the server's words: "Yes", "No", "Connecting".
    ``gtid_io_pos`` is what the IO thread received (MariaDB ``Gtid_IO_Pos``, MySQL
    ``Retrieved_Gtid_Set``); ``executed_gtid_set`` is MySQL-only (MariaDB keeps it in
    ``@@gtid_slave_pos``). ``gtid_mode`` is MariaDB's ``Using_Gtid`` ("Slave_Pos",
    "Current_Pos", "No") or "Auto_Position"/"No" from MySQL's ``Auto_Position``.
    """

    io_running: str
    sql_running: str
    lag_seconds: int | None
    source_host: str
    source_port: int | None
    source_server_id: int | None
    gtid_io_pos: str = ""
    executed_gtid_set: str = ""
    using_gtid: bool = False
    gtid_mode: str = "No"
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    sql_state: str = ""
    io_state: str = ""
    source_log_file: str = ""
    read_source_log_pos: int | None = None
    exec_source_log_pos: int | None = None
    connect_retry: int | None = None
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def threads_running(self) -> bool:
        return self.io_running == "Yes" and self.sql_running == "Yes"

    def io_connecting(self) -> bool:
        return self.io_running == "Connecting"

    def stopped(self) -> bool:
        """Both threads are stopped (with or without an error)."""
        return self.io_running == "No" and self.sql_running == "No"

    def io_broken(self) -> bool:
        return self.io_running == "No" and bool(self.last_io_errno or self.last_io_error)

    def sql_broken(self) -> bool:
        return self.sql_running != "Yes" and bool(self.last_sql_errno or self.last_sql_error)

    def broken(self) -> bool:
        """A thread stopped with an error (a Connecting IO thread is retrying, not broken)."""
        return self.io_broken() or self.sql_broken()

    def lag_within(self, max_lag: float) -> bool:
        """Lag is known and at most ``max_lag`` seconds (unknown lag is never "within")."""
        return self.lag_seconds is not None and self.lag_seconds <= max_lag

    def error_text(self) -> str:
        """The server's own error text per thread, "" when there is none."""
        parts = []
        if self.last_io_errno or self.last_io_error:
            parts.append(f"IO thread: {self.last_io_error or f'error {self.last_io_errno}'}")
        if self.last_sql_errno or self.last_sql_error:
            parts.append(f"SQL thread: {self.last_sql_error or f'error {self.last_sql_errno}'}")
        return "; ".join(parts)

    def describe(self) -> str:
        """One sentence, e.g. "IO Yes, SQL Yes, lag 0 s, from server 1 (db1:3306)"."""
        lag = "unknown" if self.lag_seconds is None else f"{self.lag_seconds} s"
        source = f"{self.source_host}:{self.source_port}" if self.source_port else self.source_host
        origin = (
            f"server {self.source_server_id} ({source})"
            if self.source_server_id
            else (source or "unknown source")
        )
        text = f"IO {self.io_running}, SQL {self.sql_running}, lag {lag}, from {origin}"
        errors = self.error_text()
        return f"{text}; {errors}" if errors else text


def parse_replica_status(row: Mapping[str, object]) -> ReplicaStatus:
    """Normalise a ``SHOW REPLICA STATUS`` / ``SHOW SLAVE STATUS`` row (either flavor)."""
    clean = {_text(k): v for k, v in row.items()}
    io = _cell(clean, "io_running")
    sql = _cell(clean, "sql_running")
    if io is None and sql is None:
        raise ValueError(
            "not a replica status row: no Replica_IO_Running/Slave_IO_Running column "
            f"(columns: {', '.join(sorted(clean)[:8])}...)"
        )
    if "Using_Gtid" in clean:
        gtid_mode = _text(clean["Using_Gtid"]).strip() or "No"
    elif "Auto_Position" in clean:
        gtid_mode = "Auto_Position" if _bool(clean["Auto_Position"]) else "No"
    else:
        gtid_mode = "No"
    return ReplicaStatus(
        io_running=_text(io).strip() or "No",
        sql_running=_text(sql).strip() or "No",
        lag_seconds=_opt_int(_cell(clean, "lag_seconds")),
        source_host=_text(_cell(clean, "source_host")).strip(),
        source_port=_opt_int(_cell(clean, "source_port")),
        source_server_id=_opt_int(_cell(clean, "source_server_id")),
        gtid_io_pos=_gtid_text(_cell(clean, "gtid_io_pos")),
        executed_gtid_set=_gtid_text(_cell(clean, "executed_gtid_set")),
        using_gtid=gtid_mode != "No",
        gtid_mode=gtid_mode,
        last_io_errno=_int(_cell(clean, "last_io_errno")),
        last_io_error=_text(_cell(clean, "last_io_error")).strip(),
        last_sql_errno=_int(_cell(clean, "last_sql_errno")),
        last_sql_error=_text(_cell(clean, "last_sql_error")).strip(),
        sql_state=_text(_cell(clean, "sql_state")).strip(),
        io_state=_text(_cell(clean, "io_state")).strip(),
        source_log_file=_text(_cell(clean, "source_log_file")).strip(),
        read_source_log_pos=_opt_int(_cell(clean, "read_source_log_pos")),
        exec_source_log_pos=_opt_int(_cell(clean, "exec_source_log_pos")),
        connect_retry=_opt_int(_cell(clean, "connect_retry")),
        raw=MappingProxyType({k: _text(v) for k, v in clean.items()}),
    )


# --------------------------------------------------------------------------------------------
# MHA manager status


class MhaState(enum.Enum):
    """``masterha_check_status`` states; the value is its exit code (UNKNOWN: -1)."""

    PING_OK = 0
    NOT_RUNNING = 2
    PARTIALLY_RUNNING = 3
    NOT_FOUND = 4
    INITIALIZING_MONITOR = 10
    PING_FAILING = 20
    PING_FAILED = 21
    RETRYING_MONITOR = 30
    CONFIG_ERROR = 31
    TIMESTAMP_OLD = 32
    FAILOVER_RUNNING = 50
    FAILOVER_ERROR = 51
    UNKNOWN = -1

    @classmethod
    def from_code(cls, code: int) -> MhaState:
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


_MHA_RUNNING = frozenset(
    {
        MhaState.PING_OK,
        MhaState.INITIALIZING_MONITOR,
        MhaState.PING_FAILING,
        MhaState.PING_FAILED,
        MhaState.RETRYING_MONITOR,
        MhaState.TIMESTAMP_OLD,
        MhaState.FAILOVER_RUNNING,
    }
)
_MHA_STOPPED = frozenset({MhaState.NOT_RUNNING, MhaState.NOT_FOUND})
_MHA_ERROR = frozenset(
    {
        MhaState.PARTIALLY_RUNNING,
        MhaState.CONFIG_ERROR,
        MhaState.TIMESTAMP_OLD,
        MhaState.FAILOVER_ERROR,
        MhaState.UNKNOWN,
    }
)

_MHA_TOKEN_RE = re.compile(r"\((\d+):([A-Z_]+)\)")
_MHA_PID_RE = re.compile(r"\(pid:(\d+)\)")
_MHA_MASTER_RE = re.compile(r"master:\s*([^\s,()]+)")


@dataclass(frozen=True)
class MhaStatus:
    state: MhaState
    exit_status: int
    pid: int | None = None
    master: str | None = None
    raw: str = ""

    def healthy(self) -> bool:
        """Monitoring a live master: the state to reach after starting the manager."""
        return self.state is MhaState.PING_OK

    def running(self) -> bool:
        """The manager process is alive (monitoring, starting, or failing over)."""
        return self.state in _MHA_RUNNING

    def stopped(self) -> bool:
        return self.state in _MHA_STOPPED

    def failover_in_progress(self) -> bool:
        return self.state is MhaState.FAILOVER_RUNNING

    def master_unreachable(self) -> bool:
        return self.state in {MhaState.PING_FAILING, MhaState.PING_FAILED}

    def error(self) -> bool:
        """A state that needs a human: config error, failed failover, stray children..."""
        return self.state in _MHA_ERROR

    def describe(self) -> str:
        bits = [f"MHA {self.state.name} (exit {self.exit_status})"]
        if self.pid is not None:
            bits.append(f"pid {self.pid}")
        if self.master:
            bits.append(f"master {self.master}")
        text = ", ".join(bits)
        if self.state is MhaState.UNKNOWN and self.raw.strip():
            text += ": " + " | ".join(self.raw.strip().splitlines()[-3:])
        return text


def parse_mha_status(exit_status: int, output: str) -> MhaStatus:
    """Parse ``masterha_check_status``: the ``(N:NAME)`` token first, else the exit code."""
    state = MhaState.UNKNOWN
    token = _MHA_TOKEN_RE.search(output)
    if token:
        state = MhaState.from_code(int(token[1]))
        if state is MhaState.UNKNOWN and token[2] in MhaState.__members__:
            state = MhaState[token[2]]
    if state is MhaState.UNKNOWN:
        state = MhaState.from_code(exit_status)
    pid = _MHA_PID_RE.search(output)
    master = _MHA_MASTER_RE.search(output)
    return MhaStatus(
        state=state,
        exit_status=exit_status,
        pid=int(pid[1]) if pid else None,
        master=master[1].rstrip(".") if master else None,
        raw=output,
    )
