"""One run per group: a lock file per HA group, visible (who, where, since when).

The lock is an ``flock`` on ``<state>/locks/<account>+<group>.lock`` (``engine.state.names``) held
for the whole run, plus the holder's details written inside. The kernel drops an ``flock``
when its process dies (even on SIGKILL), so a lock file whose ``flock`` can be taken belongs to
a dead process: that is a *stale* lock, reported and broken only when the operator asks
(``--break-lock``).

The file is opened through the checked ``locks`` directory without following a symbolic link
(``engine.state.private``): a link planted there is refused (exit 2), its target never truncated.
A lock file of an earlier harestart (``<account>-<group>.lock``) is not looked at: upgrade when
no run is running.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import getpass
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from harestart.engine.state.names import state_name
from harestart.engine.state.private import created_subdir, state_subdir
from harestart.errors import LockHeld

HOLDER_MAX = 4096  # bytes of a lock file read: a holder's JSON is ~200


@dataclass(frozen=True)
class Holder:
    pid: int
    user: str
    host: str
    since: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} of {self.user}@{self.host} since {self.since} ({self.command})"

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder a lock file names; None when empty or not a holder (parsed with a bound
        on nesting: a file of 4,096 ``[`` is no holder, not a crash)."""
        try:
            return _HOLDER.validate_json(data)
        except ValidationError:
            return None


_HOLDER = TypeAdapter(Holder)


def lock_path(state_dir: Path, account: str, group: str) -> Path:
    return state_dir / "locks" / state_name(account, group, ".lock")


class GroupLock:
    """``with GroupLock(...)``: hold the group's lock or raise LockHeld (exit 4)."""

    def __init__(
        self, state_dir: Path, account: str, group: str, *, command: str, break_stale: bool = False
    ) -> None:
        self.path = lock_path(state_dir, account, group)
        self.group = group
        self.command = command
        self.break_stale = break_stale
        self._fd: int | None = None

    def acquire(self) -> GroupLock:
        with created_subdir(self.path.parent.parent, self.path.parent.name) as locks:
            fd = locks.open(self.path.name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(os.pread(fd, HOLDER_MAX, 0))
            os.close(fd)
            raise held(self.group, holder, self.path) from None
        previous = Holder.parse(os.pread(fd, HOLDER_MAX, 0))
        if previous is not None and not self.break_stale:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise stale(self.group, previous, self.path)
        me = Holder(
            pid=os.getpid(),
            user=_user(),
            host=_host(),
            since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            command=self.command,
        )
        os.ftruncate(fd, 0)
        # Not fsynced: the record names the holder for `status` and outlives a killed process
        # in the page cache; after a power loss the journal, fsynced before the run's first
        # action, is what refuses a new run (and points to resume), not this record.
        os.pwrite(fd, json.dumps(me.__dict__).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Empty the file before unlocking: an empty lock file is a released one, not a stale one.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> GroupLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def held(group: str, holder: Holder | None, path: Path) -> LockHeld:
    who = holder.describe() if holder else "an unknown process"
    return LockHeld(group, f"another harestart run holds group {group}: {who}; lock file {path}")


def stale(group: str, holder: Holder, path: Path) -> LockHeld:
    return LockHeld(
        group,
        f"group {group} has a stale lock of a run that died: {holder.describe()}; check nothing "
        f"is running, then re-run with --break-lock (lock file {path})",
    )


def check_free(state_dir: Path, account: str, group: str, *, break_stale: bool) -> None:
    """Raise what ``GroupLock.acquire`` would, without taking the lock (for a check up front)."""
    holder, alive = read_holder(state_dir, account, group)
    if holder is not None and (alive or not break_stale):
        path = lock_path(state_dir, account, group)
        raise held(group, holder, path) if alive else stale(group, holder, path)


def read_holder(state_dir: Path, account: str, group: str) -> tuple[Holder | None, bool]:
    """(holder, alive) of a group's lock, for ``status``; (None, False) when free. Raises
    StateDirError when the lock file or its directory cannot be trusted."""
    path = lock_path(state_dir, account, group)
    with state_subdir(state_dir, path.parent.name, create=False) as locks:
        if locks is None:
            return None, False
        try:
            fd = locks.open(path.name, os.O_RDWR)
        except FileNotFoundError:
            return None, False
    try:
        holder = Holder.parse(os.pread(fd, HOLDER_MAX, 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder, True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return holder, False
    finally:
        os.close(fd)


@functools.cache  # the same for the whole process: asked once, not per group
def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@functools.cache
def _host() -> str:
    return socket.gethostname()
