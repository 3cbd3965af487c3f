"""The one judge of a node's pending restart: what the server, its option files and its host
say, compared. Pure: ``judge_pending`` takes what detection read (``ServerSettings``,
``HostFacts``, or why either could not be read) and returns a ``PendingReport``; every view
(``status`` today) renders that report, none decides again.

- **config**: the configuration mysqld would start with (option files, then its command line;
  ``options``) against the running globals, values normalised (``values``). A variable that
  cannot change at run time and differs: a restart is pending. A dynamic one that differs:
  drift ("set at run time, differs from the option file"), in its own list.
- **persisted** (MySQL): a value stored by ``SET PERSIST``/``SET PERSIST_ONLY`` that differs
  from the running one, split the same way; a persisted variable's option-file value is not
  compared (mysqld starts with the persisted one).
- **binary**, **library**, **package**: the host's facts (``host``).
- **unknown**: whatever could not be read; never "nothing pending".
"""

from __future__ import annotations

from collections.abc import Callable

from harestart.domain.pending.host import HostFacts
from harestart.domain.pending.model import PendingReport, Reason, ReasonKind, shown, unknown
from harestart.domain.pending.options import Setting, effective_settings
from harestart.domain.pending.settings import RunningVariable, ServerSettings
from harestart.domain.pending.values import VarType, parse_bool, parse_size, same_value
from harestart.domain.topology import version_tuple

Reasons = tuple[list[Reason], list[Reason]]  # (pending restart, drift)


def _pool_rounded(configured: int, running: int, settings: ServerSettings) -> bool:
    """InnoDB rounds its buffer pool up to a multiple of chunk size x instances."""
    chunk = parse_size(settings.value("innodb_buffer_pool_chunk_size") or "") or 1
    instances = parse_size(settings.value("innodb_buffer_pool_instances") or "") or 1
    return configured <= running < configured + max(chunk, 1) * max(instances, 1)


def _raised(configured: int, running: int, settings: ServerSettings) -> bool:
    """mysqld raises open_files_limit to what its connections and tables need."""
    return running >= configured


# Variables mysqld itself sets to another number than configured, and when that is fine.
_SERVER_ADJUSTS: dict[str, Callable[[int, int, ServerSettings], bool]] = {
    "innodb_buffer_pool_size": _pool_rounded,
    "open_files_limit": _raised,
}


def _same(name: str, configured: str, var: RunningVariable, settings: ServerSettings) -> bool:
    if same_value(configured, var.value, var.type, datadir=settings.datadir):
        return True
    adjust = _SERVER_ADJUSTS.get(name)
    left, right = parse_size(configured), parse_size(var.value)
    if adjust is None or left is None or right is None:
        return False
    return adjust(left, right, settings)


def _flag_value(setting: Setting, var: RunningVariable) -> str | None:
    """A bare ``--name`` means ON for a boolean; for anything else it says no value."""
    if setting.value is not None:
        return setting.value
    if var.type is VarType.BOOL or parse_bool(var.value) is not None:
        return "ON"
    return None


def _config(settings: ServerSettings, host: HostFacts) -> Reasons:
    pending: list[Reason] = []
    drift: list[Reason] = []
    persisted = settings.persisted if settings.persisted_loaded else None
    configured = effective_settings(host.options, host.command_line, settings.variables.keys())
    for name, setting in configured.items():
        var = settings.variables.get(name)
        if var is None or (persisted is not None and name in persisted):
            continue
        value = _flag_value(setting, var)
        if value is None or _same(name, value, var, settings):
            continue
        conf, running = shown(name, value), shown(name, var.value)
        if var.read_only:
            text = (
                f"{name}: the {setting.origin} says {conf}, mysqld runs with {running}; "
                "it changes only at a restart"
            )
            pending.append(Reason(ReasonKind.CONFIG, name, text, conf, running))
        else:
            text = (
                f"{name}: set at run time, differs from the {setting.origin}: mysqld runs "
                f"with {running}, the {setting.origin} says {conf}"
            )
            drift.append(Reason(ReasonKind.CONFIG, name, text, conf, running))
    return pending, drift


