"""The judge: pure decisions about a group from what was observed.

Every view that needs to know whether a group is fine asks here: preflight, resume, verify, the
failure policy, ``status`` and the HTTP API.
"""

from __future__ import annotations

from typing import Any

from harestart.domain.group import Group
from harestart.domain.observation import GroupState


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
    problems = mha_safe_problems(group, state)
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


def unreachable(state: GroupState) -> list[str]:
    """Every node that did not answer (SSH or MySQL), described."""
    return [n.describe() for n in state.nodes if not n.reachable]


def mha_safe_problems(group: Group, state: GroupState) -> list[str]:
    """Reasons MHA must not be started again after a failed run (it would fail over onto a
    broken topology): an unreachable node or replication that contradicts the inventory."""
    return unreachable(state) + replication_problems(group, state)


def verify_problems(group: Group, state: GroupState, *, mha_expected: bool) -> list[str]:
    """Reasons the group is not back to what a finished restart promises: every node answers,
    every replica replicates from the source within the lag limit, and MHA monitors again
    (when it was running before the run)."""
    problems = mha_safe_problems(group, state)
    for r in group.replicas:
        rs = state.node(r.name).replica
        if rs is not None and not rs.lag_within(group.health.max_lag):
            problems.append(f"{r.name}: lag {rs.lag_seconds} s")
    if mha_expected and (state.mha is None or not state.mha.healthy()):
        problems.append(f"MHA is not monitoring: {state.mha_text()}")
    return problems
