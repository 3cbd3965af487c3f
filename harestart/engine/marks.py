"""Operators' pending-restart marks (#23): set, cleared and read through the group's
``PendingMarks`` store (its coordination service when it has one, else the state directory:
``Environment.marks``), and added to an observation as ``mark`` reasons.

``mark_pending`` and ``clear_marks`` are what ``harestart mark-pending``/``clear-pending`` call;
``clear_marks(group, nodes, env=env)`` is also what a successful run calls for the nodes it
restarted. A mark's text is bounded printable text (``domain.pending.marks``), shown, never
sent to a server or a shell.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from harestart.adapters.protocols import PendingMarks
from harestart.domain.group import Group
from harestart.domain.observation import GroupState, NodeState
from harestart.domain.pending import PendingReport, Reason, unknown_report
from harestart.domain.pending.marks import MarkRefused, OperatorMark, with_marks
from harestart.engine.coordination import current_user, this_host
from harestart.engine.state.marks import LocalMarks
from harestart.errors import CoordinationUnavailable, HarestartError, UsageError

# Builds the marks store of a group (group, state directory) -> store.
MarksFactory = Callable[[Group, Path], PendingMarks]


class HasMarks(Protocol):
    """What of the engine's ``Environment`` the marks need."""

    @property
    def marks(self) -> MarksFactory: ...

    @property
    def state_dir(self) -> Path: ...


def local_marks(group: Group, state_dir: Path) -> PendingMarks:
    """The engine's own store: the state directory; a shared service needs ``wiring``."""
    if group.coordination is not None:
        raise CoordinationUnavailable(
            group.id,
            f"coordination {group.coordination.scheme or '?'}://...: this environment has no "
            "coordination backends (build it with harestart.wiring.environment())",
        )
    return LocalMarks(state_dir)


@contextmanager
def _store(group: Group, env: HasMarks) -> Iterator[PendingMarks]:
    store = env.marks(group, env.state_dir)
    try:
        yield store
    finally:
        store.close()


def _check_nodes(group: Group, nodes: frozenset[str] | None) -> None:
    known = {n.name for n in group.db_nodes}
    unknown = sorted(set(nodes or ()) - known)
    if unknown:
        raise UsageError(
            f"group {group.id} has no database node {', '.join(map(repr, unknown))} "
            f"(its nodes: {', '.join(sorted(known))})"
        )


def mark_pending(group: Group, node: str | None, reason: str, *, env: HasMarks) -> OperatorMark:
    """Mark ``node`` (None: the whole group) as needing a restart, for ``reason``; replaces
    the earlier mark of the same node. UsageError (exit 2) for an unknown node or a reason
    that is empty, too long or not printable text."""
    _check_nodes(group, None if node is None else frozenset({node}))
    try:
        mark = OperatorMark(
            node=node,
            reason=reason,
            user=current_user(),
            host=this_host(),
            at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
    except MarkRefused as exc:
        raise UsageError(f"mark-pending: {exc}") from None
    with _store(group, env) as store:
        store.add_pending_mark(group, mark)
    return mark


def clear_marks(group: Group, nodes: frozenset[str] | None, *, env: HasMarks) -> int:
    """Remove the operator's marks of ``nodes`` (None: every mark of the group, the
    whole-group one included; a node's clear leaves the whole-group mark). How many went."""
    _check_nodes(group, nodes)
    with _store(group, env) as store:
        return store.clear_pending_marks(group, nodes)


def read_marks(group: Group, *, env: HasMarks) -> tuple[OperatorMark, ...]:
    with _store(group, env) as store:
        return store.pending_marks(group)


def with_operator_marks(group: Group, state: GroupState, *, env: HasMarks) -> GroupState:
    """``state`` with a ``mark`` reason on each marked node; when the marks cannot be read,
    an ``unknown`` reason on every node instead (never a silent "nothing marked")."""
    try:
        marks = read_marks(group, env=env)
    except HarestartError as exc:
        why = f"the operator's marks could not be read: {getattr(exc, 'reason', None) or exc}"
        missing = unknown_report(why, "marks").pending_restart
        return dataclasses.replace(
            state, nodes=tuple(_with(n.pending, missing, n) for n in state.nodes)
        )
    if not marks:
        return state
    nodes = tuple(
        dataclasses.replace(n, pending=with_marks(n.pending, n.name, marks)) for n in state.nodes
    )
    return dataclasses.replace(state, nodes=nodes)


def _with(report: PendingReport | None, reasons: tuple[Reason, ...], node: NodeState) -> NodeState:
    if report is None:
        return dataclasses.replace(node, pending=PendingReport(pending_restart=reasons))
    added = dataclasses.replace(report, pending_restart=report.pending_restart + reasons)
    return dataclasses.replace(node, pending=added)
