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

from harestart.domain.flavor import Flavor
from harestart.domain.group import Group, Node


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


def errant_gtids(candidate: str, source: str, flavor: Flavor) -> tuple[str, ...]:
    """The GTIDs the candidate executed that its source does not have (empty: none), one
    text per server UUID (MySQL, tags included) or per replication domain (MariaDB).

    MySQL: ``gtid_executed`` sets, the candidate's minus the source's. MariaDB:
    ``gtid_current_pos`` positions compared per replication domain (see
    :class:`~harestart.domain.gtid.MariadbGtidPos`). ``ValueError`` on text neither reads."""
    # Imported here: only a switchover's run reads GTIDs, and `plan` (every command) imports
    # this module for its strategies.
    from harestart.domain.gtid import gtid_minus

    return gtid_minus(flavor, candidate, source).parts()


__all__ = [
    "Candidate",
    "LongTransactions",
    "SourceStrategy",
    "choose_candidate",
    "errant_gtids",
    "replication_address",
    "with_source",
]
