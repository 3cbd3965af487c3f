"""The small interfaces the executor talks to. Real adapters and test fakes both fit them.

No paramiko or pymysql here: importing this module is cheap and safe in planning code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from harestart.domain.coordination import HolderInfo, UnfinishedMark
from harestart.domain.dialect import Dialect
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.domain.hook_protocol import Exchange
from harestart.domain.hooks import HookOutcome
from harestart.domain.judge import LockView
from harestart.domain.pending.marks import OperatorMark
from harestart.domain.pending.settings import ServerSettings
from harestart.domain.sql import Sql
from harestart.domain.topology import MhaStatus, ReadOnlyState, ReplicaStatus, ServerInfo


@dataclass(frozen=True)
class CommandResult:
    """One finished remote command. ``command`` is as displayed (before sudo wrapping)."""

    command: str
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def describe(self) -> str:
        return f"`{self.command}` exited {self.exit_status} after {self.duration_s:.1f} s"


class RemoteShell(Protocol):
    """Runs commands on one host."""

    @property
    def host(self) -> str:
        """Display name of the host (the inventory name, not necessarily its address)."""
        ...

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``command`` through the remote shell.

        ``sudo=None`` follows the endpoint's setting; ``timeout=None`` its command timeout.
        Raises ``CommandFailed`` when ``check`` and the exit status is not 0, ``SshError``
        when the command could not be run or did not finish in time.
        """
        ...

    def connect(self) -> None:
        """Open the session now if it is not open (raises ``SshError`` as ``run`` would);
        the next commands use it. Lets an observation reach SSH while it waits on MySQL."""
        ...

    def close(self) -> None: ...


class MysqlReader(Protocol):
    """What gates, waits and observation ask one mysqld: questions only, it changes nothing.

    Reconnects transparently when the connection dropped (mysqld restarted); a failed
    (re)connect raises ``MysqlError``.
    """

    @property
    def name(self) -> str: ...

    def dialect(self) -> Dialect:
        """The server's own SQL, from its version (what a performer sends it is chosen by
        this, see ``PlanAction.sql``)."""
        ...

    def server_info(self) -> ServerInfo: ...

    def replica_status(self) -> ReplicaStatus | None:
        """``None`` when the server is not a replica (no status row)."""
        ...

    def uptime(self) -> int: ...

    def read_only(self) -> ReadOnlyState:
        """``read_only`` and, where the server has it, ``super_read_only``."""
        ...

    def global_variable(self, name: str) -> str:
        """``@@global.<name>`` as text."""
        ...

    def global_status(self, name: str) -> str:
        """One ``SHOW GLOBAL STATUS`` value as text."""
        ...

    def gtid_position(self) -> str:
        """The position replicas need to reach to have all this server wrote.

        MariaDB: ``@@gtid_binlog_pos``; MySQL: ``@@gtid_executed``. Read it on the source,
        then ``wait_for_gtid`` on each replica.
        """
        ...

    def wait_for_gtid(self, position: str, timeout: float) -> bool:
        """Block until this server applied ``position`` (True) or ``timeout`` passed (False).

        MariaDB ``MASTER_GTID_WAIT``; MySQL ``WAIT_FOR_EXECUTED_GTID_SET``.
        """
        ...

    def binlog_dump_threads(self) -> list[int]:
        """The thread ids of the replication senders (``Binlog Dump`` threads) listed."""
        ...

    def executed_gtid_set(self) -> str:
        """Every GTID this server executed: MySQL ``@@gtid_executed``, MariaDB
        ``@@gtid_current_pos``."""
        ...

    def gtid_subset(self, subset: str, superset: str) -> bool:
        """MySQL ``GTID_SUBSET(subset, superset)`` asked on this server."""
        ...

    def long_transactions(self, older_than: float) -> list[tuple[int, int]]:
        """(thread id, age in s) of every transaction open longer than ``older_than`` s."""
        ...

    def ping(self) -> bool:
        """True when the server answers (reconnecting if needed); never raises."""
        ...

    def close(self) -> None:
        """Close harestart's session (the next question opens a new one)."""
        ...

    # --- pending restarts (#23): a reader's question, it only reads ---------------------

    def server_settings(self) -> ServerSettings:
        """Every global variable (value, type, whether it can change at run time) and, on
        MySQL, the persisted values: one statement per source of truth
        (``harestart.domain.pending.settings``)."""
        ...


