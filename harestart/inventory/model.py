"""The resolved inventory: every group of one file, and how to pick groups from it."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from harestart.domain.endpoints import SshEndpoint
from harestart.domain.group import Group, Node
from harestart.errors import UsageError


@dataclass(frozen=True)
class Inventory:
    path: str
    groups: tuple[Group, ...]
    warnings: tuple[str, ...] = ()

    def accepting_new_host_keys(self) -> Inventory:
        """The same inventory with unknown SSH host keys accepted (and saved) everywhere."""

        def ssh(e: SshEndpoint) -> SshEndpoint:
            jump = ssh(e.jump) if e.jump else None
            return replace(e, accept_new_host_keys=True, jump=jump)

        def node(n: Node) -> Node:
            return replace(n, ssh=ssh(n.ssh))

        def group(g: Group) -> Group:
            mha = replace(g.mha, manager=node(g.mha.manager))
            return replace(g, source=node(g.source), replicas=tuple(map(node, g.replicas)), mha=mha)

        return replace(self, groups=tuple(map(group, self.groups)))

    def select(self, group_id: str | None) -> tuple[Group, ...]:
        if group_id is None:
            return self.groups
        for g in self.groups:
            if g.id == group_id:
                return (g,)
        known = ", ".join(g.id for g in self.groups)
        hint = did_you_mean(group_id, [g.id for g in self.groups])
        raise UsageError(f"{self.path}: no group {group_id!r}{hint} (groups: {known})")


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
