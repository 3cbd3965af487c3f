"""Shapes of remote commands that must behave well when harestart's SSH session dies."""

from __future__ import annotations

import functools
import posixpath
import re
import shlex

STARTED = "harestart: started pid"
_STARTED_RE = re.compile(rf"^{STARTED} (\d+)$", re.MULTILINE)


def surviving_disconnect(command: str) -> str:
    """Run ``command`` so that it finishes even if the SSH session that started it dies.

    Without a terminal, sshd sends no SIGHUP when a session drops, but a restart script still
    dies of SIGPIPE at its next write to the closed channel (Debian's init scripts print
    progress dots), leaving mysqld stopped and not started again. Here the command writes to a
    temporary file with stdin from /dev/null; the file is copied to stderr once it finished,
    and the exit status is kept. ``command`` is inventory-validated plain words.
    """
    return (
        "out=$(mktemp) || exit 125; "
        f'{{ {command} ; }} >"$out" 2>&1 </dev/null; rc=$?; '
        'cat "$out" >&2; rm -f "$out"; exit $rc'
    )


@functools.lru_cache(maxsize=1024)  # a fleet's groups mostly share one manager command
def detached(command: str, log_path: str) -> str:
    """Start ``command`` (a long-lived daemon such as ``masterha_manager``) so that it outlives
    the SSH session that started it: its own session (setsid), no SIGHUP (nohup), stdin from
    /dev/null, its output appended to ``log_path`` (whose directory is created first). It
    prints the started process's id (``started_pid`` reads it): setsid and nohup exec, so it is
    the daemon's own while it lives."""
    log = shlex.quote(log_path)
    folder = shlex.quote(posixpath.dirname(log_path) or ".")
    return (
        f'mkdir -p {folder}; setsid nohup {command} < /dev/null > {log} 2>&1 & echo "{STARTED} $!"'
    )


def started_pid(output: str) -> int | None:
    """The process id a ``detached`` command printed; None when it printed none."""
    found = _STARTED_RE.search(output)
    return int(found[1]) if found else None
