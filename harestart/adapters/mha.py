"""MHA 0.58 driven with its own ``masterha_*`` commands over a ``RemoteShell``.

``masterha_stop``'s exit status is not trusted (it can report failure while the manager exits
a moment later): callers poll ``status()``. The stop and start commands are the plan's
(``StopMha``/``StartMha``: the planner detaches ``masterha_manager``, or it would die with the
SSH session that started it); this adapter runs exactly them and reads their exit status.
"""

from __future__ import annotations

import shlex

from harestart.adapters.protocols import CommandResult, RemoteShell
from harestart.domain.topology import MhaStatus, parse_mha_status
from harestart.errors import MhaError

_NOT_FOUND = frozenset({126, 127})  # shell: not executable / command not found


class MhaManager:
    """``FailoverManager`` for one MHA application on its manager host.

    The status command and log path arrive resolved (the inventory owns their defaults); the
    stop and start commands come with each call, exactly as the plan shows them.
    """

    def __init__(
        self,
        shell: RemoteShell,
        *,
        config_path: str,
        log_path: str,
        status_command: str,
    ) -> None:
        self.shell = shell
        self.config_path = config_path
        self.log_path = log_path
        self.status_command = status_command

    def __repr__(self) -> str:
        return f"MhaManager({self.shell.host!r}, {self.config_path!r})"

    def status(self) -> MhaStatus:
        result = self.shell.run(self.status_command, check=False)
        self._require_command(result, "check MHA status")
        return parse_mha_status(result.exit_status, "\n".join((result.stdout, result.stderr)))

    def stop(self, command: str) -> CommandResult:
        result = self.shell.run(command, check=False)
        self._require_command(result, "stop MHA manager")
        return result

    def start(self, command: str) -> CommandResult:
        result = self.shell.run(command, check=False)
        self._require_command(result, "start MHA manager")
        if result.exit_status != 0:
            raise MhaError(self.shell.host, "start MHA manager", _reason(result))
        return result

    def log_tail(self, lines: int = 20) -> str:
        result = self.shell.run(f"tail -n {int(lines)} {shlex.quote(self.log_path)}", check=False)
        if result.exit_status != 0:
            return f"(cannot read {self.log_path}: {_reason(result)})"
        return result.stdout

    def alive(self, pid: int) -> bool | None:
        # /proc needs no privilege (kill -0 would fail on another user's process)
        result = self.shell.run(f"test -d /proc/{int(pid)}", check=False)
        return {0: True, 1: False}.get(result.exit_status)

    def _require_command(self, result: CommandResult, action: str) -> None:
        if result.exit_status in _NOT_FOUND:
            raise MhaError(
                self.shell.host, action, f"cannot run `{result.command}`: {_reason(result)}"
            )


def _reason(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).strip()
    tail = " | ".join(text.splitlines()[-3:])
    return f"exit status {result.exit_status}" + (f": {tail}" if tail else "")


__all__ = ["MhaManager"]
