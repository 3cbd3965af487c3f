"""Detecting whether a node needs a restart (#23), read-only, with few round trips: the
server's variables (one statement per source of truth, ``MysqlReader.server_settings``) and one
command on its host over the SSH session the observation opens anyway (it is that
observation's SSH check). ``harestart.domain.pending`` builds the command, parses its output
and judges; nothing here decides.
"""

from __future__ import annotations

from harestart.adapters.protocols import MysqlReader, RemoteShell
from harestart.domain.group import Node
from harestart.domain.pending import (
    HostFacts,
    PendingReport,
    ServerSettings,
    host_script,
    judge_pending,
    option_groups,
    parse_host_facts,
)
from harestart.domain.topology import ServerInfo
from harestart.errors import HarestartError

# Seconds the host command may take beyond the SSH check's own limit (it forks ~20 small
# processes, dpkg among them: well under a second on a quiet host).
HOST_COMMAND_S = 15.0


def _reason(exc: HarestartError) -> str:
    return getattr(exc, "reason", None) or str(exc)


def _settings(probe: MysqlReader) -> tuple[ServerSettings | None, str | None]:
    try:
        return probe.server_settings(), None
    except HarestartError as exc:
        return None, _reason(exc)


def _host(
    node: Node, shell: RemoteShell, command: str
) -> tuple[HostFacts | None, str | None, str | None]:
    """(facts, why they are missing, the SSH error when the host could not be reached)."""
    try:
        result = shell.run(
            command, timeout=node.ssh.connect_timeout * 2 + HOST_COMMAND_S, check=False
        )
    except HarestartError as exc:
        return None, _reason(exc), _reason(exc)
    if not result.ok:
        said = (result.stderr or result.stdout).strip().splitlines()
        why = f"the detection command exited {result.exit_status}" + (
            f": {said[0]}" if said else ""
        )
        return None, why, None
    return parse_host_facts(result.stdout), None, None


def detect_pending(
    node: Node,
    shell: RemoteShell,
    probe: MysqlReader,
    info: ServerInfo,
    *,
    unreachable: str | None = None,
) -> tuple[PendingReport, str | None]:
    """The node's report, and the SSH error if its host could not be reached (None when it
    answered): the one host command stands in for the observation's SSH check.
    ``unreachable``: the host is known not to answer (the observation's SSH session could not
    open): no command is tried, the host's part is unknown for that reason."""
    settings, settings_error = _settings(probe)
    host: HostFacts | None = None
    host_error: str | None = unreachable
    ssh_error: str | None = unreachable
    if unreachable is None:
        groups = option_groups(info.flavor, info.version_tuple)
        command = host_script(settings.pid_file if settings else "", groups)
        host, host_error, ssh_error = _host(node, shell, command)
    report = judge_pending(
        settings,
        host,
        running_version=info.version,
        settings_error=settings_error,
        host_error=host_error,
    )
    return report, ssh_error
