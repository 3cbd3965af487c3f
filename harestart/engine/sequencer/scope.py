"""What every unit of a run shares: the group, its adapters, the clock, progress, the memory.

One ``RunScope`` per run. Parallel replica steps use it from several threads: the run memory
changes under a lock, and the source's session (shared by those steps) has its own lock.
``sql(host)`` is a server's reader (questions only); ``commands(host)`` sends what an action
gives it. Gate evaluators see this scope only through ``engine.ops.base.Looking``, which has
no way to change anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from harestart.adapters.protocols import (
    Connector,
    FailoverManager,
    HookRunner,
    MysqlCommands,
    MysqlReader,
    RemoteShell,
)
from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.gates import MY_PRINT_DEFAULTS
from harestart.domain.group import Group, Node
from harestart.domain.pending import PendingReport
from harestart.domain.plan.model import Step
from harestart.domain.result import GroupStatus, StepRecord
from harestart.domain.switch import with_source
from harestart.engine.ops.programs import HookPrograms
from harestart.engine.pending import detect_pending
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.memory import RunMemory
from harestart.engine.sequencer.waiting import Clock
from harestart.engine.state.journal import Journal
from harestart.inventory.credentials import mysql_endpoint


class Reporter(Protocol):
    """Where progress goes (a terminal, stderr, nowhere). Never decides anything."""

    def step_started(self, group: str, step: Step) -> None: ...

    def step_finished(self, group: str, record: StepRecord) -> None: ...

    def progress(self, group: str, host: str | None, text: str) -> None: ...


class SilentReporter:
    def step_started(self, group: str, step: Step) -> None:
        pass

    def step_finished(self, group: str, record: StepRecord) -> None:
        pass

    def progress(self, group: str, host: str | None, text: str) -> None:
        pass


@dataclass
class RunNotes:
    """What a run noted about MHA and where the group stands as it goes (not part of the plan;
    ``domain.judge.RunFacts`` is what a lock and a journal say about a group)."""

    mha_was_running: bool = False
    mha_before: str | None = None
    state: GroupStatus = GroupStatus.ACTIVE
    failover_enabled: bool | None = None


@dataclass
class RunScope:
    group: Group
    connector: Connector
    mha: FailoverManager
    clock: Clock
    reporter: Reporter
    interrupts: InterruptFlag
    wall: Callable[[], float] = time.time
    resume: bool = False
    journal: Journal | None = None
    hooks: HookRunner | None = None  # runs the inventory's hooks on the bastion
    facts: RunNotes = field(default_factory=RunNotes)
    memory: RunMemory = field(default_factory=RunMemory)
    persist: Callable[[], None] = lambda: None  # the recorder saves the journal
    source_lock: threading.Lock = field(default_factory=threading.Lock)
    _memory_lock: threading.Lock = field(default_factory=threading.Lock)
    _endpoints: dict[str, MysqlEndpoint] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = structlog.get_logger("harestart.engine.executor").bind(group=self.group.id)
        # The run's persistent hook programs (hooks.mode: persistent); the executor stops them.
        self.programs = HookPrograms(self.group, self.log)

    def node(self, name: str) -> Node:
        return self.group.node(name)

    def shell(self, name: str) -> RemoteShell:
        node = self.node(name)
        return self.connector.shell(node.name, node.ssh)

    def _endpoint(self, name: str) -> MysqlEndpoint:
        endpoint = self._endpoints.get(name)
        if endpoint is None:  # resolve the password once per run, not on every poll
            endpoint = self._endpoints[name] = mysql_endpoint(self.node(name))
        return endpoint

    def sql(self, name: str) -> MysqlReader:
        """The server's reader: questions only."""
        return self.connector.mysql(name, self._endpoint(name))

    def commands(self, name: str) -> MysqlCommands:
        """The server's commands: for performers, which send exactly their action's SQL."""
        return self.connector.commands(name, self._endpoint(name))

    def option_file(self, name: str) -> str:
        """How the node's configuration starts mysqld (``my_print_defaults``; reads only)."""
        return self.shell(name).run(MY_PRINT_DEFAULTS, timeout=30).stdout

    def pending(self, name: str) -> PendingReport:
        """Whether the node needs a restart (#23; reads only: the one detection command and
        the server's variables)."""
        reader = self.sql(name)
        report, _ = detect_pending(self.node(name), self.shell(name), reader, reader.server_info())
        return report

    @property
    def source_name(self) -> str:
        """The group's source now: the inventory's, or the node a switch moved the role to."""
        return self.memory.source or self.group.source.name

    def current_group(self) -> Group:
        """The group as it is now (after a switch: the new source, the old one a replica)."""
        return with_source(self.group, self.source_name)

    def source_position(self) -> str:
        with self.source_lock:
            return self.sql(self.source_name).gtid_position()

    def remember(self, change: Callable[[RunMemory], RunMemory], *, durable: bool = False) -> None:
        """Replace the run memory by ``change(memory)``; ``durable``: journal it at once."""
        with self._memory_lock:
            self.memory = change(self.memory)
        if durable:
            self.persist()

    def progress(self, host: str | None, text: str) -> None:
        self.reporter.progress(self.group.id, host, text)

    def set_state(self, state: GroupStatus) -> None:
        if state is not self.facts.state:
            self.log.info("group.state", state=state.value)
            self.facts.state = state
