"""Actions: every command and statement a run may send, as typed plan data. Pure.

The plan lists them (``harestart plan`` prints each with its exact text); the engine carries
them out through the adapters and never sends anything the plan does not show. An action may
be conditional (``when``, in words: decided at run time from what the run sees) and may be
proven by gates right after it (``then``).

SQL differs by server: the plan is built without asking the servers, so each statement is
shown in every form the dialects (``harestart.domain.dialect``) send, the one MySQL 8.0.22+
uses first (the JSON's ``do``). ``describe(wording)`` says it in one server's words instead:
the dialect of the server the action meets (``harestart plan`` for people, see
``harestart.views.plan``); ``brief`` leaves out the wrapper a command is sent in. Text between
``<`` and ``>`` is filled in at run time (a value read before, a thread id).

What is sent is what is shown: ``sql(dialect)`` is every statement an SQL action sends to a
server of that dialect, in order, as ``Sql`` (values apart from the text; a value known only at
run time is a ``Slot``, shown ``<...>``, that the performer fills and nothing else); a command
action sends its ``command``. The performers (``harestart.engine.ops``) send exactly these,
through a port that can only write.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harestart.domain.dialect import (
    SET_SLAVE_POS_FROM_BINLOG,
    Dialect,
    ReplicationSource,
    dialect_for,
    kill,
    set_global,
)
from harestart.domain.flavor import Flavor
from harestart.domain.gates import Gate
from harestart.domain.sql import Slot, Sql, identifier

_NEW = dialect_for("8.4.0")  # REPLICA words, super_read_only
_OLD = dialect_for("10.11.0-MariaDB")  # SLAVE words (also MySQL before 8.0.22)
_OLD_WHO = "MariaDB, MySQL < 8.0.22"
_MARIADB = _OLD  # switchover speaks MariaDB's words or MySQL 8.0.22+'s


@functools.cache
def _kind(class_name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")


def quoted(statement: str) -> str:
    return f"`{statement}`"


# Values only the run knows, filled by the performers (``Sql.fill``).
THREAD_ID = Slot("thread id")
VALUE_BEFORE = Slot("its value before")
_ON_OFF = ("ON", "OFF")
READ_ONLY_BEFORE = Slot("ON|OFF as before", _ON_OFF, key="read_only")
SUPER_READ_ONLY_BEFORE = Slot("ON|OFF as before", _ON_OFF, key="super_read_only")
WRITABLE_BEFORE_SWITCH = Slot("OFF as before the switch", _ON_OFF)
REPLICATION_PASSWORD = Slot("replication password", secret=True)


@dataclass(frozen=True, kw_only=True)
class PlanAction:
    """One thing a run does to one host."""

    host: str
    when: str = ""  # the condition, in words ("" = always)
    then: tuple[Gate, ...] = ()  # gates that prove it, evaluated right after it

    _kind_name = ""  # each class's own, set once when the class is made

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._kind_name = _kind(cls.__name__)

    @property
    def kind(self) -> str:
        """``RestartMysqld`` -> ``restart_mysqld`` (the JSON's ``kind``)."""
        return self._kind_name

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        """Exactly the statements sent to a server of ``dialect``, in order (slots filled at
        run time); none for an action that runs a command."""
        return ()

    def replica_only(self, dialect: Dialect) -> tuple[Sql, ...]:
        """Those of ``sql(dialect)`` sent only when the server is a replica (it has a
        replica status): the plan says "(only if it is a replica)"."""
        return ()

    def statements(self) -> tuple[str, ...]:
        """Every exact form of what is sent (``<...>``: filled in at run time)."""
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        """The statements in words, each quoted: in the words of the server ``wording`` (None:
        every server's form); ``brief``: a command as the inventory gives it, without the
        wrapper it is sent in."""
        return " ; ".join(quoted(s) for s in self.statements())

    def describe(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        """One line: where, what (``what``), and the condition. The JSON's ``do`` is the
        default: every server's form, every wrapper."""
        text = f"on {self.host}: {self.what(wording, brief=brief)}"
        return f"{text} (only if {self.when})" if self.when else text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self._kind_name, "host": self.host, "do": self.describe()}
        if self.when:
            d["when"] = self.when
        if self.then:
            d["then"] = [g.describe() for g in self.then]
        return d


# --- commands over SSH -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunCommand(PlanAction):
    """A shell command, exactly as sent (before the endpoint's optional sudo wrapping)."""

    command: str

    def statements(self) -> tuple[str, ...]:
        return (self.command,)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return f"run {quoted(self.command)}"


@dataclass(frozen=True, kw_only=True)
class RestartMysqld(RunCommand):
    """The inventory's restart command, wrapped so it finishes even if SSH drops."""

    inventory_command: str

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        text = f"run {quoted(self.inventory_command)} (kept running if the SSH session drops)"
        return text if brief else f"{text} as {quoted(self.command)}"


@dataclass(frozen=True, kw_only=True)
class StopMha(RunCommand):
    pass


@dataclass(frozen=True, kw_only=True)
class StartMha(RunCommand):
    """The manager command, detached so it outlives the SSH session that starts it."""

    inventory_command: str

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        text = f"start {quoted(self.inventory_command)} detached"
        return text if brief else f"{text} as {quoted(self.command)}"


# --- SQL -------------------------------------------------------------------------------------


def _forms(new: str, old: str) -> str:
    return quoted(new) if new == old else f"{quoted(new)} ({_OLD_WHO}: {quoted(old)})"


def _said(wording: Dialect | None, statement: Callable[[Dialect], str]) -> str:
    """A statement in the words of ``wording``; None: in both forms (see ``_forms``)."""
    if wording is None:
        return _every_form(statement)
    return quoted(statement(wording))


@functools.cache  # a few statements, said in every plan
def _every_form(statement: Callable[[Dialect], str]) -> str:
    return _forms(statement(_NEW), statement(_OLD))


def _stop_io(d: Dialect) -> str:
    return d.stop_io_thread


def _start_io(d: Dialect) -> str:
    return d.start_io_thread


_STOP_IO = (_NEW.stop_io_thread, _OLD.stop_io_thread)
_START_IO = (_NEW.start_io_thread, _OLD.start_io_thread)


@dataclass(frozen=True, kw_only=True)
class StopIoThread(PlanAction):
    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(dialect.stop_io_thread),)

    def statements(self) -> tuple[str, ...]:
        return _STOP_IO

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return _said(wording, _stop_io)


