"""One exception root, a few subsystem subclasses, and the documented exit codes.

Adapters translate library exceptions (paramiko, pymysql, socket) into these at the boundary,
with the host and the action that failed. Only ``harestart.cli`` maps them to exit codes.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes; the docs' table (docs/reference/exit-codes.md) is generated from
    ``EXIT_CODE_MEANINGS`` below."""

    OK = 0
    RUN_FAILED = 1  # failed during the run (a gate failed, a node did not come back)
    USAGE = 2  # usage or inventory error
    PREFLIGHT_REFUSED = 3  # preflight refused; nothing was changed
    LOCKED = 4  # another run holds the group
    INTERRUPTED = 130  # SIGINT / SIGTERM


# What each exit code tells the caller (Markdown; one entry per code, checked by a unit test).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done: every group `ACTIVE` again (`status`: healthy)",
    ExitCode.RUN_FAILED: (
        "failed during the run (a gate failed, a node did not come back, the coordination "
        "lease was lost); `status`: not healthy"
    ),
    ExitCode.USAGE: (
        "usage or inventory error (every problem listed with file:line), an unfinished run "
        "(here, or another bastion's in the coordination service), nothing to resume, a "
        "journal that is malformed or another group's or inventory's, a state directory that "
        "cannot be trusted, no `--yes` without a terminal"
    ),
    ExitCode.PREFLIGHT_REFUSED: (
        "preflight refused: reality contradicts the inventory or the group is unsafe, or the "
        "coordination service is misconfigured or does not answer; **nothing was changed**"
    ),
    ExitCode.LOCKED: (
        "another run holds the group (holder shown), or a stale lock needs `--break-lock`"
    ),
    ExitCode.INTERRUPTED: (
        "interrupted (SIGINT/SIGTERM); the journal says where; `harestart resume` continues"
    ),
}


class HarestartError(Exception):
    """Root of every error harestart raises on purpose. ``str()`` is one readable sentence."""

    exit_code: ExitCode = ExitCode.RUN_FAILED


class UsageError(HarestartError):
    exit_code = ExitCode.USAGE


class InventoryError(HarestartError):
    """The inventory file cannot be used. ``problems`` holds every finding, one per line."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{path}: {n} problem{'s' if n != 1 else ''} in the inventory"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in self.problems))


class RemoteError(HarestartError):
    """Something on a host failed: names the host and the action."""

    def __init__(self, host: str, action: str, reason: str) -> None:
        self.host = host
        self.action = action
        self.reason = reason
        super().__init__(f"{host}: {action}: {reason}")


class SshError(RemoteError):
    """SSH connection, authentication, host key or command transport failed."""


class HostKeyError(SshError):
    """The host key is unknown or changed; never accepted silently."""


class CommandFailed(SshError):
    """A remote command ran and exited non-zero."""

    def __init__(self, host: str, action: str, exit_status: int, stderr: str) -> None:
        self.exit_status = exit_status
        self.stderr = stderr
        tail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
        reason = f"exit status {exit_status}" + (": " + " | ".join(tail) if tail else "")
        super().__init__(host, action, reason)


class MysqlError(RemoteError):
    """Connecting to or querying mysqld failed (carries the server's own error text)."""


class MhaError(RemoteError):
    """The MHA manager could not be queried, stopped or started."""


class PreflightRefused(HarestartError):
    """Reality contradicts the inventory or the group is unsafe to touch; nothing changed."""

    exit_code = ExitCode.PREFLIGHT_REFUSED

    def __init__(self, group: str, reasons: list[str]) -> None:
        self.group = group
        self.reasons = list(reasons)
        super().__init__(
            f"group {group}: preflight refused, nothing was changed:\n"
            + "\n".join(f"  - {r}" for r in self.reasons)
        )


class GateFailed(HarestartError):
    """A step's gate did not hold within its deadline."""

    def __init__(self, step: str, host: str | None, reason: str) -> None:
        self.step = step
        self.host = host
        self.reason = reason
        where = f"{host}: " if host else ""
        super().__init__(f"{where}{step}: {reason}")


class StepCrashed(HarestartError):
    """A step met an error harestart does not know (a bug): the step fails like any other, so
    the failure policy runs and the run ends reported; the traceback goes to the log file."""

    def __init__(self, step: str, host: str | None, error: str) -> None:
        self.step, self.host = step, host
        self.reason = (
            f"unexpected error (a harestart bug; its traceback is in the log file): {error}"
        )
        where = f"{host}: " if host else ""
        super().__init__(f"{where}{step}: {self.reason}")


class WaitTimeout(HarestartError):
    """poll_until gave up; ``last`` describes the last observed value."""

    def __init__(self, what: str, timeout: float, last: str) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        super().__init__(f"{what}: not reached within {timeout:g} s (last seen: {last})")


class LockHeld(HarestartError):
    """Another run holds the group (or left a stale lock)."""

    exit_code = ExitCode.LOCKED

    def __init__(self, group: str, message: str) -> None:
        self.group = group
        super().__init__(message)


class Interrupted(HarestartError):
    """SIGINT/SIGTERM asked the run to stop at the next safe point."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"interrupted by {signal_name}")


class JournalError(HarestartError):
    """A journal cannot be read, or does not match the group any more (resume refuses)."""

    exit_code = ExitCode.USAGE


class LeaseLost(HarestartError):
    """The coordination lease on the group's lock was lost mid-run: the run stops at its next
    safe point (between steps) and fails (exit 1); it never carries on without the lock."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"coordination lease lost: {reason}")


class CoordinationUnavailable(PreflightRefused):
    """The coordination service is misconfigured or does not answer at start (exit 3).

    The message names the service's URL without its password."""

    def __init__(self, group: str, reason: str) -> None:
        super().__init__(group, [reason])


class StateDirError(UsageError):
    """The state directory (or a directory or file in it) cannot be trusted: a symbolic link,
    not a directory or regular file, not owned by this user, or writable by others (exit 2)."""

    def __init__(self, root: object, path: object, why: str) -> None:
        self.path = str(path)
        self.why = why
        if root is None:
            where = f"{path}"
        elif str(root) == str(path):
            where = f"state directory {path}"
        else:
            where = f"state directory {root}: {path}"
        super().__init__(
            f"{where} {why}: refused (harestart keeps its state only in directories and "
            "files of its own user that nobody else can write, and follows no symbolic link)"
        )


class JournalMismatch(JournalError):
    """The group's journal was written for another group, or (unfinished) another inventory
    file: nothing is resumed from it (exit 2)."""
