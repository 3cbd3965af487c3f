"""Gates: typed checks a run must see hold before it goes on. Pure data.

A gate never changes anything: every statement or command a run sends is an action
(``harestart.domain.actions``). The engine evaluates each gate type with its own evaluator
(``harestart.engine.ops.registry``); ``describe()`` is what people and the plan's JSON read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    def describe(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError


@dataclass(frozen=True)
class AllReachable(Gate):
    def describe(self) -> str:
        return "every node answers over SSH and MySQL, and the MHA manager over SSH"


@dataclass(frozen=True)
class TopologyMatches(Gate):
    source: str

    def describe(self) -> str:
        return (
            f"every listed replica replicates from {self.source} (compared by server_id), "
            "both threads running, no replication error"
        )


@dataclass(frozen=True)
class FailoverQuiet(Gate):
    def describe(self) -> str:
        return "MHA is not failing over and not in an error state"


@dataclass(frozen=True)
class MhaStopped(Gate):
    def describe(self) -> str:
        return "masterha_check_status reports NOT_RUNNING"


@dataclass(frozen=True)
class MhaRunning(Gate):
    def describe(self) -> str:
        return "masterha_check_status reports PING_OK (after INITIALIZING_MONITOR)"


@dataclass(frozen=True)
class Restarted(Gate):
    host: str

    def describe(self) -> str:
        return f"{self.host}: mysqld answers again and its Uptime proves it restarted"


@dataclass(frozen=True)
class ThreadsRunning(Gate):
    host: str

    def describe(self) -> str:
        return f"{self.host}: replication IO and SQL threads running"


@dataclass(frozen=True)
class CaughtUp(Gate):
    host: str
    to: str  # what it catches up to, in words

    def describe(self) -> str:
        return f"{self.host}: applied {self.to}"


@dataclass(frozen=True)
class LagWithin(Gate):
    host: str
    max_lag: float

    def describe(self) -> str:
        return f"{self.host}: lag <= {self.max_lag:g} s"


@dataclass(frozen=True)
class DirtyPagesFlushed(Gate):
    """--preflush: a clean buffer pool makes the source's shutdown (its downtime) short.

    Soft: a pre-flush that cannot finish only costs time, so the run goes on after the wait."""

    host: str
    max_dirty_pct: float

    def describe(self) -> str:
        return (
            f"{self.host}: pre-flush: dirty pages <= {self.max_dirty_pct:g}% of the buffer pool, "
            "waiting up to the catch-up timeout (restarting anyway after that, with a warning)"
        )


@dataclass(frozen=True)
class ReplicasCaughtUp(Gate):
    def describe(self) -> str:
        return "every replica applied the source's current GTID position (before the restart)"


@dataclass(frozen=True)
class WritableAsBefore(Gate):
    host: str

    def describe(self) -> str:
        return (
            f"{self.host}: read_only (and super_read_only, where the server has it) exactly "
            "as before the restart"
        )


@dataclass(frozen=True)
class SendersGone(Gate):
    """Idle replication senders hold a MySQL source's shutdown for ~10 s (write downtime).

    Soft: a sender that lingers only makes the shutdown slower."""

    source: str
    timeout: float

    def describe(self) -> str:
        return (
            f"{self.source}: no `Binlog Dump` thread listed, waiting up to {self.timeout:g} s "
            "(restarting anyway after that, with a warning)"
        )


@dataclass(frozen=True)
class ReplicasReconnected(Gate):
    def describe(self) -> str:
        return (
            "every replica: IO and SQL threads running and caught up with the source's "
            "position after its restart"
        )


# --- switchover (harestart.domain.switch) ----------------------------------------------------


@dataclass(frozen=True)
class SwitchReady(Gate):
    """Before a switch changes anything: the candidate is a healthy, caught-up replica of the
    source, and holds no transaction the source never had."""

    candidate: str
    source: str
    max_lag: float

    def describe(self) -> str:
        return (
            f"{self.candidate}: replicates from {self.source} (compared by server_id), both "
            f"threads running, lag <= {self.max_lag:g} s; no errant transactions: its executed "
            f"GTID set is contained in {self.source}'s (MySQL: GTID_SUBSET asked on "
            f"{self.source}; MariaDB: gtid_current_pos compared per domain)"
        )


@dataclass(frozen=True)
class StartsReadOnly(Gate):
    """The old source is restarted as a replica: its configuration must start mysqld
    read-only, or it would be a second writable node from its start until harestart set it
    read-only again."""

    host: str

    def describe(self) -> str:
        return (
            f"{self.host}: its configuration starts mysqld read-only (`{MY_PRINT_DEFAULTS}` "
            "shows read_only=ON), so its restart as a replica never makes it writable"
        )


MY_PRINT_DEFAULTS = "my_print_defaults mysqld server mariadb mariadbd"


@dataclass(frozen=True)
class NoLongTransactions(Gate):
    source: str
    limit: float

    def describe(self) -> str:
        return (
            f"{self.source}: no transaction open longer than {self.limit:g} s "
            "(information_schema.innodb_trx)"
        )


@dataclass(frozen=True)
class CandidateApplied(Gate):
    candidate: str
    source: str

    def describe(self) -> str:
        return (
            f"{self.candidate}: applied the executed GTID set of {self.source} read once it was "
            "read-only, waiting up to the catch-up timeout"
        )


@dataclass(frozen=True)
class SoleWritable(Gate):
    host: str

    def describe(self) -> str:
        return f"exactly one writable node: {self.host}"


@dataclass(frozen=True)
class RepointedTo(Gate):
    host: str
    source: str

    def describe(self) -> str:
        return (
            f"{self.host}: replicates from {self.source} (compared by server_id), IO and SQL "
            f"threads running, applied {self.source}'s executed GTID set"
        )


@dataclass(frozen=True)
class NotPending(Gate):
    """``run --only-pending``: the restart ended what the node was restarted for (#23)."""

    host: str

    def describe(self) -> str:
        return (
            f"{self.host}: no restart pending any more (its option files, persisted settings, "
            "binary and libraries as mysqld now runs them)"
        )


# Gates whose failure to hold in time is a warning, not a failed step.
SOFT_GATES = (DirtyPagesFlushed, SendersGone)
