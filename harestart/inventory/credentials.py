"""Credentials, read only when a connection needs them (``plan`` never does)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.group import Group, Node, PasswordSource
from harestart.domain.secret import Secret
from harestart.domain.switch import SourceStrategy
from harestart.errors import UsageError
from harestart.inventory.defaults import MYSQL_READ_TIMEOUT


def resolve_password(source: PasswordSource, where: str) -> Secret | None:
    """The password from its environment variable, file or the inventory itself."""
    if source.env:
        value = os.environ.get(source.env)
        if value is None:
            raise UsageError(
                f"{where}: the MySQL password variable {source.env} is not set in the environment"
            )
        return Secret(value)
    if source.file:
        try:
            return Secret(Path(source.file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise UsageError(
                f"{where}: cannot read the MySQL password file {source.file}: {exc.strerror}"
            ) from None
    return source.inline


def mysql_endpoint(node: Node) -> MysqlEndpoint:
    """The node's MySQL endpoint with its password resolved (UsageError if unavailable)."""
    if node.mysql is None:
        raise UsageError(f"{node.name}: has no MySQL settings")
    m = node.mysql
    tunnel = node.ssh.jump if m.tunnel else None
    if m.tunnel and tunnel is None:
        raise UsageError(f"{node.name}: mysql.tunnel is set but no ssh.jump host is configured")
    return MysqlEndpoint(
        host=m.host,
        port=m.port,
        user=m.user,
        password=resolve_password(m.password, node.name),
        connect_timeout=m.connect_timeout,
        read_timeout=MYSQL_READ_TIMEOUT,
        tunnel=tunnel,
    )


def require_replication_passwords(groups: Iterable[Group], chosen: SourceStrategy | None) -> None:
    """The replication account's password available now for each group that switches over
    (``chosen`` on the command line, else its own strategy): UsageError (exit 2) otherwise,
    before anything starts. That the account is in the inventory is ``needs``' to check."""
    for g in groups:
        strategy = chosen or SourceStrategy(g.source_strategy)
        if strategy is SourceStrategy.SWITCHOVER and g.replication is not None:
            resolve_password(g.replication.password, f"group {g.id} replication")
