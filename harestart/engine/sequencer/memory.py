"""Run memory: what a run learned about each node before changing it. Typed and frozen.

What each node looked like before its restart (read_only state, the source's GTID position it
must catch up to, the original ``innodb_max_dirty_pages_pct`` of a pre-flush) and which
replicas' IO threads the run stopped and has not started again. The journal stores it, so a
resume after ``kill -9`` restores read_only as it was before the first attempt and starts the
IO threads it left stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harestart.domain.topology import ReadOnlyState


@dataclass(frozen=True)
class NodeMemory:
    read_only: ReadOnlyState | None = None  # before the restart
    catch_up: str | None = None  # the source's GTID position when the replica's step began
    dirty_pct: str | None = None  # innodb_max_dirty_pages_pct before a pre-flush
    offline: bool = False  # this run set offline_mode=ON and mysqld was not proven back since

    def to_dict(self) -> dict[str, str]:
        d: dict[str, str] = {}
        if self.read_only is not None:
            d["read_only"] = self.read_only.token()
        if self.catch_up is not None:
            d["catch_up"] = self.catch_up
        if self.dirty_pct is not None:
            d["dirty_pct"] = self.dirty_pct
        if self.offline:
            d["offline"] = "ON"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeMemory:
        ro = d.get("read_only")
        return cls(
            read_only=None if ro is None else ReadOnlyState.from_token(str(ro)),
            catch_up=d.get("catch_up"),
            dirty_pct=d.get("dirty_pct"),
            offline=d.get("offline") == "ON",
        )


@dataclass(frozen=True)
class SwitchMemory:
    """Where a switch of the source role stands (journalled before each change it makes).

    phase: ``source_read_only`` (S read-only, C not yet asked to become writable),
    ``promoting`` (C asked to leave replication and become writable), ``promoted`` (C is the
    writable source; replicas being re-pointed), ``done``."""

    source: str
    candidate: str
    phase: str
    source_was: str  # S's read_only token before the switch

    def to_dict(self) -> dict[str, str]:
        return {
            "source": self.source,
            "candidate": self.candidate,
            "phase": self.phase,
            "source_was": self.source_was,
        }


@dataclass(frozen=True)
class RunMemory:
    nodes: tuple[tuple[str, NodeMemory], ...] = ()
    detached: tuple[str, ...] = ()  # replicas whose IO thread this run stopped, not restarted
    source: str | None = None  # the group's source once a switch moved it (None: unmoved)
    switch: SwitchMemory | None = None  # the last switch begun

    def node(self, name: str) -> NodeMemory:
        return next((m for n, m in self.nodes if n == name), NodeMemory())

    def with_node(self, name: str, **changes: Any) -> RunMemory:
        updated = replace(self.node(name), **changes)
        others = tuple((n, m) for n, m in self.nodes if n != name)
        return replace(self, nodes=(*others, (name, updated)))

    def with_detached(self, name: str) -> RunMemory:
        if name in self.detached:
            return self
        return replace(self, detached=(*self.detached, name))

    def without_detached(self, name: str) -> RunMemory:
        return replace(self, detached=tuple(n for n in self.detached if n != name))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"nodes": {n: m.to_dict() for n, m in self.nodes if m.to_dict()}}
        if self.detached:
            d["detached"] = list(self.detached)
        if self.source is not None:
            d["source"] = self.source
        if self.switch is not None:
            d["switch"] = self.switch.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunMemory:
        nodes = tuple((n, NodeMemory.from_dict(m)) for n, m in dict(d.get("nodes", {})).items())
        switch = d.get("switch")
        return cls(
            nodes=nodes,
            detached=tuple(d.get("detached", ())),
            source=d.get("source"),
            switch=SwitchMemory(**switch) if isinstance(switch, dict) else None,
        )

    @classmethod
    def from_notes(cls, notes: dict[str, str]) -> RunMemory:
        """The version-1 journal's string notes (``read_only:db1``, ``catch_up:db2``, ...)."""
        memory = cls(detached=tuple(n for n in notes.get("detached", "").split(",") if n))
        for key, value in notes.items():
            what, _, host = key.partition(":")
            if what == "read_only" and host:
                memory = memory.with_node(host, read_only=ReadOnlyState.from_token(value))
            elif what in ("catch_up", "dirty_pct") and host:
                memory = memory.with_node(host, **{what: value})
        return memory
