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

The engine sees the ``Coordination`` Protocol only. A lost lease is reported through the
``on_lost`` callback the engine gives ``acquire`` (it stops the run at its next safe point).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from harestart.domain.group import Group
from harestart.domain.judge import LockView
from harestart.engine.lock import GroupLock, check_free, read_holder
from harestart.errors import CoordinationUnavailable

__all__ = [
    "Coordination",
    "CoordinationFactory",
    "HeldLock",
    "HolderInfo",
    "LocalCoordination",
    "UnfinishedMark",
    "local_coordination",
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def state_dir_text(state_dir: Path) -> str:
    """The state directory as other machines are told it (absolute)."""
    return str(state_dir.absolute())


@dataclass(frozen=True)
class HolderInfo:
    """Who holds a group's lock, as published next to a shared lock."""

    host: str
    pid: int
    user: str
    since: str
    command: str
    state_dir: str
    run_id: str | None = None

    @classmethod
    def mine(cls, *, command: str, state_dir: Path) -> HolderInfo:
        return cls(
            host=this_host(),
            pid=os.getpid(),
            user=_user(),
            since=_now(),
            command=command,
            state_dir=state_dir_text(state_dir),
        )

    def describe(self) -> str:
        run = f", run {self.run_id}" if self.run_id else ""
        return (
            f"pid {self.pid} of {self.user}@{self.host} since {self.since}{run} "
            f"({self.command}; state directory {self.state_dir})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> HolderInfo | None:
        if not isinstance(d, dict):
            return None
        try:
            return cls(
                host=str(d["host"]),
                pid=int(d["pid"]),
                user=str(d["user"]),
                since=str(d["since"]),
                command=str(d["command"]),
                state_dir=str(d["state_dir"]),
                run_id=None if d.get("run_id") is None else str(d["run_id"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class UnfinishedMark:
    """A run of the group that began changing things and has not finished: where its journal
    is (host and state directory), so another bastion refuses to start over it."""

    host: str
    state_dir: str
    run_id: str
    started_at: str
    user: str

    @classmethod
    def mine(cls, *, run_id: str, started_at: str, state_dir: Path) -> UnfinishedMark:
        return cls(
            host=this_host(),
            state_dir=state_dir_text(state_dir),
            run_id=run_id,
            started_at=started_at,
            user=_user(),
        )

    def is_here(self, state_dir: Path) -> bool:
        """The mark of a run whose journal is in ``state_dir`` on this machine."""
        return self.host == this_host() and self.state_dir == state_dir_text(state_dir)

    def describe(self) -> str:
        return (
            f"run {self.run_id} started {self.started_at or '?'} by {self.user}@{self.host}, "
            f"its journal is in the state directory {self.state_dir} on {self.host}"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UnfinishedMark | None:
        try:
            d = json.loads(text)
            return cls(
                host=str(d["host"]),
                state_dir=str(d["state_dir"]),
                run_id=str(d["run_id"]),
                started_at=str(d["started_at"]),
                user=str(d["user"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class HeldLock(Protocol):
    """A lock ``Coordination.acquire`` took; release it exactly once."""

    def publish(self, run_id: str) -> None:
        """Name the run (its journal's run id) in the published holder."""

    def release(self) -> None:
        """Give the lock up (best effort: a service that is down lets the lease expire)."""


class Coordination(Protocol):
    """One backend's view of the groups' locks and unfinished marks."""

    # "local", or the service's URL scheme ("etcd3+http", "redis", "zookeeper", "file").
    backend: str

    def acquire(
        self,
        group: Group,
        holder: HolderInfo,
        *,
        break_stale: bool,
        on_lost: Callable[[str], None],
    ) -> HeldLock:
        """Take the group's lock or raise LockHeld (exit 4) naming the holder; raise
        CoordinationUnavailable (exit 3) when the service does not answer."""

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        """Raise what ``acquire`` would (LockHeld), without taking the lock."""

    def lock_view(self, group: Group) -> LockView:
        """The lock as the judge takes it (holder described, alive, backend)."""

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        """Record (replacing any earlier one) that a run of the group is unfinished."""

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        """The group's unfinished mark, if any (None for the local backend)."""

    def clear_unfinished(self, group: Group) -> None:
        """Remove the group's unfinished mark (no error when there is none)."""

    def close(self) -> None:
        """Disconnect; locks still held are released."""


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
        return LockView(holder.describe() if holder is not None else None, alive, self.backend)

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
