"""Actions: every command and statement a run may send, as typed plan data. Pure.

The plan lists them (``harestart plan`` prints each with its exact text); the engine carries
them out through the adapters and never sends anything the plan does not show. An action may
be conditional (``when``, in words: decided at run time from what the run sees) and may be
proven by gates right after it (``then``).

SQL differs by server: the plan is built without asking the servers, so each statement is
shown in every form the dialects (``harestart.domain.dialect``) send, the one MySQL 8.0.22+
uses first. Text between ``<`` and ``>`` is filled in at run time (a value read before, a
thread id).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from harestart.domain.dialect import dialect_for
from harestart.domain.gates import Gate

_NEW = dialect_for("8.4.0")  # REPLICA words, super_read_only
_OLD = dialect_for("10.11.0-MariaDB")  # SLAVE words (also MySQL before 8.0.22)
_OLD_WHO = "MariaDB, MySQL < 8.0.22"


@functools.cache
def _kind(class_name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")


def quoted(statement: str) -> str:
    return f"`{statement}`"


@dataclass(frozen=True, kw_only=True)
class PlanAction:
    """One thing a run does to one host."""

    host: str
    when: str = ""  # the condition, in words ("" = always)
    then: tuple[Gate, ...] = ()  # gates that prove it, evaluated right after it

    @property
    def kind(self) -> str:
        """``RestartMysqld`` -> ``restart_mysqld`` (the JSON's ``kind``)."""
        return _kind(type(self).__name__)

    def statements(self) -> tuple[str, ...]:
        """Every exact form of what is sent (``<...>``: filled in at run time)."""
        raise NotImplementedError  # pragma: no cover - every subclass overrides

    def what(self) -> str:
        """The statements in words, each quoted."""
        return " ; ".join(quoted(s) for s in self.statements())

    def describe(self) -> str:
        text = f"on {self.host}: {self.what()}"
        return f"{text} (only if {self.when})" if self.when else text

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "host": self.host, "do": self.describe()}
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

    def what(self) -> str:
        return f"run {quoted(self.command)}"


@dataclass(frozen=True, kw_only=True)
class RestartMysqld(RunCommand):
    """The inventory's restart command, wrapped so it finishes even if SSH drops."""

    inventory_command: str

    def what(self) -> str:
        return (
            f"run {quoted(self.inventory_command)} (kept running if the SSH session drops) "
            f"as {quoted(self.command)}"
        )


@dataclass(frozen=True, kw_only=True)
class StopMha(RunCommand):
    pass


@dataclass(frozen=True, kw_only=True)
class StartMha(RunCommand):
    """The manager command, detached so it outlives the SSH session that starts it."""

    inventory_command: str

    def what(self) -> str:
        return f"start {quoted(self.inventory_command)} detached as {quoted(self.command)}"


# --- SQL -------------------------------------------------------------------------------------


def _forms(new: str, old: str) -> str:
    return quoted(new) if new == old else f"{quoted(new)} ({_OLD_WHO}: {quoted(old)})"


_STOP_IO = (_NEW.stop_io_thread, _OLD.stop_io_thread)
_START_IO = (_NEW.start_io_thread, _OLD.start_io_thread)
_STOP_IO_TEXT = _forms(*_STOP_IO)
_START_IO_TEXT = _forms(*_START_IO)


@dataclass(frozen=True, kw_only=True)
class StopIoThread(PlanAction):
    def statements(self) -> tuple[str, ...]:
        return _STOP_IO

    def what(self) -> str:
        return _STOP_IO_TEXT


@dataclass(frozen=True, kw_only=True)
class StartIoThread(PlanAction):
    def statements(self) -> tuple[str, ...]:
        return _START_IO

    def what(self) -> str:
        return _START_IO_TEXT


@dataclass(frozen=True, kw_only=True)
class RestartIoThread(PlanAction):
    """Reconnect now instead of after ``Connect_Retry`` (60 s by default)."""

    def statements(self) -> tuple[str, ...]:
        return (*_STOP_IO, *_START_IO)

    def what(self) -> str:
        return f"{_STOP_IO_TEXT} then {_START_IO_TEXT}"


@dataclass(frozen=True, kw_only=True)
class KillBinlogDumps(PlanAction):
    """End the replication senders still listed once the replicas stopped receiving (an idle
    sender notices its replica left only at its next heartbeat)."""

    def statements(self) -> tuple[str, ...]:
        return ("KILL <thread id>",)

    def what(self) -> str:
        return "`KILL <thread id>` for each `Binlog Dump` thread listed by `SHOW PROCESSLIST`"


@dataclass(frozen=True, kw_only=True)
class SetGlobal(PlanAction):
    name: str
    value: float

    def statements(self) -> tuple[str, ...]:
        return (f"SET GLOBAL {self.name} = {self.value:g}",)


@dataclass(frozen=True, kw_only=True)
class RestoreGlobal(PlanAction):
    """Put back a global variable an earlier ``SetGlobal`` changed."""

    name: str

    def statements(self) -> tuple[str, ...]:
        return (f"SET GLOBAL {self.name} = <its value before>",)


@dataclass(frozen=True, kw_only=True)
class RestoreReadOnly(PlanAction):
    """Leave read_only (and super_read_only) exactly as noted before the restart."""

    def statements(self) -> tuple[str, ...]:
        before = "<ON|OFF as before>"
        return tuple(
            s.replace("= ON", f"= {before}") for s in _NEW.set_read_only_statements(True, True)
        )

    def what(self) -> str:
        first, second = (quoted(s) for s in self.statements())
        return f"{first} then, where the server has it, {second}"
