"""Switchover: pure decisions for moving the source role to a replica and back. No I/O.

The ``switchover`` strategy restarts the source *as a replica*: a planned switch moves the
source role to a candidate replica first, so writes pause only for the switch (independent of
the buffer pool's size), never for a mysqld shutdown. Here: which replica is the candidate
(and by which rule), how the group looks once another node is its source, and whether a
candidate holds transactions its source never had (errant GTIDs), compared per server flavour
on the sets the servers report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from harestart.domain.group import Group, Node
from harestart.domain.topology import Flavor


class SourceStrategy(enum.StrEnum):
    """How the source itself is restarted."""

    RESTART = "restart"  # in place: writes stop while mysqld restarts
    SWITCHOVER = "switchover"  # moved to a replica first, restarted as a replica


class LongTransactions(enum.StrEnum):
    """What a switch does about transactions on the source older than the limit."""

    REFUSE = "refuse"
    KILL = "kill"


@dataclass(frozen=True)
class Candidate:
    name: str
    rule: str  # which rule picked it, in words (the plan says it)


def choose_candidate(group: Group) -> Candidate:
    """The replica a switch promotes: the inventory's ``candidate:``, else the first replica
    listed. (The plan names every statement per host, so the candidate is known before the
    run; the switch's gates refuse it if it is not a caught-up, healthy replica.)"""
    if group.candidate is not None:
        return Candidate(group.candidate, "the inventory's `candidate:`")
    return Candidate(
        group.replicas[0].name,
        "the first replica listed (no `candidate:` in the inventory)",
    )


def with_source(group: Group, name: str) -> Group:
    """``group`` as it is once ``name`` is its source: the old source joins the replicas
    (in its place in the listing order), every other replica stays."""
    if name == group.source.name:
        return group
    new_source = replace(group.node(name), role="source")
    old_source = replace(group.source, role="replica")
    replicas = tuple(old_source if r.name == name else r for r in group.replicas)
    return replace(group, source=new_source, replicas=replicas)


def replication_address(node: Node) -> tuple[str, int]:
    """Where other servers reach ``node`` to replicate from it (on their own network)."""
    if node.mysql is None:
        raise ValueError(f"{node.name} has no MySQL settings")
    return node.replication_host or node.mysql.host, node.replication_port or node.mysql.port


# Phases of a switch (journalled) while two nodes' roles are in flux: the switch step itself
# re-observes who is writable and where replicas point, and finishes or undoes it.
IN_FLUX = ("source_read_only", "promoting", "promoted")


# --- GTID sets -------------------------------------------------------------------------------


def _mysql_set(text: str) -> dict[str, list[tuple[int, int]]]:
    """``uuid:1-5:7,uuid2:1-3`` -> {uuid: [(1, 5), (7, 7)], ...} (uuids lower-cased)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for raw in text.replace("\n", "").split(","):
        part = raw.strip()
        if not part:
            continue
        uuid, *ranges = part.split(":")
        intervals = out.setdefault(uuid.strip().lower(), [])
        for r in ranges:
            lo, _, hi = r.partition("-")
            intervals.append((int(lo), int(hi or lo)))
    return out


def _subtract(have: list[tuple[int, int]], known: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The numbers of ``have`` not in ``known`` (as intervals)."""
    left = sorted(have)
    for klo, khi in sorted(known):
        cut: list[tuple[int, int]] = []
        for lo, hi in left:
            if hi < klo or lo > khi:
                cut.append((lo, hi))
                continue
            if lo < klo:
                cut.append((lo, klo - 1))
            if hi > khi:
                cut.append((khi + 1, hi))
        left = cut
    return left


def _mysql_errant(candidate: str, source: str) -> tuple[str, ...]:
    src = _mysql_set(source)
    out = []
    for uuid, intervals in _mysql_set(candidate).items():
        extra = _subtract(intervals, src.get(uuid, []))
        if extra:
            out.append(uuid + "".join(f":{lo}" if lo == hi else f":{lo}-{hi}" for lo, hi in extra))
    return tuple(out)


def _mariadb_pos(text: str) -> dict[int, tuple[int, int]]:
    """``0-1-100,1-2-5`` -> {domain: (server_id, seq_no)}."""
    out = {}
    for raw in text.split(","):
        part = raw.strip()
        if part:
            domain, server, seq = (int(x) for x in part.split("-"))
            out[domain] = (server, seq)
    return out


def _mariadb_errant(candidate: str, source: str) -> tuple[str, ...]:
    """Per domain: the candidate is ahead of the source, or at the same sequence number from
    another server (a diverged history), or in a domain the source never wrote."""
    src = _mariadb_pos(source)
    out = []
    for domain, (server, seq) in sorted(_mariadb_pos(candidate).items()):
        have = src.get(domain)
        if have is None or seq > have[1] or (seq == have[1] and server != have[0]):
            out.append(f"{domain}-{server}-{seq}")
    return tuple(out)


def errant_gtids(candidate: str, source: str, flavor: Flavor) -> tuple[str, ...]:
    """The GTIDs the candidate executed that its source does not have (empty: none).

    MySQL: ``gtid_executed`` sets, the candidate's minus the source's. MariaDB:
    ``gtid_current_pos`` positions compared per replication domain."""
    if flavor is Flavor.MARIADB:
        return _mariadb_errant(candidate, source)
    return _mysql_errant(candidate, source)


__all__ = [
    "Candidate",
    "LongTransactions",
    "SourceStrategy",
    "choose_candidate",
    "errant_gtids",
    "replication_address",
    "with_source",
]