@dataclass(frozen=True, kw_only=True)
class StartIoThread(PlanAction):
    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(dialect.start_io_thread),)

    def statements(self) -> tuple[str, ...]:
        return _START_IO

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return _said(wording, _start_io)


@dataclass(frozen=True, kw_only=True)
class RestartIoThread(PlanAction):
    """Reconnect now instead of after ``Connect_Retry`` (60 s by default)."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(dialect.stop_io_thread), Sql(dialect.start_io_thread))

    def statements(self) -> tuple[str, ...]:
        return (*_STOP_IO, *_START_IO)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return f"{_said(wording, _stop_io)} then {_said(wording, _start_io)}"


@dataclass(frozen=True, kw_only=True)
class KillBinlogDumps(PlanAction):
    """End the replication senders still listed once the replicas stopped receiving (an idle
    sender notices its replica left only at its next heartbeat)."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (kill_thread(),)  # once per sender listed

    def statements(self) -> tuple[str, ...]:
        return ("KILL <thread id>",)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return "`KILL <thread id>` for each `Binlog Dump` thread listed by `SHOW PROCESSLIST`"


@dataclass(frozen=True, kw_only=True)
class SetGlobal(PlanAction):
    name: str
    value: float

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (set_global(self.name, self.value),)

    def statements(self) -> tuple[str, ...]:
        return (f"SET GLOBAL {self.name} = {self.value:g}",)


@dataclass(frozen=True, kw_only=True)
class RestoreGlobal(PlanAction):
    """Put back a global variable an earlier ``SetGlobal`` changed."""

    name: str

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(f"SET GLOBAL {identifier(self.name)} = %s", (VALUE_BEFORE,)),)

    def statements(self) -> tuple[str, ...]:
        return (f"SET GLOBAL {self.name} = <its value before>",)


