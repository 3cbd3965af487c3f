"""Who may restart a group: its lock, and what every machine sees of it.

A run holds its group's lock for its whole life. Where the lock lives is the group's
coordination backend (``defaults.coordination`` in the inventory):

- ``LocalCoordination`` (no ``coordination`` setting): today's ``flock`` in the state directory
  (``engine.lock.GroupLock``); it excludes runs on this machine only, a dead holder leaves a
  stale lock that ``--break-lock`` breaks, and the local journal is the only unfinished mark.
- a shared service (etcd, ZooKeeper, Redis through tooz: ``adapters.coordination``): the lock
  is a lease kept alive by a heartbeat; the holder (host, pid, run id, since, state directory)
  is published next to it so every machine names it; an *unfinished mark* in the service
  (which outlives the lease) tells every other bastion that a run is unfinished here.

The engine sees the ``Coordination`` Protocol (``adapters.protocols``) only. A lost lease is
reported through the ``on_lost`` callback the engine gives ``acquire`` (it stops the run at its
next safe point).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harestart.adapters.protocols import Coordination, HeldLock
from harestart.domain.coordination import HolderInfo, UnfinishedMark
from harestart.domain.group import Group
from harestart.domain.judge import LockView
from harestart.engine.state.lock import GroupLock, check_free, read_holder
from harestart.errors import CoordinationUnavailable

__all__ = [
    "Coordination",
    "CoordinationFactory",
    "HeldLock",
    "HolderInfo",
    "LocalCoordination",
    "UnfinishedMark",
    "current_user",
    "is_here",
    "local_coordination",
    "my_holder",
    "my_mark",
    "opened",
    "this_host",
]


def this_host() -> str:
    return socket.gethostname()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def current_user() -> str:
    """Who this process runs as (a name, else the uid)."""
    return _user()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def state_dir_text(state_dir: Path) -> str:
    """The state directory as other machines are told it (absolute)."""
    return str(state_dir.absolute())


def my_holder(*, command: str, state_dir: Path, run_id: str | None = None) -> HolderInfo:
    """This process as the holder of a lock it takes (for the run ``run_id``, when known)."""
    return HolderInfo(
        host=this_host(),
        pid=os.getpid(),
        user=_user(),
        since=_now(),
        command=command,
        state_dir=state_dir_text(state_dir),
        run_id=run_id,
    )


def my_mark(*, run_id: str, started_at: str, state_dir: Path) -> UnfinishedMark:
    """The unfinished mark of a run of this process, journalled in ``state_dir``."""
    return UnfinishedMark(
        host=this_host(),
        state_dir=state_dir_text(state_dir),
        run_id=run_id,
        started_at=started_at,
        user=_user(),
    )


def is_here(mark: UnfinishedMark, state_dir: Path) -> bool:
    """The mark of a run whose journal is in ``state_dir`` on this machine."""
    return mark.is_at(this_host(), state_dir_text(state_dir))


# Builds the backend of a group's coordination setting; the state directory is the local one's.
CoordinationFactory = Callable[[Group, Path], Coordination]


class _LocalHeld:
    def __init__(self, lock: GroupLock) -> None:
        self._lock = lock

    def publish(self, run_id: str) -> None:
        pass  # the local lock file names pid, user, host, since and command

    def release(self) -> None:
        self._lock.release()


class LocalCoordination:
    """Today's lock: an ``flock`` per group in the state directory; no shared marks."""

    backend = "local"
    stale_locks = True

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def acquire(
        self,
        group: Group,
        holder: HolderInfo,
        *,
        break_stale: bool,
        on_lost: Callable[[str], None],
    ) -> HeldLock:
        lock = GroupLock(
            self.state_dir, group.account, group.id, command=holder.command, break_stale=break_stale
        )
        return _LocalHeld(lock.acquire())

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        check_free(self.state_dir, group.account, group.id, break_stale=break_stale)

    def lock_view(self, group: Group) -> LockView:
        holder, alive = read_holder(self.state_dir, group.account, group.id)
        if holder is None:
            return LockView(None, alive, self.backend)
        return LockView(holder.describe(), alive, self.backend, holder.since)

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        pass  # the journal in the state directory is the mark

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        return None

    def clear_unfinished(self, group: Group) -> None:
        pass

    def close(self) -> None:
        pass


def local_coordination(group: Group, state_dir: Path) -> Coordination:
    """The engine's own factory: the local lock; a shared service needs ``harestart.wiring``."""
    if group.coordination is not None:
        raise CoordinationUnavailable(
            group.id,
            f"coordination {group.coordination.scheme or '?'}://...: this environment has no "
            "coordination backends (build it with harestart.wiring.environment())",
        )
    return LocalCoordination(state_dir)


@contextmanager
def opened(factory: CoordinationFactory, group: Group, state_dir: Path) -> Iterator[Coordination]:
    """The group's backend for the block; closed after it."""
    coord = factory(group, state_dir)
    try:
        yield coord
    finally:
        coord.close()