# ER_NO_SUCH_THREAD: the session a KILL names ended by itself meanwhile.
UNKNOWN_THREAD = 1094


class MysqlCommands(Protocol):
    """What actions send one mysqld: exactly the statements given, nothing it chooses.

    The same session as the server's ``MysqlReader`` (closing that closes this one's too).
    """

    @property
    def name(self) -> str: ...

    def execute(self, statement: Sql, *, tolerate: frozenset[int] = frozenset()) -> bool:
        """Send ``statement`` (every slot filled) as it is. True when the server accepted it;
        False when it refused it with an error number in ``tolerate`` (``UNKNOWN_THREAD``:
        a session ended by itself); any other failure raises ``MysqlError``."""
        ...


class FailoverStatus(Protocol):
    """What gates and observation ask the failover manager (MHA) of one group."""

    def status(self) -> MhaStatus: ...

    def log_tail(self, lines: int = 20) -> str: ...

    def alive(self, pid: int) -> bool | None:
        """Whether the process ``pid`` (the manager harestart started) still lives on the
        manager host; None when that cannot be told."""
        ...


class FailoverManager(FailoverStatus, Protocol):
    """The failover manager (MHA) of one group, stopped and started with the plan's commands."""

    def stop(self, command: str) -> CommandResult:
        """Run exactly ``command`` (the plan's) to stop the manager. Its exit status is not
        trusted: poll ``status()``."""
        ...

    def start(self, command: str) -> CommandResult:
        """Run exactly ``command`` (the plan's, which detaches the manager); poll
        ``status()`` until it is healthy."""
        ...


class Connector(Protocol):
    """Builds adapters, so the executor (and tests) can swap real ones for fakes."""

    def shell(self, name: str, endpoint: SshEndpoint) -> RemoteShell: ...

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> MysqlReader:
        """The server's reader: one session per server, reused."""
        ...

    def commands(self, name: str, endpoint: MysqlEndpoint) -> MysqlCommands:
        """The server's commands, over the same session as its reader."""
        ...

    def close_all(self) -> None: ...


class HookProgram(Protocol):
    """A persistent hook program, started by ``HookRunner.start`` (one line in, one line out)."""

    def exchange(self, line: str, *, timeout: float) -> Exchange:
        """Write ``line`` and a newline on its stdin; read one line from its stdout within
        ``timeout`` seconds. Never raises for what the program does (it may die, hang or
        answer anything): the ``Exchange`` says what happened."""
        ...

    def stop(self, *, polite: bool = True) -> str:
        """End it, its process group included: close its stdin and (``polite``) give it time
        to exit, then SIGTERM, then SIGKILL. Says how it ended. Safe to call twice."""
        ...


class HookRunner(Protocol):
    """Runs hooks on the bastion (``harestart.adapters.hooks``)."""

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        """Run ``command`` with ``/bin/sh -c`` in ``cwd``, stdin closed, with exactly ``env``
        as its environment; kill its process group after ``timeout`` seconds. Raises
        ``RemoteError`` (host ``bastion``) only when it could not be started."""
        ...

    def start(self, command: str, *, cwd: str, env: Mapping[str, str]) -> HookProgram:
        """Start ``command`` (``/bin/sh -c``, in ``cwd``, exactly ``env``) as a persistent
        program: its stdin and stdout are the protocol's, its stderr is kept. Raises
        ``RemoteError`` (host ``bastion``) only when it could not be started."""
        ...


class HeldLock(Protocol):
    """A lock ``Coordination.acquire`` took; release it exactly once."""

    def publish(self, run_id: str) -> None:
        """Name the run (its journal's run id) in the published holder."""

    def release(self) -> None:
        """Give the lock up (best effort: a service that is down lets the lease expire)."""


