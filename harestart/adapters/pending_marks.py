"""Operators' pending-restart marks (#23) in a group's coordination service, through the
records of ``adapters.coordination.ToozCoordination``: one tooz group per mark,
``harestart~<a>~<g>~pending~<base64url JSON>`` (no lease: a mark stays until it is cleared),
the same way the unfinished marks are kept, so every driver (etcd, ZooKeeper, Redis, file)
keeps them alike. A record under that prefix that is not a mark is refused, not half-read.
"""

from __future__ import annotations

from harestart.adapters.coordination import ToozCoordination
from harestart.domain.group import Group
from harestart.domain.pending.marks import MarkRefused, OperatorMark, cleared
from harestart.errors import UsageError


class ToozMarks:
    """The ``PendingMarks`` of a group with a coordination service."""

    def __init__(self, coordination: ToozCoordination) -> None:
        self._coordination = coordination
        self.backend = coordination.backend

    @staticmethod
    def _prefix(group: Group) -> str:
        return f"harestart~{group.account}~{group.id}~pending~"

    def _records(self, group: Group) -> list[tuple[bytes, OperatorMark]]:
        out = []
        for name, text in self._coordination.records(self._prefix(group)):
            try:
                out.append((name, OperatorMark.from_json(text)))
            except MarkRefused as exc:
                raise UsageError(
                    f"group {group.id}: the coordination service "
                    f"{self._coordination.shown} holds a pending-restart mark record that is "
                    f"not a mark ({exc}); remove it with clear-pending"
                ) from None
        return out

    def pending_marks(self, group: Group) -> tuple[OperatorMark, ...]:
        return tuple(sorted((m for _, m in self._records(group)), key=lambda m: m.at))

    def add_pending_mark(self, group: Group, mark: OperatorMark) -> None:
        for name, old in self._records(group):
            if old.node == mark.node:
                self._coordination.remove_record(name)
        self._coordination.add_record(self._prefix(group), mark.to_json())

    def clear_pending_marks(self, group: Group, nodes: frozenset[str] | None) -> int:
        if nodes is None:  # everything under the prefix, a malformed record included
            names = [n for n, _ in self._coordination.records(self._prefix(group))]
        else:
            records = self._records(group)
            left = set(cleared(tuple(m for _, m in records), nodes))
            names = [n for n, m in records if m not in left]
        for name in names:
            self._coordination.remove_record(name)
        return len(names)

    def close(self) -> None:
        self._coordination.close()
