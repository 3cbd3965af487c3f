"""Observing a group read-only, every host at once, through the adapter Protocols.

``observe_group`` asks every node (SSH, MySQL) and the MHA manager what they are, through the
adapter Protocols only; it never raises for an unreachable host, it records the error. Every
host call is made at the same time (``engine.fanout.Together``: threads of one pool for the
process, reused), each node's through its own adapters (the Connector hands out one shell and
one probe per node), so observing a group takes as long as its slowest call, not the sum; every
probe keeps its own timeouts. A node's SSH and MySQL are separate calls, so a frozen host costs
the longer of its SSH and MySQL timeouts, not their sum.
The snapshot is pure data (domain/observation.py); domain/judge.py judges it.
"""

from __future__ import annotations

from functools import partial

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, MysqlReader, RemoteShell
from harestart.domain.group import Group, Node
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.pending import unknown_report
from harestart.domain.topology import MhaStatus, ReplicaStatus, ServerInfo
from harestart.engine.fanout import Together
from harestart.engine.pending import detect_pending as detect
from harestart.errors import HarestartError
from harestart.inventory.credentials import mysql_endpoint

log = structlog.get_logger("harestart.engine.observe")


def _ssh_check(node: Node, connector: Connector) -> str | None:
    try:
        connector.shell(node.name, node.ssh).run("true", timeout=node.ssh.connect_timeout * 2)
    except HarestartError as exc:
        return _reason(exc)
    return None


def _ssh_connect(shell: RemoteShell) -> str | None:
    """Open the node's SSH session (the one its detection command then uses): the SSH error,
    or None."""
    try:
        shell.connect()
    except HarestartError as exc:
        return _reason(exc)
    return None


Look = tuple[MysqlReader, ServerInfo, ReplicaStatus | None]


def _mysql_look(node: Node, connector: Connector) -> Look | str:
    """The server's reader, version and replication status; or why it did not answer."""
    try:
        probe = connector.mysql(node.name, mysql_endpoint(node))
        return probe, probe.server_info(), probe.replica_status()
    except HarestartError as exc:
        return _reason(exc)


def observe_node(
    node: Node, connector: Connector, *, check_ssh: bool = True, detect_pending: bool = False
) -> NodeState:
    """One node observed as ``observe_group`` observes each of its nodes."""
    nodes, _ = _observe_with_mha(
        (node,), connector, None, check_ssh=check_ssh, detect_pending=detect_pending, serial=False
    )
    return nodes[0]


def observe_mha(mha: FailoverManager) -> tuple[MhaStatus | None, str | None]:
    try:
        return mha.status(), None
    except HarestartError as exc:
        return None, _reason(exc)


def observe_group(
    group: Group,
    connector: Connector,
    mha: FailoverManager,
    *,
    check_ssh: bool = True,
    workers: int | None = None,
    detect_pending: bool = False,
) -> GroupState:
    """Every node and MHA at once; the nodes in inventory order, errors recorded per host.
    ``detect_pending``: each node's pending restarts and drift too (``observe_node``).

    Each node's adapters are used by one call at a time (its shell by one, its probe by
    another, then both by its pending detection); the caller must not use them meanwhile (the
    executor observes between steps).
    ``workers=1`` asks one host after the other (the benchmark's baseline).
    """
    nodes, (status, error) = _observe_with_mha(
        group.db_nodes,
        connector,
        mha,
        check_ssh=check_ssh,
        detect_pending=detect_pending,
        serial=workers == 1,
    )
    state = GroupState(group=group.id, nodes=nodes, mha=status, mha_error=error)
    log.info("group.observed", group=group.id, nodes=[n.describe() for n in nodes])
    return state


MhaLook = tuple[MhaStatus | None, str | None]


def _observe_with_mha(
    nodes: tuple[Node, ...],
    connector: Connector,
    mha: FailoverManager | None,
    *,
    check_ssh: bool,
    detect_pending: bool,
    serial: bool,
) -> tuple[tuple[NodeState, ...], MhaLook]:
    """Every node's SSH and MySQL, and MHA, asked at the same time (a frozen host costs the
    longer of its timeouts, not their sum); then, ``detect_pending``, each node's host command
    (it needs the server's version and pid file, and the SSH session just opened)."""
    shells = [connector.shell(n.name, n.ssh) for n in nodes] if detect_pending else []
    with Together(serial=serial) as calls:
        looks = [calls.start(partial(_mysql_look, n, connector)) for n in nodes]
        if detect_pending:
            sshs = [calls.start(partial(_ssh_connect, shell)) for shell in shells]
        else:
            sshs = [calls.start(partial(_ssh_check, n, connector)) for n in nodes if check_ssh]
        mha_look = calls.start(partial(observe_mha, mha)) if mha is not None else None
    found = [(look.result(), sshs[i].result() if sshs else None) for i, look in enumerate(looks)]
    mha_found = mha_look.result() if mha_look is not None else (None, None)
    if not detect_pending:
        return tuple(_state(n, *f) for n, f in zip(nodes, found, strict=True)), mha_found
    with Together(serial=serial) as calls:
        detected = [
            calls.start(partial(_detect, n, shells[i], *found[i], connector))
            for i, n in enumerate(nodes)
        ]
    return tuple(d.result() for d in detected), mha_found


def _state(node: Node, look: Look | str, ssh_error: str | None) -> NodeState:
    if isinstance(look, str):
        return NodeState(node.name, node.role, ssh_error=ssh_error, mysql_error=look)
    _, info, replica = look
    return NodeState(node.name, node.role, ssh_error=ssh_error, info=info, replica=replica)


def _detect(
    node: Node, shell: RemoteShell, look: Look | str, ssh_error: str | None, connector: Connector
) -> NodeState:
    """The node with its pending restarts. A server that does not answer leaves only an
    ``unknown`` reason (and the SSH check); a host that does not, the variables' reasons and an
    ``unknown`` one for the host."""
    if isinstance(look, str):
        return NodeState(
            node.name,
            node.role,
            ssh_error=ssh_error or _ssh_check(node, connector),
            mysql_error=look,
            pending=unknown_report(f"MySQL unreachable: {look}", "mysqld"),
        )
    probe, info, replica = look
    report, ssh_error = detect(node, shell, probe, info, unreachable=ssh_error)
    return NodeState(
        node.name, node.role, ssh_error=ssh_error, info=info, replica=replica, pending=report
    )


# A group's observation that raised what no host's error explains.
OBSERVE_CRASHED = "not observed: unexpected error (a harestart bug)"


def crashed_state(group: Group, error: str) -> GroupState:
    """A group whose observation failed as a whole (``error``): every host unknown, so the
    judge finds it unhealthy and says why."""
    nodes = tuple(NodeState(n.name, n.role, mysql_error=error) for n in group.db_nodes)
    return GroupState(group=group.id, nodes=nodes, mha=None, mha_error=error)


def _reason(exc: HarestartError) -> str:
    return getattr(exc, "reason", None) or str(exc)
