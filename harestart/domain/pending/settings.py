"""What a server says about its global variables: every value, its type and whether it can
change at run time, and (MySQL) the values stored by ``SET PERSIST``. The statements that ask
(one per source of truth) and the parser of their rows; pure.

Which variables cannot change at run time:
- MariaDB says so itself: ``information_schema.SYSTEM_VARIABLES.READ_ONLY``.
- MySQL exposes no such flag (``performance_schema.variables_info`` has the source of a value,
  ``variables_metadata`` its type and scope): harestart keeps the list in
  ``harestart.domain.pending.mysql_static``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from harestart.domain.pending.mysql_static import mysql_read_only
from harestart.domain.pending.values import VarType, option_name, parse_bool, var_type
from harestart.domain.topology import Flavor

# MySQL 8.3 added performance_schema.variables_metadata (each variable's type).
_MYSQL_METADATA = (8, 3, 0)

MARIADB_VARIABLES = (
    "SELECT VARIABLE_NAME AS name, GLOBAL_VALUE AS value, READ_ONLY AS read_only, "
    "VARIABLE_TYPE AS type FROM information_schema.SYSTEM_VARIABLES "
    "WHERE VARIABLE_SCOPE <> 'SESSION ONLY'"
)
MYSQL_VARIABLES = (
    "SELECT g.VARIABLE_NAME AS name, g.VARIABLE_VALUE AS value, m.DATA_TYPE AS type "
    "FROM performance_schema.global_variables g "
    "LEFT JOIN performance_schema.variables_metadata m USING (VARIABLE_NAME)"
)
MYSQL_VARIABLES_BEFORE_8_3 = "SHOW GLOBAL VARIABLES"
MYSQL_PERSISTED = (
    "SELECT VARIABLE_NAME AS name, VARIABLE_VALUE AS value "
    "FROM performance_schema.persisted_variables"
)

Row = Mapping[str, object]


@dataclass(frozen=True)
class RunningVariable:
    name: str
    value: str
    read_only: bool  # cannot change at run time: a different configured value needs a restart
    type: VarType


@dataclass(frozen=True)
class ServerSettings:
    """A server's global variables (by lower-case name) and, on MySQL, its persisted values
    (None on MariaDB, which has none)."""

    flavor: Flavor
    version: tuple[int, int, int]
    variables: Mapping[str, RunningVariable] = field(default_factory=lambda: MappingProxyType({}))
    persisted: Mapping[str, str] | None = None

    def value(self, name: str) -> str | None:
        var = self.variables.get(name)
        return None if var is None else var.value

    @property
    def datadir(self) -> str:
        return self.value("datadir") or ""

    @property
    def pid_file(self) -> str:
        return self.value("pid_file") or ""

    @property
    def persisted_loaded(self) -> bool:
        """MySQL reads the persisted values at start unless ``persisted_globals_load`` is OFF."""
        flag = self.value("persisted_globals_load")
        return self.persisted is not None and (flag is None or parse_bool(flag) is not False)


def settings_statements(flavor: Flavor, version: tuple[int, int, int]) -> tuple[str, ...]:
    """The statements ``parse_settings`` reads, in its order: one per source of truth."""
    if flavor is Flavor.MARIADB:
        return (MARIADB_VARIABLES,)
    variables = MYSQL_VARIABLES if version >= _MYSQL_METADATA else MYSQL_VARIABLES_BEFORE_8_3
    return (variables, MYSQL_PERSISTED)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _cell(row: Row, *names: str) -> object:
    for name in names:
        if name in row:
            return row[name]
    return None


def parse_settings(
    flavor: Flavor, version: tuple[int, int, int], results: Sequence[Sequence[Row]]
) -> ServerSettings:
    """The rows of ``settings_statements`` (same order) as ``ServerSettings``. ``SHOW GLOBAL
    VARIABLES`` rows (``Variable_name``, ``Value``) are read as well."""
    if len(results) != len(settings_statements(flavor, version)):
        raise ValueError(f"expected {len(settings_statements(flavor, version))} results")
    variables: dict[str, RunningVariable] = {}
    for row in results[0]:
        name = option_name(_text(_cell(row, "name", "Variable_name")))
        if not name:
            continue
        value = _text(_cell(row, "value", "Value"))
        if flavor is Flavor.MARIADB:
            read_only = _text(row.get("read_only")).strip().upper() == "YES"
        else:
            read_only = mysql_read_only(name, version)
        variables[name] = RunningVariable(name, value, read_only, var_type(_text(row.get("type"))))
    persisted = None
    if flavor is Flavor.MYSQL:
        persisted = MappingProxyType(
            {
                option_name(_text(row.get("name"))): _text(row.get("value"))
                for row in results[1]
                if _text(row.get("name"))
            }
        )
    return ServerSettings(flavor, version, MappingProxyType(variables), persisted)
