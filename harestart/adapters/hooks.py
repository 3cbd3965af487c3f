"""Hooks on the bastion: the one place harestart runs a local command (``HookRunner``).

``/bin/sh -c COMMAND`` in the inventory file's directory, stdin from /dev/null, stdout and
stderr together into a temporary file (a pipe would block a chatty hook, and a background
child holding it open would hang the read), in a session of its own: a terminal's Ctrl-C is
harestart's to handle (the hook finishes like any action in flight), and on timeout the whole
process group is killed (SIGKILL), children included. Only the end of the output is kept.
The environment is exactly the one given (the engine builds it from an allow-list): nothing of
harestart's own is added here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from typing import IO

from harestart.domain.hooks import OUTPUT_TAIL_BYTES, HookOutcome
from harestart.errors import RemoteError

SHELL = "/bin/sh"


class SubprocessHookRunner:
    """``HookRunner`` through ``subprocess`` on this machine."""

    def __init__(self, tail_bytes: int = OUTPUT_TAIL_BYTES) -> None:
        self.tail_bytes = tail_bytes

    def run(self, command: str, *, cwd: str, env: Mapping[str, str], timeout: float) -> HookOutcome:
        with tempfile.TemporaryFile(prefix="harestart-hook-") as out:
            t0 = time.monotonic()
            try:
                proc = subprocess.Popen(
                    [SHELL, "-c", command],
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise RemoteError("bastion", f"run hook `{command}` in {cwd}", str(exc)) from exc
            exit_status = _wait(proc, timeout)
            duration = time.monotonic() - t0
            return HookOutcome(
                command=command,
                exit_status=exit_status,
                duration_s=duration,
                output=_tail(out, self.tail_bytes),
                timeout=timeout,
            )


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit status, or None after killing the process group at the deadline. Whatever
    interrupts the wait (a second Ctrl-C) also kills the group: nothing is left behind."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:
        _kill_group(proc)
        raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone, children included
        os.killpg(proc.pid, signal.SIGKILL)  # the session leader's pid is its group's id
    proc.wait()


def _tail(f: IO[bytes], limit: int) -> str:
    """The last ``limit`` bytes written (a character cut in two is replaced, not fatal)."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - limit))
    return f.read().decode("utf-8", errors="replace")
