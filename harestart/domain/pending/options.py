"""The configuration mysqld would start with: ``my_print_defaults`` of the server's groups (the
option files, in the order mysqld reads them) followed by the running mysqld's own command
line, the last setting of a name winning as in mysqld. Pure.

Options are matched to the running server's global variables by name (lower case, ``-`` =
``_``). What is done with options that are not simply a variable, explicitly:

- ``loose-NAME``: NAME (mysqld's "ignore it if unknown" prefix).
- ``skip-NAME`` / ``disable-NAME`` (NAME = OFF) and ``enable-NAME`` (NAME = ON), unless the
  whole name is a variable itself (``skip_name_resolve``, ``skip_networking``...).
- ``log-bin[=BASE]``: the variable ``log_bin`` is ON and, with a base name, ``log_bin_basename``
  is that path (under the datadir when relative, without an extension).
- ``maximum-NAME`` (a session variable's ceiling) is never compared.
- An old name mysqld still takes for a renamed variable (``log_slave_updates`` for
  ``log_replica_updates``, ``master_*`` for ``source_*``, the legacy ``key_buffer``...) is read
  as the variable the server has.
- Any other option that names no global variable of the running server (``user``,
  ``plugin-load-add``, ``daemonize``, ``defaults-file``, a plugin's option while the plugin is
  not loaded) is not compared: it has no running value to differ from. mysqld's unique-prefix
  abbreviations (MariaDB) are not resolved: an abbreviation matches no variable and is skipped.
- Short options of the command line (``-u mysql``) are not read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from harestart.domain.pending.values import option_name, parse_bool

FILE = "option file"
COMMAND_LINE = "command line"

# Names mysqld took before a rename, and legacy spellings it still accepts (option name ->
# variable name); used only when the option's own name is not a variable of the server.
_LEGACY = {
    "key_buffer": "key_buffer_size",
    "sort_buffer": "sort_buffer_size",
    "read_buffer": "read_buffer_size",
    "record_buffer": "read_buffer_size",
    "myisam_sort_buffer": "myisam_sort_buffer_size",
    "table_cache": "table_open_cache",
}
# Renames of MySQL 8.0.26 and later (both directions: a MariaDB or an older MySQL has the old
# names, a newer MySQL only the new ones).
_RENAMES = (("slave", "replica"), ("master", "source"))


@dataclass(frozen=True)
class Setting:
    """One variable's configured value: the text as written (None for a bare ``--flag``) and
    where it came from (``option file`` or ``command line``)."""

    variable: str
    value: str | None
    origin: str


def _split(arg: str) -> tuple[str, str | None] | None:
    """``--name=value`` -> (name, value); ``--name`` -> (name, None); other words -> None."""
    if not arg.startswith("--") or len(arg) < 3:
        return None
    name, eq, value = arg[2:].partition("=")
    return option_name(name), (value if eq else None)


def _variable(name: str, variables: Collection[str]) -> str | None:
    if name in variables:
        return name
    legacy = _LEGACY.get(name)
    if legacy in variables:
        return legacy
    for old, new in _RENAMES:
        for a, b in ((old, new), (new, old)):
            if a in name and name.replace(a, b) in variables:
                return name.replace(a, b)
    return None


def _resolve(
    name: str, value: str | None, origin: str, variables: Collection[str]
) -> list[Setting]:
    """What one option sets, as variables of this server (none when it names no variable)."""
    name = name.removeprefix("loose_")
    if name.startswith("maximum_"):
        return []
    direct = _variable(name, variables)
    if direct == "log_bin" or (direct is None and name == "log_bin"):
        return _log_bin(value, origin)
    if direct is not None:
        return [Setting(direct, value, origin)]
    for prefix, on in (("skip_", False), ("disable_", False), ("enable_", True)):
        if name.startswith(prefix):
            target = _variable(name.removeprefix(prefix), variables)
            if target is None:
                return []
            # --skip-x=0 leaves x on; --enable-x=0 turns it off.
            state = on if value is None or parse_bool(value) is not False else not on
            return [Setting(target, "ON" if state else "OFF", origin)]
    return []


def _log_bin(value: str | None, origin: str) -> list[Setting]:
    """``log-bin`` names the binary log's base name, not the ``log_bin`` variable's value."""
    if value is not None and parse_bool(value) is False:
        return [Setting("log_bin", "OFF", origin)]
    out = [Setting("log_bin", "ON", origin)]
    if value and parse_bool(value) is None:
        base = value.rsplit("/", 1)
        stem = base[-1].split(".", 1)[0]  # mysqld drops an extension from the base name
        path = f"{base[0]}/{stem}" if len(base) == 2 else stem
        out.append(Setting("log_bin_basename", path if "/" in path else f"./{path}", origin))
    return out


def effective_settings(
    option_lines: Iterable[str],
    command_line: Iterable[str],
    variables: Collection[str],
) -> dict[str, Setting]:
    """Each variable the configuration sets, with its last value: ``option_lines`` as
    ``my_print_defaults`` prints them, then ``command_line`` (mysqld's arguments after its
    own path), both matched against the server's ``variables`` (lower-case names)."""
    out: dict[str, Setting] = {}
    for origin, args in ((FILE, option_lines), (COMMAND_LINE, command_line)):
        for arg in args:
            split = _split(arg.strip())
            if split is None:
                continue
            for setting in _resolve(*split, origin, variables):
                out[setting.variable] = setting
    return out


def configured_read_only(option_lines: Iterable[str]) -> bool | None:
    """Whether mysqld starts read-only by these ``my_print_defaults`` lines (the option model
    above: the last setting wins, ``loose-``/``skip-``/``enable-`` prefixes, ``-`` = ``_``);
    None when neither is set. ``super_read_only`` ON implies ``read_only``."""
    found = effective_settings(option_lines, (), ("read_only", "super_read_only"))

    def on(name: str) -> bool | None:
        setting = found.get(name)
        if setting is None:
            return None
        return True if setting.value is None else parse_bool(setting.value) is True

    if on("super_read_only"):
        return True
    return on("read_only")
