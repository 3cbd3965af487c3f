"""``harestart mark-pending`` and ``harestart clear-pending``: an operator's mark that a node
(or a whole group) needs a restart, for a reason harestart cannot see (#23), and its removal.

Two verbs rather than ``mark-pending --clear``: setting and removing are different acts (as
``patronictl pause``/``resume``, or ``flush``), and each says what it does in ``--help``. The
mark is kept in the group's coordination service when it has one, else in the state directory;
``status``, ``plan --probe``, ``GET /ha/{id}`` and the metrics show it as a ``mark`` reason,
and ``run --only-pending`` restarts the marked nodes. Exit codes: 0 done, 2 usage (unknown
group or node, a reason empty, over 200 characters or not printable, an unsafe state
directory), 3 the coordination service does not answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import click

from harestart.inventory.load import load_inventory

if TYPE_CHECKING:
    from harestart.engine.run import Environment


def _environment(*, create: bool) -> Environment:
    from harestart.engine.state.private import check_state_dir

    obj = click.get_current_context().find_root().obj
    if obj is not None:
        env = cast("Environment", obj)
    else:
        from harestart.wiring import environment

        env = environment()
    check_state_dir(env.state_dir, create=create)
    return env


def _scope(group: str, node: str | None) -> str:
    return f"node {node} of group {group}" if node else f"every node of group {group}"


@click.command("mark-pending")
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", required=True, help="The group.")
@click.option("--node", metavar="NAME", help="This database node (default: the whole group).")
@click.option(
    "--reason",
    metavar="TEXT",
    required=True,
    help="Why it needs a restart: up to 200 printable characters, shown as is.",
)
def mark_pending(inventory: str, group_id: str, node: str | None, reason: str) -> int:
    """Mark a node (or a whole group) as needing a restart, for a reason harestart cannot
    see. A new mark replaces the earlier one of the same node (or of the group)."""
    from harestart.engine.marks import mark_pending as mark

    group = load_inventory(inventory).select(group_id)[0]
    mark(group, node, reason, env=_environment(create=True))
    click.echo(f"marked {_scope(group.id, node)} as pending a restart: {reason}")
    return 0


@click.command("clear-pending")
@click.argument("inventory", type=click.Path(dir_okay=False))
@click.option("--group", "group_id", metavar="ID", required=True, help="The group.")
@click.option(
    "--node",
    "nodes",
    metavar="NAME",
    multiple=True,
    help="Only this node's mark (repeatable; default: every mark of the group, the "
    "whole-group one included).",
)
def clear_pending(inventory: str, group_id: str, nodes: tuple[str, ...]) -> int:
    """Remove operators' pending-restart marks (no error when there is none)."""
    from harestart.engine.marks import clear_marks

    group = load_inventory(inventory).select(group_id)[0]
    gone = clear_marks(group, frozenset(nodes) or None, env=_environment(create=False))
    where = ", ".join(f"node {n}" for n in nodes) or "every mark"
    click.echo(f"cleared {gone} mark{'s' if gone != 1 else ''} of group {group.id} ({where})")
    return 0
