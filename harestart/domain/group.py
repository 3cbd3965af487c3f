"""A resolved HA group: its source, replicas, MHA manager and health limits (frozen data).

inventory/resolve.py builds these from an inventory file (defaults -> group -> node, once, with
the values of inventory/defaults.py at the bottom); everything after that reads these types only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from harestart.domain.endpoints import SshEndpoint
from harestart.domain.hooks import NO_HOOKS, Hooks
from harestart.domain.secret import Secret


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
    start_command: str  # masterha_manager itself; the adapter starts it detached
    status_command: str
    check_repl_command: str


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

    @property
    def db_nodes(self) -> tuple[Node, ...]:
        return (self.source, *self.replicas)

    def node(self, name: str) -> Node:
        for n in (*self.db_nodes, self.mha.manager):
            if n.name == name:
                return n
        raise KeyError(name)
