"""Observing a group read-only, every host at once, through the adapter Protocols.

``observe_group`` asks every node (SSH, MySQL) and the MHA manager what they are, through the
adapter Protocols only; it never raises for an unreachable host, it records the error. The
hosts are asked at the same time, each from its own thread with its own adapters (the
Connector hands out one shell and one probe per node), so observing a group takes as long as
its slowest host, not the sum of them; every probe keeps its own timeouts. Within a node, SSH
and MySQL are asked at the same time too (the shell on a helper thread, the probe on the
node's), so a frozen host costs the longer of its SSH and MySQL timeouts, not their sum.
The snapshot is pure data (domain/observation.py); domain/judge.py judges it.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, MysqlReader, RemoteShell
from harestart.domain.group import Group, Node
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.pending import unknown_report
from harestart.domain.topology import MhaStatus, ReplicaStatus, ServerInfo
from harestart.engine.fanout import side_by_side
from harestart.engine.pending import detect_pending as detect
from harestart.errors import HarestartError
from harestart.inventory.credentials import mysql_endpoint

log = structlog.get_logger("harestart.engine.observe")

# Threads of one group's observation (its nodes and MHA): a group has a handful of nodes, and a
# thread per host only waits on the network.
MAX_OBSERVERS = 16


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
    """SSH and MySQL asked at the same time (``side_by_side``): a frozen host costs the longer
    of the two timeouts, not their sum. ``detect_pending``: also whether the node needs a
    restart (engine/pending.py); its one host command is then the SSH check."""
    if detect_pending:
        return _observe_detecting(node, connector)
    if check_ssh:
        ssh_error, look = side_by_side(
            lambda: _ssh_check(node, connector), lambda: _mysql_look(node, connector)
        )
    else:
        ssh_error, look = None, _mysql_look(node, connector)
    if isinstance(look, str):
        return NodeState(node.name, node.role, ssh_error=ssh_error, mysql_error=look)
    _, info, replica = look
    return NodeState(node.name, node.role, ssh_error=ssh_error, info=info, replica=replica)


def _observe_detecting(node: Node, connector: Connector) -> NodeState:
    """The SSH session opens while SQL is asked: the host command needs the server's version
    (its option groups) and pid file, so it runs once both answered. A server that does not
    answer leaves only an ``unknown`` reason (and the SSH check); a host that does not, the
    variables' reasons and an ``unknown`` one for the host."""
    shell = connector.shell(node.name, node.ssh)
    ssh_error, look = side_by_side(
        lambda: _ssh_connect(shell), lambda: _mysql_look(node, connector)
    )
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

    Each node's adapters are used by its own threads only (its shell by one, its probe by
    the other, then both by the node's); the caller must not use them meanwhile (the
    executor observes between steps).
    ``workers=1`` asks one host after the other (the benchmark's baseline).
    """
    db_nodes = group.db_nodes
    pool = ThreadPoolExecutor(
        max_workers=workers or min(MAX_OBSERVERS, len(db_nodes) + 1),
        thread_name_prefix=f"observe-{group.id}",
    )
    try:
        # Each task runs in its own copy of the context: log events keep group/step.
        mha_future = pool.submit(contextvars.copy_context().run, observe_mha, mha)
        node_futures = [
            pool.submit(
                contextvars.copy_context().run,
                observe_node,
                n,
                connector,
                check_ssh=check_ssh,
                detect_pending=detect_pending,
            )
            for n in db_nodes
        ]
        nodes = tuple(f.result() for f in node_futures)
        status, error = mha_future.result()
    except BaseException:
        # Interrupted (a second Ctrl-C): do not wait for hosts.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    # Done: the threads are idle; their exit is waited for (none is left behind, still
    # ending while the caller goes on: with groups probed side by side, hundreds of them).
    pool.shutdown()
    state = GroupState(group=group.id, nodes=nodes, mha=status, mha_error=error)
    log.info("group.observed", group=group.id, nodes=[n.describe() for n in nodes])
    return state


# A group's observation that raised what no host's error explains.
OBSERVE_CRASHED = "not observed: unexpected error (a harestart bug)"


def crashed_state(group: Group, error: str) -> GroupState:
    """A group whose observation failed as a whole (``error``): every host unknown, so the
    judge finds it unhealthy and says why."""
    nodes = tuple(NodeState(n.name, n.role, mysql_error=error) for n in group.db_nodes)
    return GroupState(group=group.id, nodes=nodes, mha=None, mha_error=error)


def _reason(exc: HarestartError) -> str:
    return getattr(exc, "reason", None) or str(exc)
