"""A resolved HA group: its source, replicas, MHA manager and health limits (frozen data).

inventory/resolve.py builds these from an inventory file (defaults -> group -> node, once, with
the values of inventory/defaults.py at the bottom); everything after that reads these types only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from harestart.domain.endpoints import SshEndpoint
from harestart.domain.flavor import Flavor
from harestart.domain.secret import Secret

# --- hooks: what the inventory names at each point (harestart.domain.hooks plans them) ---


class HookPoint(enum.StrEnum):
    """Where in a run a hook runs (the inventory's key under ``hooks:``)."""

    BEFORE_NODE_RESTART = "before_node_restart"  # before the node's restart command
    AFTER_NODE_RESTART = "after_node_restart"  # once the node is back and its checks passed
    BEFORE_SWITCH = "before_switch"  # before the source role moves (switchover)
    AFTER_SWITCH = "after_switch"  # once it moved


Strategy = Literal["restart", "switchover"]
Role = Literal["source", "replica"]
# How a hook runs (``hooks.mode``): ``event``, a process per event (its environment carries the
# event); ``persistent``, one process per run that gets each event as a JSON line on its stdin
# and answers with one (harestart.domain.hook_protocol).
HookMode = Literal["event", "persistent"]


@dataclass(frozen=True)
class HookSpec:
    """One hook: a shell command line, its timeout in seconds, the directory it runs in (the
    inventory file's), and its mode. In the persistent mode ``timeout`` is how long an answer
    to one event may take, and the hooks naming the same command in the same directory share
    one program."""

    command: str
    timeout: float
    cwd: str
    mode: HookMode = "event"

    @property
    def persistent(self) -> bool:
        return self.mode == "persistent"

    @property
    def program(self) -> tuple[str, str]:
        """What identifies a persistent program within a run: its command and directory."""
        return (self.command, self.cwd)


@dataclass(frozen=True)
class Hooks:
    """A group's hooks, one per point at most (the group's own replaces the default's), and
    the names of harestart's environment they get beyond the allow-list (``env_passthrough``)."""

    before_node_restart: HookSpec | None = None
    after_node_restart: HookSpec | None = None
    before_switch: HookSpec | None = None
    after_switch: HookSpec | None = None
    env_passthrough: tuple[str, ...] = ()

    def at(self, point: HookPoint) -> HookSpec | None:
        spec: HookSpec | None = getattr(self, point.value)
        return spec

    def points_of(self, program: tuple[str, str]) -> tuple[HookPoint, ...]:
        """The points whose persistent hook is ``program`` (what its hello announces)."""
        return tuple(
            p
            for p in HookPoint
            if (spec := self.at(p)) is not None and spec.persistent and spec.program == program
        )


NO_HOOKS = Hooks()


@dataclass(frozen=True)
class PasswordSource:
    """Where a MySQL password comes from; resolved only when a connection needs it."""

    env: str | None = None
    file: str | None = None
    inline: Secret | None = None

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"file {self.file}"
        if self.inline is not None:
            return "inline in the inventory"
        return "none"


@dataclass(frozen=True)
class Health:
    max_lag: float
    restart_timeout: float
    catchup_timeout: float
    failover_timeout: float
    # With --replica-parallelism: replicas that must stay up while a batch restarts.
    min_healthy_replicas: int


@dataclass(frozen=True)
class MysqlTarget:
    host: str
    port: int
    user: str
    password: PasswordSource
    connect_timeout: float
    tunnel: bool


@dataclass(frozen=True)
class Node:
    name: str
    role: Literal["source", "replica", "manager"]
    ssh: SshEndpoint
    mysql: MysqlTarget | None
    restart_command: str | None
    # The address other servers replicate from (switchover re-points replicas to it); None:
    # the node's MySQL host.
    replication_host: str | None = None
    replication_port: int | None = None  # None: the node's MySQL port


@dataclass(frozen=True)
class Mha:
    manager: Node
    config: str
    log: str
    stop_command: str
    start_command: str  # masterha_manager itself; the plan starts it detached (start_mha)
    status_command: str


@dataclass(frozen=True)
class CoordinationSettings:
    """Where the group's lock lives: ``defaults.coordination`` of the inventory.

    ``url`` never holds a password (the inventory refuses one): ``password_env`` names the
    environment variable the backend reads it from when it connects. ``lease``: seconds a
    holder that stopped heartbeating keeps the lock (a dead holder's lock expires by itself).
    """

    url: str
    lease: float
    password_env: str | None = None

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower() if "://" in self.url else ""


@dataclass(frozen=True)
class Replication:
    """The account replicas connect with (switchover re-points them): ``replication:``."""

    user: str
    password: PasswordSource


@dataclass(frozen=True)
class Group:
    id: str
    account: str
    name: str
    source: Node
    replicas: tuple[Node, ...]
    mha: Mha
    health: Health
    # None: the local lock (an flock in the state directory of the machine running harestart).
    coordination: CoordinationSettings | None = None
    hooks: Hooks = NO_HOOKS  # commands run on the bastion at named points of a run
    # Switchover (see harestart.domain.switch): the inventory's default strategy, the replica
    # to promote, and the replication account re-pointed replicas use.
    source_strategy: str = "restart"
    candidate: str | None = None
    replication: Replication | None = None
    # The inventory's `flavor:` (None: not said): only the words `plan` shows without --probe.
    flavor: Flavor | None = None

    @property
    def db_nodes(self) -> tuple[Node, ...]:
        return (self.source, *self.replicas)

    def node(self, name: str) -> Node:
        for n in (*self.db_nodes, self.mha.manager):
            if n.name == name:
                return n
        raise KeyError(name)