@dataclass(frozen=True, kw_only=True)
class SetOfflineMode(PlanAction):
    """MySQL's ``offline_mode``, right before the source's restart: ON disconnects the
    application's sessions (accounts without CONNECTION_ADMIN or SUPER) and refuses new ones,
    so the shutdown that follows finds no client thread and skips the fixed 2 s it otherwise
    gives client threads "a chance to die gracefully" (its write gap was 2 s longer). OFF (a
    cleanup): the step failed before mysqld restarted; a restart clears it anyway (a ``SET
    GLOBAL`` does not outlive the process). MariaDB has no offline_mode: nothing is sent."""

    on: bool

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        if not dialect.has_offline_mode:
            return ()
        return (Sql(self.statements()[0]),)

    def statements(self) -> tuple[str, ...]:
        return (f"SET GLOBAL offline_mode = {'ON' if self.on else 'OFF'}",)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        if wording is not None and not wording.has_offline_mode:
            return "nothing (this server has no offline_mode)"
        return super().what(wording, brief=brief)


@dataclass(frozen=True, kw_only=True)
class RestoreReadOnly(PlanAction):
    """Leave read_only (and super_read_only) exactly as noted before the restart."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        read_only = Sql("SET GLOBAL read_only = %s", (READ_ONLY_BEFORE,))
        if not dialect.has_super_read_only:
            return (read_only,)
        return (read_only, Sql("SET GLOBAL super_read_only = %s", (SUPER_READ_ONLY_BEFORE,)))

    def statements(self) -> tuple[str, ...]:
        return _as_before(_NEW)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        if wording is not None:
            return " then ".join(quoted(s) for s in _as_before(wording))
        first, second = (quoted(s) for s in self.statements())
        return f"{first} then, where the server has it, {second}"


def _as_before(d: Dialect) -> tuple[str, ...]:
    """What ``RestoreReadOnly`` sends to a server of dialect ``d``."""
    before = "<ON|OFF as before>"
    return tuple(s.replace("= ON", f"= {before}") for s in d.set_read_only_statements(True, True))


# --- switchover (harestart.domain.switch) ----------------------------------------------------

_MARIADB_WHO = "MariaDB"


def _mysql_or_mariadb(mysql: str, mariadb: str) -> str:
    return (
        quoted(mysql)
        if mysql == mariadb
        else f"{quoted(mysql)} ({_MARIADB_WHO}: {quoted(mariadb)})"
    )


@dataclass(frozen=True, kw_only=True)
class KillLongTransactions(PlanAction):
    """``--long-transactions kill``: end the sessions holding old transactions on the source."""

    limit: float

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (kill_thread(),)  # once per session listed

    def statements(self) -> tuple[str, ...]:
        return ("KILL <thread id>",)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        return (
            "`KILL <thread id>` for each session whose transaction is open longer than "
            f"{self.limit:g} s (information_schema.innodb_trx)"
        )


@dataclass(frozen=True, kw_only=True)
class SetSourceReadOnly(PlanAction):
    """The source stops taking writes before anything else of the switch (its state before
    is noted: a switch that fails before the candidate is writable restores it)."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        sro = True if dialect.has_super_read_only else None
        return tuple(Sql(s) for s in dialect.set_read_only_statements(True, sro))

    def statements(self) -> tuple[str, ...]:
        return _NEW.set_read_only_statements(True, True)

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        if wording is not None:
            return " then ".join(quoted(s) for s in wording.set_read_only_statements(True, True))
        mysql = " then ".join(quoted(s) for s in self.statements())
        return f"{mysql} ({_MARIADB_WHO}: {quoted(_OLD.set_read_only_statements(True, None)[0])})"


