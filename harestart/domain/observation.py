"""What an observation of a group found: one frozen snapshot per node and MHA's status.

Pure data (engine/observe.py takes the snapshot through the adapters; domain/judge.py judges it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harestart.domain.pending.model import PendingReport, Reason
from harestart.domain.topology import MhaStatus, ReplicaStatus, ServerInfo


@dataclass(frozen=True)
class NodeState:
    name: str
    role: str
    ssh_error: str | None = None
    mysql_error: str | None = None
    info: ServerInfo | None = None
    replica: ReplicaStatus | None = None
    # Pending restarts and drift (#23), when the observation looked for them (else None).
    pending: PendingReport | None = None

    @property
    def pending_restart(self) -> tuple[Reason, ...]:
        return () if self.pending is None else self.pending.pending_restart

    @property
    def config_drift(self) -> tuple[Reason, ...]:
        return () if self.pending is None else self.pending.config_drift

    @property
    def reachable(self) -> bool:
        return self.ssh_error is None and self.mysql_error is None and self.info is not None

    def describe(self) -> str:
        if self.ssh_error:
            return f"{self.name} ({self.role}): SSH unreachable: {self.ssh_error}"
        if self.mysql_error or self.info is None:
            return f"{self.name} ({self.role}): MySQL unreachable: {self.mysql_error}"
        i = self.info
        text = (
            f"{self.name} ({self.role}): {i.flavor.value} {i.version}, server_id {i.server_id}, "
            f"{i.read_only_state.describe()}, up {i.uptime} s"
        )
        if self.replica is not None:
            text += f"; replication: {self.replica.describe()}"
        elif self.role == "replica":
            text += "; not replicating (no replica status)"
        if i.gtid_position:
            text += f"; GTID {i.gtid_position}"
        return text

    def pending_notes(self) -> list[str]:
        """``<node>: pending restart: ...`` (or nothing pending) and ``<node>: config drift:
        ...``, when the observation looked for them."""
        if self.pending is None:
            return []
        notes = [f"{self.name}: pending restart: {self.pending.describe()}"]
        if self.config_drift:
            drift = "; ".join(r.describe() for r in self.config_drift)
            notes.append(f"{self.name}: config drift: {drift}")
        return notes

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "role": self.role, "reachable": self.reachable}
        if self.ssh_error:
            d["ssh_error"] = self.ssh_error
        if self.mysql_error:
            d["mysql_error"] = self.mysql_error
        if self.info is not None:
            i = self.info
            d.update(
                version=i.version,
                flavor=i.flavor.value,
                server_id=i.server_id,
                read_only=i.read_only,
                **({} if i.super_read_only is None else {"super_read_only": i.super_read_only}),
                uptime_s=i.uptime,
                gtid_position=i.gtid_position,
            )
        if self.replica is not None:
            r = self.replica
            d["replication"] = {
                "io_running": r.io_running,
                "sql_running": r.sql_running,
                "lag_s": r.lag_seconds,
                "source_server_id": r.source_server_id,
                "source_host": r.source_host,
                "error": r.error_text() or None,
            }
        if self.pending is not None:
            d.update(self.pending.to_dict())
        return d


@dataclass(frozen=True)
class GroupState:
    group: str
    nodes: tuple[NodeState, ...]
    mha: MhaStatus | None
    mha_error: str | None = None

    def node(self, name: str) -> NodeState:
        return next(n for n in self.nodes if n.name == name)

    def mha_text(self) -> str:
        if self.mha is None:
            return f"unknown ({self.mha_error})"
        return self.mha.describe()

    def notes(self) -> tuple[str, ...]:
        """One line per node, MHA's, then each node's pending restarts and drift (#23) when
        the observation looked for them (``plan --probe``)."""
        pending = [line for n in self.nodes for line in n.pending_notes()]
        return (*(n.describe() for n in self.nodes), f"MHA: {self.mha_text()}", *pending)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "mha": {
                "state": self.mha.state.name if self.mha else None,
                "text": self.mha_text(),
            },
        }
