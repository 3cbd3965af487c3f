"""Scriptable fakes of the adapter Protocols: one simulated group on a manual clock.

They model just enough of mysqld, replication and MHA for the executor's decisions: a restart
takes the node down for ``restart_downtime`` seconds and resets its Uptime; replicas'
IO threads sit in Connecting after the source restarts until their IO thread is restarted;
failures are injected by setting fields on ``FakeWorld``. Like real hosts they may be asked
from several threads at once (parallel batches, observation): a node coming back is one atomic
transition.

Like the real adapters, a server has a reader (``FakeProbe``: questions only) and commands
(``FakeCommands``): the commands port takes exactly the ``Sql`` an action gives it, records it
in ``FakeWorld.sent`` and plays its effect, in either dialect's words (a node with
``super_read_only`` speaks MySQL 8.4's, the others MariaDB's, unless ``version`` says).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from harestart.adapters.protocols import CommandResult
from harestart.domain.dialect import Dialect, dialect_for
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.pending.settings import ServerSettings, parse_settings
from harestart.domain.secret import Secret
from harestart.domain.sql import Sql
from harestart.domain.topology import (
    Flavor,
    MhaState,
    MhaStatus,
    ReadOnlyState,
    ReplicaStatus,
    ServerInfo,
)
from harestart.engine.sequencer.waiting import ManualClock
from harestart.errors import CommandFailed, MysqlError, SshError

# A fresh mysqld's global variables that the fakes play (MariaDB shows no offline_mode: the
# fakes answer it for both flavours, and harestart asks only a MySQL server).
DEFAULT_VARIABLES = {"innodb_max_dirty_pages_pct": "90.000000", "offline_mode": "OFF"}


@dataclass
class FakeNode:
    name: str
    server_id: int
    role: str
    started_at: float = -100.0
    read_only: bool = False
    super_read_only: bool | None = None  # None: MariaDB (no such variable)
    down_until: float | None = None
    applied: int = 10  # GTID sequence number applied (domain 0, server 1)
    io: str = "Yes"
    sql: str = "Yes"
    sql_error: str = ""
    lag: int | None = 0
    source_id: int = 1
    restarts: int = 0
    # failure injection
    restart_fails: bool = False
    io_preparing_reads: int = 0  # after START ... IO_THREAD: "Preparing" for this many reads
    never_comes_back: bool = False
    break_sql_after_restart: str = ""
    ssh_unreachable: bool = False
    variables: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_VARIABLES))
    dirty_pages: int = 500
    # switchover
    config_read_only: bool | None = None  # read_only after a restart (None: unchanged)
    errant: str = ""  # an extra GTID in its executed set ("5-9-1")
    long_trx: list[tuple[int, int]] = field(default_factory=list)  # (thread id, age s)
    version: str | None = None  # @@version; None: MySQL 8.4 with super_read_only, else MariaDB

    def dialect(self) -> Dialect:
        if self.version is not None:
            return dialect_for(self.version)
        return dialect_for("8.4.0" if self.super_read_only is not None else "10.11.6-MariaDB")


@dataclass
class FakeWorld:
    clock: ManualClock
    nodes: dict[str, FakeNode]
    mha_state: MhaState = MhaState.PING_OK
    mha_stop_ignored: bool = False
    mha_dies_on_start: bool = False
    # status polls that still say NOT_RUNNING after a start while the manager process lives
    mha_slow_start: int = 0
    restart_downtime: float = 2.0
    # the source keeps listing Binlog Dump threads after its replicas stopped their IO threads
    dump_threads_linger: bool = False
    events: list[tuple[str, str, float]] = field(default_factory=list)
    sent: list[tuple[str, Sql]] = field(default_factory=list)  # every statement, by host
    # hosts whose restart commands must meet here (proves they run at the same time)
    restart_barrier: threading.Barrier | None = None
    barrier_hosts: frozenset[str] = frozenset()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, replicas: int = 2) -> FakeWorld:
        clock = ManualClock(1000.0)
        nodes = {"db1": FakeNode("db1", 1, "source")}
        for i in range(2, replicas + 2):
            nodes[f"db{i}"] = FakeNode(f"db{i}", i, "replica", read_only=True)
        return cls(clock=clock, nodes=nodes)

    @property
    def source(self) -> FakeNode:
        return next(n for n in self.nodes.values() if n.role == "source")

    def up(self, n: FakeNode) -> bool:
        with self._lock:
            return self._up(n)

    def _up(self, n: FakeNode) -> bool:
        if n.down_until is None:
            return True
        if n.never_comes_back or self.clock.now() < n.down_until:
            return False
        n.down_until = None
        self.events.append(("back", n.name, self.clock.now()))
        n.started_at = self.clock.now()
        n.variables = dict(DEFAULT_VARIABLES)  # a SET GLOBAL does not outlive mysqld
        if n.config_read_only is not None:
            n.read_only = n.config_read_only
        if n.role == "replica":
            n.io, n.sql = "Yes", "Yes"
            if n.break_sql_after_restart:
                n.sql, n.sql_error = "No", n.break_sql_after_restart
        else:  # connected replicas lose their source and sit in Connecting until retried
            for r in self.nodes.values():
                if r.role == "replica" and r.io != "No" and r.source_id == n.server_id:
                    r.io = "Connecting"
        return True

    def mha_polled(self) -> None:
        """A status poll: a slow-starting manager comes up after ``mha_slow_start`` of them."""
        if self.mha_slow_start > 0 and not self.mha_dies_on_start:
            self.mha_slow_start -= 1
            if self.mha_slow_start == 0:
                self.mha_state = MhaState.PING_OK

    def restart(self, name: str) -> None:
        n = self.nodes[name]
        self.events.append(("restart", name, self.clock.now()))
        n.restarts += 1
        n.down_until = self.clock.now() + self.restart_downtime


class FakeShell:
    def __init__(self, world: FakeWorld, name: str) -> None:
        self.world = world
        self.host = name

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        w = self.world
        node = w.nodes.get(self.host)
        if node is not None and node.ssh_unreachable:
            raise SshError(self.host, "connect", "connection refused")
        status, out, err = 0, "", ""
        if command == "true":
            pass
        elif "restart" in command and node is not None:
            if w.restart_barrier is not None and self.host in w.barrier_hosts:
                w.restart_barrier.wait()
            if node.restart_fails:
                status, err = 1, "Job for mariadb.service failed"
            else:
                w.restart(self.host)
        elif "masterha_" in command:
            status, out = self._mha(command)
        elif command.startswith(("my_print_defaults", "tail")):
            out = self._print_defaults(node) if node is not None else self._log_tail()
        result = CommandResult(command, status, out, err, 0.01)
        if check and status != 0:
            raise CommandFailed(self.host, command, status, err)
        return result

    def _mha(self, command: str) -> tuple[int, str]:
        """MHA's commands on the manager host: (exit status, stdout)."""
        w = self.world
        if command.startswith("masterha_stop"):
            w.events.append(("mha_stop", self.host, w.clock.now()))
            if not w.mha_stop_ignored:
                w.mha_state = MhaState.NOT_RUNNING
        elif "masterha_manager" in command:
            w.events.append(("mha_start", self.host, w.clock.now()))
            starting = w.mha_dies_on_start or w.mha_slow_start > 0
            w.mha_state = MhaState.NOT_RUNNING if starting else MhaState.PING_OK
            return 0, "harestart: started pid 4242\n"  # as detached() prints it
        elif command.startswith("masterha_check_status"):
            w.mha_polled()
            return w.mha_state.value, f"app1 is ({w.mha_state.value}:{w.mha_state.name})"
        return 0, ""

    def connect(self) -> None:
        node = self.world.nodes.get(self.host)
        if node is not None and node.ssh_unreachable:
            raise SshError(self.host, "connect", "connection refused")

    @staticmethod
    def _print_defaults(node: FakeNode) -> str:
        ro = node.read_only if node.config_read_only is None else node.config_read_only
        return f"--log_bin=mysql-bin\n--read_only={int(ro)}\n"

    @staticmethod
    def _log_tail() -> str:
        return "Fri Nov 27 [error] Fake MHA log: died"

    def close(self) -> None:
        pass


