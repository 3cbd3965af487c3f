"""``run --only-pending`` (#23): which nodes of a group a run restarts, and why. Pure.

``select_pending`` reads an observation that detected pending restarts (``NodeState.pending``)
and keeps the nodes with a reason: every kind counts, ``unknown`` too unless the run was told
to skip what it cannot tell (``--pending-unknown skip``). A node restarted for a reason a
restart ends (an option file, a persisted setting, a replaced binary or library) is checked
again after its restart (``recheck``): still pending fails the step with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.pending.model import Reason, ReasonKind

__all__ = ["CLEARED_BY_RESTART", "NOTHING_PENDING", "NodePending", "Only", "select_pending"]

# What a group with no node to restart is reported as (text, JSON, the fleet round).
NOTHING_PENDING = "nothing pending"

# What a restart of mysqld ends; anything else (a mark, unknown, a package's version) it may not.
CLEARED_BY_RESTART = frozenset(
    {ReasonKind.CONFIG, ReasonKind.PERSISTED, ReasonKind.BINARY, ReasonKind.LIBRARY}
)


@dataclass(frozen=True)
class NodePending:
    """One node to restart: its reasons (as people read them) and whether to check it again."""

    node: str
    reasons: tuple[str, ...]
    recheck: bool = False

    def why(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Only:
    """The nodes a run restarts (the others are left running)."""

    nodes: tuple[NodePending, ...] = ()

    def restarts(self, name: str) -> bool:
        return any(n.node == name for n in self.nodes)

    def of(self, name: str) -> NodePending | None:
        return next((n for n in self.nodes if n.node == name), None)

    @property
    def empty(self) -> bool:
        return not self.nodes


def _counted(reason: Reason, *, unknown_pending: bool) -> bool:
    return unknown_pending or reason.kind is not ReasonKind.UNKNOWN


def select_pending(group: Group, state: GroupState, *, unknown_pending: bool = True) -> Only:
    """The group's nodes with something pending, in the inventory's order. A node the
    observation did not look at (no report) counts as unknown."""
    by_name = {n.name: n for n in state.nodes}
    chosen: list[NodePending] = []
    for node in group.db_nodes:
        seen = by_name.get(node.name)
        if seen is None or seen.pending is None:
            if unknown_pending:
                chosen.append(NodePending(node.name, ("unknown: not observed",)))
            continue
        reasons = [r for r in seen.pending_restart if _counted(r, unknown_pending=unknown_pending)]
        if reasons:
            recheck = any(r.kind in CLEARED_BY_RESTART for r in reasons)
            chosen.append(NodePending(node.name, tuple(r.describe() for r in reasons), recheck))
    return Only(tuple(chosen))
