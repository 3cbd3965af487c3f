"""Resolved, frozen connection targets: what an adapter needs to reach one host.

The inventory resolves defaults -> group -> node overrides into these; adapters take nothing else.
No field has a default: every value comes from the inventory's one table of defaults
(``harestart/inventory/defaults.py``) or from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harestart.domain.secret import Secret


@dataclass(frozen=True, kw_only=True)
class SshEndpoint:
    host: str
    port: int
    user: str
    key_file: str | None
    use_agent: bool
    known_hosts: str | None  # None: ~/.ssh/known_hosts
    accept_new_host_keys: bool  # explicit opt-in; unknown keys are refused otherwise
    sudo: bool
    connect_timeout: float
    command_timeout: float
    jump: SshEndpoint | None  # bastion to hop through

    def describe(self) -> str:
        via = f" via {self.jump.describe()}" if self.jump else ""
        return f"{self.user}@{self.host}:{self.port}{via}"


@dataclass(frozen=True, kw_only=True)
class MysqlEndpoint:
    host: str
    port: int
    user: str
    password: Secret | None = field(repr=True)  # Secret renders as ***
    connect_timeout: float
    read_timeout: float
    # When set, mysqld is reached through an SSH tunnel over this host (host/port above are
    # then as seen from that host).
    tunnel: SshEndpoint | None

    def describe(self) -> str:
        via = f" via {self.tunnel.describe()}" if self.tunnel else ""
        return f"{self.user}@{self.host}:{self.port}{via}"