@dataclass(frozen=True, kw_only=True)
class PromoteCandidate(PlanAction):
    """The candidate leaves replication and becomes writable (never before the source is
    read-only and the candidate applied everything the source had)."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        writable = dialect.set_read_only_statements(False, None)
        return (*self.replica_only(dialect), *(Sql(s) for s in writable))

    def replica_only(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(dialect.stop_replica), Sql(dialect.reset_replica_all))

    def statements(self) -> tuple[str, ...]:
        writable = _NEW.set_read_only_statements(False, None)
        return (
            _NEW.stop_replica,
            _NEW.reset_replica_all,
            *writable,
            _OLD.stop_replica,
            _OLD.reset_replica_all,
        )

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        if wording is not None:
            writable = quoted(wording.set_read_only_statements(False, None)[0])
            implied = " (implies super_read_only = OFF)" if wording.has_super_read_only else ""
            return (
                f"{quoted(wording.stop_replica)} then {quoted(wording.reset_replica_all)} "
                f"then {writable}{implied}"
            )
        return " then ".join(
            (
                _mysql_or_mariadb(_NEW.stop_replica, _OLD.stop_replica),
                _mysql_or_mariadb(_NEW.reset_replica_all, _OLD.reset_replica_all),
                quoted(_NEW.set_read_only_statements(False, None)[0])
                + " (implies super_read_only = OFF)",
            )
        )


@dataclass(frozen=True, kw_only=True)
class RepointReplica(PlanAction):
    """Replicate from the new source with GTID auto-position."""

    source: str
    source_host: str
    source_port: int
    user: str
    was_source: bool = False  # MariaDB: copy the binary log position first

    @property
    def target(self) -> ReplicationSource:
        """What the performer hands the adapter: it sends ``Dialect.change_source`` for it,
        the statement shown here (the password a parameter, shown ``'***'``)."""
        return ReplicationSource(self.source_host, self.source_port, self.user)

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        keep = self.was_source and dialect.flavor is Flavor.MARIADB
        return (
            *self.replica_only(dialect),
            *((Sql(SET_SLAVE_POS_FROM_BINLOG),) if keep else ()),
            change_source(dialect, self.target),
            Sql(dialect.start_replica),
        )

    def replica_only(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql(dialect.stop_replica),)

    def _change(self, new: bool) -> str:
        return self._change_in(_NEW if new else _MARIADB)

    def _change_in(self, d: Dialect) -> str:
        return d.change_source(self.target, None).shown()

    def statements(self) -> tuple[str, ...]:
        old = (SET_SLAVE_POS_FROM_BINLOG,) if self.was_source else ()
        return (
            _NEW.stop_replica,
            self._change(True),
            _NEW.start_replica,
            _OLD.stop_replica,
            *old,
            self._change(False),
            _OLD.start_replica,
        )

    def what(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        if wording is not None:
            copy = self.was_source and wording.flavor is Flavor.MARIADB
            old = f"{quoted(SET_SLAVE_POS_FROM_BINLOG)} then " if copy else ""
            return (
                f"{quoted(wording.stop_replica)} (only if it is a replica) then {old}"
                f"{quoted(self._change_in(wording))} then {quoted(wording.start_replica)}"
            )
        mysql = (
            f"{quoted(_NEW.stop_replica)} (only if it is a replica) then "
            f"{quoted(self._change(True))} then {quoted(_NEW.start_replica)}"
        )
        old = f"{quoted(SET_SLAVE_POS_FROM_BINLOG)} then " if self.was_source else ""
        mariadb = (
            f"{quoted(_OLD.stop_replica)} (only if it is a replica) then {old}"
            f"{quoted(self._change(False))} then {quoted(_OLD.start_replica)}"
        )
        return f"{mysql} ({_MARIADB_WHO}: {mariadb})"


@dataclass(frozen=True, kw_only=True)
class RestoreSourceWritable(PlanAction):
    """Undo a switch that failed before the candidate became writable."""

    def sql(self, dialect: Dialect) -> tuple[Sql, ...]:
        return (Sql("SET GLOBAL read_only = %s", (WRITABLE_BEFORE_SWITCH,)),)

    def statements(self) -> tuple[str, ...]:
        return ("SET GLOBAL read_only = <OFF as before the switch>",)


def kill_thread() -> Sql:
    """``KILL <thread id>``: the id is filled for each session the performer ends."""
    return Sql(kill(0).text, (THREAD_ID,))


def change_source(dialect: Dialect, target: ReplicationSource) -> Sql:
    """The dialect's re-pointing statement, its password a slot shown ``'***'``."""
    shown = dialect.change_source(target, None)
    return Sql(shown.text, (*shown.args[:-1], REPLICATION_PASSWORD))
