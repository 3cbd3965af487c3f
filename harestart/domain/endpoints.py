"""Resolved, frozen connection targets: what an adapter needs to reach one host.

The inventory resolves defaults -> group -> node overrides into these; adapters take nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harestart.domain.secret import Secret


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    use_agent: bool = False
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    accept_new_host_keys: bool = False  # explicit opt-in; unknown keys are refused otherwise
    sudo: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 300.0
    jump: SshEndpoint | None = None  # bastion to hop through

    def describe(self) -> str:
        via = f" via {self.jump.describe()}" if self.jump else ""
        return f"{self.user}@{self.host}:{self.port}{via}"


@dataclass(frozen=True)
class MysqlEndpoint:
    host: str
    user: str
    port: int = 3306
    password: Secret | None = field(default=None, repr=True)  # Secret renders as ***
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # When set, mysqld is reached through an SSH tunnel over this host (host/port above are
    # then as seen from that host).
    tunnel: SshEndpoint | None = None

    def describe(self) -> str:
        via = f" via {self.tunnel.describe()}" if self.tunnel else ""
        return f"{self.user}@{self.host}:{self.port}{via}"