class FakeProbe:
    """A server's reader: questions only (``MysqlReader``)."""

    def __init__(self, world: FakeWorld, name: str) -> None:
        self.world = world
        self.name = name

    def _node(self) -> FakeNode:
        n = self.world.nodes[self.name]
        if not self.world.up(n):
            raise MysqlError(self.name, "connect", "(2003) Can't connect to MySQL server")
        return n

    def dialect(self) -> Dialect:
        return self._node().dialect()

    def server_info(self) -> ServerInfo:
        n = self._node()
        return ServerInfo(
            version="10.11.6-MariaDB",
            flavor=Flavor.MARIADB,
            version_tuple=(10, 11, 6),
            server_id=n.server_id,
            read_only=n.read_only,
            uptime=self.uptime(),
            hostname=n.name,
            gtid_binlog_pos=f"0-1-{n.applied}",
        )

    def _source_of(self, n: FakeNode) -> FakeNode:
        found = [s for s in self.world.nodes.values() if s.server_id == n.source_id]
        return found[0] if found else self.world.source

    def replica_status(self) -> ReplicaStatus | None:
        n = self._node()
        if n.role != "replica":
            return None
        if n.io == "Preparing":
            n.io_preparing_reads -= 1
            if n.io_preparing_reads <= 0:
                n.io = "Yes"
        return self._status(n)

    def _status(self, n: FakeNode) -> ReplicaStatus:
        src = self._source_of(n)
        if self.world.up(src) and n.io == "Yes" and n.sql == "Yes":
            n.applied = max(n.applied, src.applied)
        return ReplicaStatus(
            io_running=n.io,
            sql_running=n.sql,
            lag_seconds=n.lag if n.sql == "Yes" else None,
            source_host=src.name,
            source_port=3306,
            source_server_id=n.source_id,
            last_sql_errno=1062 if n.sql_error else 0,
            last_sql_error=n.sql_error,
        )

    def uptime(self) -> int:
        n = self._node()
        return int(self.world.clock.now() - n.started_at)

    def read_only(self) -> ReadOnlyState:
        n = self._node()
        return ReadOnlyState(n.read_only, n.super_read_only)

    def gtid_position(self) -> str:
        return f"0-1-{self._node().applied}"

    def global_variable(self, name: str) -> str:
        return self._node().variables[name]

    def global_status(self, name: str) -> str:
        n = self._node()
        if name == "Innodb_buffer_pool_pages_total":
            return "4096"
        if name == "Innodb_buffer_pool_pages_dirty":
            if float(n.variables["innodb_max_dirty_pages_pct"]) == 0:
                n.dirty_pages = max(0, n.dirty_pages - 100)  # flushing
            return str(n.dirty_pages)
        raise KeyError(name)

    def wait_for_gtid(self, position: str, timeout: float) -> bool:
        self.replica_status()
        want = int(position.rsplit("-", 1)[1])
        n = self._node()
        # As the servers answer: a position already applied is reached whether or not the
        # replica's threads run now (WAIT_FOR_EXECUTED_GTID_SET, MASTER_GTID_WAIT).
        if n.applied < want:
            self.world.clock.advance(timeout)
            return False
        return True

    def binlog_dump_threads(self) -> list[int]:
        """A sender per connected replica (thread id 100 + its server_id)."""
        self._node()
        replicas = [n for n in self.world.nodes.values() if n.role == "replica"]
        if self.world.dump_threads_linger:
            return [100 + n.server_id for n in replicas]
        return [100 + n.server_id for n in replicas if n.io == "Yes"]

    def executed_gtid_set(self) -> str:
        n = self._node()
        return f"0-1-{n.applied}" + (f",{n.errant}" if n.errant else "")

    def gtid_subset(self, subset: str, superset: str) -> bool:
        raise AssertionError("MariaDB fakes: GTID_SUBSET is MySQL's")

    def long_transactions(self, older_than: float) -> list[tuple[int, int]]:
        return [t for t in self._node().long_trx if t[1] > older_than]

    def ping(self) -> bool:
        try:
            self._node()
        except MysqlError:
            return False
        return True

    def close(self) -> None:
        pass

    def server_settings(self) -> ServerSettings:
        """The node's variables as MariaDB reports them (all dynamic, as SET GLOBAL makes
        them); read_only as it runs."""
        n = self._node()
        values = {**n.variables, "read_only": "ON" if n.read_only else "OFF"}
        rows = [
            {"name": k, "value": v, "read_only": "NO", "type": "VARCHAR"} for k, v in values.items()
        ]
        return parse_settings(Flavor.MARIADB, (10, 11, 6), [rows])