def _persisted(settings: ServerSettings) -> Reasons:
    pending: list[Reason] = []
    drift: list[Reason] = []
    if settings.persisted is None or not settings.persisted_loaded:
        return pending, drift
    for name, value in settings.persisted.items():
        var = settings.variables.get(name)
        if var is None or _same(name, value, var, settings):
            continue
        conf, running = shown(name, value), shown(name, var.value)
        if var.read_only:
            text = (
                f"{name}: persisted as {conf} (SET PERSIST_ONLY), mysqld runs with {running}; "
                "it changes only at a restart"
            )
            pending.append(Reason(ReasonKind.PERSISTED, name, text, conf, running))
        else:
            text = (
                f"{name}: differs from its persisted value: mysqld runs with {running}, SET "
                f"PERSIST stored {conf} (dynamic: SET GLOBAL applies it, no restart needed)"
            )
            drift.append(Reason(ReasonKind.PERSISTED, name, text, conf, running))
    return pending, drift


def _binary(host: HostFacts) -> list[Reason]:
    if host.exe is None:
        return []
    if host.exe_deleted:
        text = f"the executable mysqld runs, {host.exe}, was deleted or replaced on disk"
        return [Reason(ReasonKind.BINARY, host.exe, text)]
    if host.exe_inode is not None and host.exe_inode != host.exe_disk_inode:
        text = f"{host.exe} on disk is not the file mysqld runs: it was replaced since the start"
        return [Reason(ReasonKind.BINARY, host.exe, text)]
    return []


def _libraries(host: HostFacts) -> list[Reason]:
    return [
        Reason(
            ReasonKind.LIBRARY,
            lib.path,
            f"{lib.path}, mapped by mysqld, was deleted or replaced on disk since it was loaded",
        )
        for lib in host.libraries
        if lib.replaced
    ]


def _package(host: HostFacts, running_version: str) -> list[Reason]:
    """Only the upstream version (x.y.z) is compared: a packaging revision appears in
    ``@@version`` in some builds only, and a replaced binary is the binary check's."""
    if host.package is None or not running_version:
        return []
    name, installed = host.package
    try:
        same = version_tuple(installed.split(":", 1)[-1]) == version_tuple(running_version)
    except ValueError:
        return []
    if same:
        return []
    text = f"the installed package {name} is {installed}, mysqld runs {running_version}"
    return [Reason(ReasonKind.PACKAGE, name, text, installed, running_version)]


def _host_unknowns(host: HostFacts) -> list[Reason]:
    if not host.user:  # the script's first line is missing: it did not run as written
        return [unknown("host", "the detection command printed nothing harestart understands")]
    who = host.user
    out: list[Reason] = []
    if host.pid_error:
        out.append(unknown("mysqld", f"cannot find mysqld on the host: {host.pid_error}"))
    hint = " (harestart needs root there: ssh sudo)" if host.user != "root" else ""
    for what, error in (("exe", host.exe_error), ("maps", host.maps_error)):
        if error:
            path = f"/proc/{host.pid}/{what}"
            out.append(unknown(path, f"cannot read {path} as {who}: {error}{hint}"))
    if host.options_error:
        out.append(unknown("option files", f"cannot read the option files: {host.options_error}"))
    out += [
        unknown("option files", f"my_print_defaults: {line.strip()}")
        for line in host.options
        if line.strip() and not line.startswith("--")
    ]
    out += [
        unknown(path, f"option file {path} is not readable by {who}") for path in host.unreadable
    ]
    return out


def judge_pending(
    settings: ServerSettings | None,
    host: HostFacts | None,
    *,
    running_version: str = "",
    settings_error: str | None = None,
    host_error: str | None = None,
) -> PendingReport:
    """The node's report from what detection read; ``*_error`` says why a part is missing
    (the option files come from the host: without it, no configuration is compared)."""
    pending: list[Reason] = []
    drift: list[Reason] = []
    if host is None:
        pending.append(unknown("host", f"cannot check the host: {host_error or 'not asked'}"))
    else:
        pending += _host_unknowns(host) + _binary(host) + _libraries(host)
        pending += _package(host, running_version)
    if settings is None:
        why = settings_error or "not asked"
        pending.append(unknown("variables", f"cannot read the server's variables: {why}"))
        return PendingReport(tuple(pending), tuple(drift))
    if not settings.variables:
        pending.append(unknown("variables", "the server listed no global variables"))
    parts = [_persisted(settings)]
    if host is not None:
        parts.insert(0, _config(settings, host))
    for more_pending, more_drift in parts:
        pending += more_pending
        drift += more_drift
    return PendingReport(tuple(pending), tuple(drift))