class Coordination(Protocol):
    """One backend's view of the groups' locks and unfinished marks."""

    # "local", or the service's URL scheme ("etcd3+http", "redis", "zookeeper", "file").
    backend: str
    # Whether a lock can outlive its run (the local flock's holder record, left by a run
    # that died: broken with --break-lock); a service's lease frees a lock by itself.
    stale_locks: bool

    def acquire(
        self,
        group: Group,
        holder: HolderInfo,
        *,
        break_stale: bool,
        on_lost: Callable[[str], None],
    ) -> HeldLock:
        """Take the group's lock or raise LockHeld (exit 4) naming the holder; raise
        CoordinationUnavailable (exit 3) when the service does not answer."""

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        """Raise what ``acquire`` would (LockHeld), without taking the lock."""

    def lock_view(self, group: Group) -> LockView:
        """The lock as the judge takes it (holder described, alive, backend)."""

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        """Record (replacing any earlier one) that a run of the group is unfinished."""

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        """The group's unfinished mark, if any (None for the local backend)."""

    def clear_unfinished(self, group: Group) -> None:
        """Remove the group's unfinished mark (no error when there is none)."""

    def close(self) -> None:
        """Disconnect; locks still held are released."""


class PendingMarks(Protocol):
    """Where operators' pending-restart marks of groups are kept (#23): the group's
    coordination service, else the state directory. One mark per node and one for the whole
    group: a new mark replaces the earlier one of the same scope."""

    backend: str

    def pending_marks(self, group: Group) -> tuple[OperatorMark, ...]:
        """The group's marks; a stored record that is not a mark is refused (an error)."""

    def add_pending_mark(self, group: Group, mark: OperatorMark) -> None:
        """Store ``mark``, replacing the group's earlier mark of the same node (or group)."""

    def clear_pending_marks(self, group: Group, nodes: frozenset[str] | None) -> int:
        """Remove the marks of ``nodes`` (None: every mark of the group); how many went."""

    def close(self) -> None:
        """Disconnect."""


@dataclass(frozen=True)
class FleetMark:
    """What a fleet member recorded for a group of a round: ``done`` or ``failed``, by whom."""

    group: str  # "<account>/<group id>"
    outcome: str  # "done" | "failed"
    host: str
    pid: int
    state_dir: str
    detail: str = ""

    def describe(self) -> str:
        what = "done" if self.outcome == "done" else "failed"
        text = f"{what} by {self.host}/pid {self.pid} (state directory {self.state_dir})"
        return f"{text}: {self.detail}" if self.detail else text

    def to_dict(self) -> dict[str, object]:
        return {
            "group": self.group,
            "outcome": self.outcome,
            "host": self.host,
            "pid": self.pid,
            "state_dir": self.state_dir,
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, raw: object) -> FleetMark | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                group=str(raw["group"]),
                outcome=str(raw["outcome"]),
                host=str(raw["host"]),
                pid=int(raw["pid"]),
                state_dir=str(raw["state_dir"]),
                detail=str(raw.get("detail", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


class FleetBoard(Protocol):
    """The fleet of bastions sharing ``--all`` through a coordination service.

    Members join a group with a lease (a dead bastion leaves it by itself); the round and the
    per-group marks are persistent (no lease): they outlive every member.
    """

    member: str  # this member's id in the fleet

    def join(self, capabilities: dict[str, str]) -> None:
        """Become a live member (a heartbeat keeps the membership while the process lives)."""

    def members(self) -> set[str]:
        """The live members (their leases have not expired), this one included."""

    def open_round(self, proposal: str) -> str:
        """The round in progress, or ``proposal`` made the round when there is none."""

    def marks(self, round_id: str) -> dict[str, FleetMark]:
        """Every group's mark of the round (by FleetMark.group)."""

    def mark(self, round_id: str, mark: FleetMark) -> None:
        """Record a group's outcome in the round (persistent)."""

    def leave(self) -> None:
        """Stop being a member (idempotent)."""

    def end_round(self, round_id: str) -> None:
        """Delete the round and its marks (the last member out does it)."""

    def close(self) -> None:
        """Leave and disconnect."""
