"""Who holds a group's lock and which run is unfinished, as a coordination service tells
every machine (plain data; ``engine.coordination`` fills in this process's values)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

# The coordination services harestart knows, by URL scheme -> (the pip extra that installs its
# driver, the driver's module; None: tooz's own). The inventory refuses another scheme.
SCHEMES: dict[str, tuple[str, str | None]] = {
    "etcd3+http": ("etcd", "etcd3gw"),
    "etcd3+https": ("etcd", "etcd3gw"),
    "zookeeper": ("zookeeper", "kazoo"),
    "kazoo": ("zookeeper", "kazoo"),
    "redis": ("redis", "redis"),
    "file": ("etcd", None),  # tooz's file driver: one machine only (tests, a local directory)
}


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

    def is_at(self, host: str, state_dir: str) -> bool:
        """The mark of a run whose journal is in ``state_dir`` on ``host``."""
        return self.host == host and self.state_dir == state_dir

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