# The statements the fake servers understand (either dialect's words), to the method playing
# each one's effect; the whole statement must match.
_WORD = r"(?:SLAVE|REPLICA)"
_STATEMENTS = (
    (rf"STOP {_WORD} IO_THREAD", "stop_io_thread"),
    (rf"START {_WORD} IO_THREAD", "start_io_thread"),
    (rf"STOP {_WORD}", "stop_replica"),
    (rf"START {_WORD}", "start_replica"),
    (rf"RESET {_WORD} ALL", "reset_replica_all"),
    (r"SET GLOBAL (super_read_only|read_only) = (ON|OFF)", "set_read_only_variable"),
    (r"SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos", "copy_binlog_pos"),
    (r"SET GLOBAL (offline_mode) = (ON|OFF)", "set_switch"),
    (r"SET GLOBAL (\w+) = %s", "set_global"),
    (r"CHANGE (?:MASTER|REPLICATION SOURCE) TO .*", "change_source"),
    (r"KILL %s", "kill_connection"),
)


class FakeCommands:
    """A server's commands (``MysqlCommands``): records each statement and plays it."""

    def __init__(self, world: FakeWorld, name: str) -> None:
        self.world = world
        self.name = name

    def _node(self) -> FakeNode:
        return FakeProbe(self.world, self.name)._node()

    def _event(self, kind: str, what: str | None = None) -> None:
        self.world.events.append((kind, what or self.name, self.world.clock.now()))

    def execute(self, statement: Sql, *, tolerate: frozenset[int] = frozenset()) -> bool:
        assert not statement.slots, f"sent with a slot not filled: {statement.shown()}"
        self._node()
        self.world.sent.append((self.name, statement))
        for pattern, method in _STATEMENTS:
            m = re.fullmatch(pattern, statement.text)
            if m:
                try:
                    getattr(self, method)(*m.groups(), *statement.args)
                except MysqlError as exc:
                    if any(exc.reason.startswith(f"({code})") for code in tolerate):
                        return False
                    raise
                return True
        raise AssertionError(f"the fake server does not know {statement.shown()!r}")

    def stop_io_thread(self) -> None:
        self._node().io = "No"
        self._event("io_stop")

    def start_io_thread(self) -> None:
        n = self._node()
        self._event("io_start")
        n.io = "Yes" if self.world.up(self.world.source) else "Connecting"
        if n.io == "Yes" and n.io_preparing_reads > 0:
            n.io = "Preparing"

    def start_replica(self) -> None:
        n = self._node()
        self._event("start_replica")
        n.io = n.sql = "Yes"

    def stop_replica(self) -> None:
        n = self._node()
        self._event("stop_replica")
        n.io = n.sql = "No"

    def reset_replica_all(self) -> None:
        n = self._node()
        self._event("reset_replica")
        n.role = "source"

    def set_read_only_variable(self, variable: str, value: str) -> None:
        """As the servers link them: super_read_only ON implies read_only ON, read_only OFF
        implies super_read_only OFF."""
        n, on = self._node(), value == "ON"
        if variable == "read_only":
            n.read_only = on
            if not on and n.super_read_only is not None:
                n.super_read_only = False
        else:
            assert n.super_read_only is not None, "MariaDB has no super_read_only"
            n.super_read_only = on
            n.read_only = n.read_only or on
        self._event(
            "set_read_only", f"{self.name}:{ReadOnlyState(n.read_only, n.super_read_only).token()}"
        )
        writable = [x.name for x in self.world.nodes.values() if not x.read_only]
        assert len(writable) <= 1, f"two writable nodes: {writable}"

    def copy_binlog_pos(self) -> None:
        self._event("copy_binlog_pos")

    def set_switch(self, name: str, value: str) -> None:
        """An ON/OFF variable (offline_mode), written into the text, not sent as a value."""
        self._event("set_global", f"{self.name}:{name}={value}")
        self._node().variables[name] = value

    def set_global(self, name: str, value: object) -> None:
        assert isinstance(value, (int, float)), "numeric variables take numbers, not strings"
        n = self._node()
        text = f"{float(value):.6f}"  # how MariaDB shows it back
        self._event("set_global", f"{self.name}:{name}={text}")
        n.variables[name] = text

    def change_source(self, host: str, port: int, user: str, password: object) -> None:
        n = self._node()
        assert isinstance(password, Secret), "the password stays wrapped until the adapter"
        target = next(x for x in self.world.nodes.values() if x.name == host)
        self._event("change_source", f"{self.name}->{host}")
        n.role, n.source_id, n.io, n.sql = "replica", target.server_id, "No", "No"

    def kill_connection(self, thread_id: int) -> None:
        n = self._node()
        senders = FakeProbe(self.world, self.name).binlog_dump_threads()
        if thread_id not in senders and thread_id not in [t for t, _ in n.long_trx]:
            raise MysqlError(self.name, "KILL", f"(1094) Unknown thread id: {thread_id}")
        self._event("kill", f"{self.name}:{thread_id}")
        n.long_trx = [t for t in n.long_trx if t[0] != thread_id]


class FakeMha:
    def __init__(self, world: FakeWorld, shell: FakeShell) -> None:
        self.world = world
        self.shell = shell

    def status(self) -> MhaStatus:
        self.world.mha_polled()
        return MhaStatus(
            state=self.world.mha_state, exit_status=self.world.mha_state.value, master="db1"
        )

    def stop(self, command: str) -> CommandResult:
        return self.shell.run(command, check=False)

    def start(self, command: str) -> CommandResult:
        return self.shell.run(command)

    def log_tail(self, lines: int = 20) -> str:
        return self.shell.run("tail -n 20 /var/log/mha/app1/manager.log").stdout

    def alive(self, pid: int) -> bool | None:
        self.world.events.append(("mha_alive", str(pid), self.world.clock.now()))
        return not self.world.mha_dies_on_start


class FakeConnector:
    def __init__(self, world: FakeWorld) -> None:
        self.world = world

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        return FakeShell(self.world, name)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        return FakeProbe(self.world, name)

    def commands(self, name: str, endpoint: MysqlEndpoint) -> FakeCommands:
        return FakeCommands(self.world, name)

    def close_all(self) -> None:
        pass
