"""Observing a group read-only, and the pure judgement of what was observed.

``observe_group`` asks every node (SSH, MySQL) and the MHA manager what they are, through the
adapter Protocols only; it never raises for an unreachable host, it records the error. The
hosts are asked at the same time, each from its own thread with its own adapters (the
Connector hands out one shell and one probe per node), so observing a group takes as long as
its slowest host, not the sum of them; every probe keeps its own timeouts.
``preflight_problems`` is pure: it compares the snapshot with the inventory and returns every
reason to refuse (empty list: safe to proceed).
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from harestart.adapters.protocols import Connector, FailoverManager
from harestart.errors import HarestartError
from harestart.inventory import Group, Node
from harestart.topology import MhaStatus, ReplicaStatus, ServerInfo

log = structlog.get_logger("harestart.observe")

# Threads of one group's observation (its nodes and MHA): a group has a handful of nodes, and a
# thread per host only waits on the network.
MAX_OBSERVERS = 16


@dataclass(frozen=True)
class NodeState:
    name: str
    role: str
    ssh_error: str | None = None
    mysql_error: str | None = None
    info: ServerInfo | None = None
    replica: ReplicaStatus | None = None

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
        return (*(n.describe() for n in self.nodes), f"MHA: {self.mha_text()}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": [n.to_dict() for n in self.nodes],
            "mha": {
                "state": self.mha.state.name if self.mha else None,
                "text": self.mha_text(),
            },
        }


def observe_node(node: Node, connector: Connector, *, check_ssh: bool = True) -> NodeState:
    ssh_error = None
    if check_ssh:
        try:
            connector.shell(node.name, node.ssh).run("true", timeout=node.ssh.connect_timeout * 2)
        except HarestartError as exc:
            ssh_error = _reason(exc)
    try:
        probe = connector.mysql(node.name, node.mysql_endpoint())
        info = probe.server_info()
        replica = probe.replica_status()
    except HarestartError as exc:
        return NodeState(node.name, node.role, ssh_error=ssh_error, mysql_error=_reason(exc))
    return NodeState(node.name, node.role, ssh_error=ssh_error, info=info, replica=replica)


def observe_mha(mha: FailoverManager) -> tuple[MhaStatus | None, str | None]:
    try:
        return mha.status(), None
    except HarestartError as exc:
        return None, _reason(exc)


def observe_group(
    group: Group, connector: Connector, mha: FailoverManager, *, check_ssh: bool = True
) -> GroupState:
    """Every node and MHA at once; the nodes in inventory order, errors recorded per host.

    Each node's adapters are used by its own thread only (one shell and one probe per node);
    the caller must not use them meanwhile (the executor observes between steps).
    """
    db_nodes = group.db_nodes
    pool = ThreadPoolExecutor(
        max_workers=min(MAX_OBSERVERS, len(db_nodes) + 1),
        thread_name_prefix=f"observe-{group.id}",
    )
    try:
        # Each task runs in its own copy of the context: log events keep group/step.
        mha_future = pool.submit(contextvars.copy_context().run, observe_mha, mha)
        node_futures = [
            pool.submit(
                contextvars.copy_context().run, observe_node, n, connector, check_ssh=check_ssh
            )
            for n in db_nodes
        ]
        nodes = tuple(f.result() for f in node_futures)
        status, error = mha_future.result()
    finally:
        # Done: the threads are idle. Interrupted (a second Ctrl-C): do not wait for hosts.
        pool.shutdown(wait=False, cancel_futures=True)
    state = GroupState(group=group.id, nodes=nodes, mha=status, mha_error=error)
    log.info("group.observed", group=group.id, nodes=[n.describe() for n in nodes])
    return state


def _reason(exc: HarestartError) -> str:
    return getattr(exc, "reason", None) or str(exc)


# --- pure judgement --------------------------------------------------------------------------


def replication_problems(group: Group, state: GroupState) -> list[str]:
    """Every way the observed replication contradicts the inventory (by server_id)."""
    problems: list[str] = []
    source = state.node(group.source.name)
    if source.info is None:
        return problems  # reachability is reported separately
    src_id = source.info.server_id
    ids: dict[int, str] = {}
    for n in state.nodes:
        if n.info is None:
            continue
        if n.info.server_id in ids:
            problems.append(
                f"{n.name} and {ids[n.info.server_id]} have the same server_id {n.info.server_id}"
            )
        ids.setdefault(n.info.server_id, n.name)
    for r in group.replicas:
        n = state.node(r.name)
        if n.info is None:
            continue
        rs = n.replica
        if rs is None:
            problems.append(f"{r.name} is listed as a replica but is not replicating at all")
            continue
        if rs.source_server_id is not None and rs.source_server_id != src_id:
            problems.append(
                f"{r.name} replicates from server_id {rs.source_server_id} "
                f"({rs.source_host}:{rs.source_port}), not from the listed source "
                f"{group.source.name} (server_id {src_id})"
            )
        if rs.broken():
            problems.append(f"{r.name}: replication is broken: {rs.error_text()}")
        elif not rs.threads_running():
            problems.append(
                f"{r.name}: replication threads are not both running "
                f"(IO {rs.io_running}, SQL {rs.sql_running})"
            )
    return problems


def preflight_problems(
    group: Group, state: GroupState, *, max_lag: float | None = None
) -> list[str]:
    """Every reason not to start a restart of ``group`` in ``state``; empty when safe."""
    problems = [n.describe() for n in state.nodes if not n.reachable]
    problems += replication_problems(group, state)
    limit = group.health.max_lag if max_lag is None else max_lag
    for r in group.replicas:
        rs = state.node(r.name).replica
        if rs is not None and rs.threads_running() and not rs.lag_within(limit):
            problems.append(
                f"{r.name}: lags {rs.lag_seconds} s behind the source (max {limit:g} s)"
            )
    if state.mha is None:
        problems.append(f"MHA manager {group.mha.manager.name}: status unknown: {state.mha_error}")
    elif state.mha.failover_in_progress():
        problems.append(f"MHA is failing over right now: {state.mha.describe()}")
    elif state.mha.error():
        problems.append(f"MHA is in an error state: {state.mha.describe()}")
    return problems


def resume_problems(
    group: Group, state: GroupState, topology: dict[str, Any], resumable_host: str | None
) -> list[str]:
    """Reasons ``resume`` must refuse: the group is not the one the run began on, or unsafe.

    ``resumable_host`` (the node whose restart was cut short) may be down: resume starts it.
    """
    problems: list[str] = []
    if topology.get("source") != group.source.name:
        problems.append(
            f"the run began with source {topology.get('source')}, the inventory now says "
            f"{group.source.name}"
        )
    replicas = topology.get("replicas") or {}
    if sorted(replicas) != sorted(r.name for r in group.replicas):
        problems.append(
            f"the run began with replicas {', '.join(sorted(replicas))}, the inventory now lists "
            f"{', '.join(sorted(r.name for r in group.replicas))}"
        )
    for n in state.nodes:
        if n.info is None:
            if n.name == resumable_host and n.ssh_error is None:
                continue
            problems.append(n.describe())
            continue
        was = topology.get("source_server_id") if n.role == "source" else replicas.get(n.name)
        if was is not None and n.info.server_id != was:
            problems.append(
                f"{n.name} now has server_id {n.info.server_id}, it had {was} when the run began"
            )
    problems += replication_problems(group, state)
    if state.mha is None:
        problems.append(f"MHA manager {group.mha.manager.name}: status unknown: {state.mha_error}")
    elif state.mha.failover_in_progress() or state.mha.error():
        problems.append(f"MHA is not in a safe state: {state.mha.describe()}")
    return problems
