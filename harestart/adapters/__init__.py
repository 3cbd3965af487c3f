"""Adapters to the outside world, behind the small Protocols in ``protocols``.

Importing this package is cheap: paramiko and pymysql load only when ``adapters.ssh`` or
``adapters.mysql`` is imported (by the CLI, to build a ``ParamikoConnector``).
"""

from harestart.adapters.protocols import (
    CommandResult,
    Connector,
    FailoverManager,
    MysqlCommands,
    MysqlReader,
    RemoteShell,
)

__all__ = [
    "CommandResult",
    "Connector",
    "FailoverManager",
    "MysqlCommands",
    "MysqlReader",
    "RemoteShell",
]
