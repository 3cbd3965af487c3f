"""A plan for people (text) and for tools (JSON).

The text says each action on one line, in the words of the server it will meet (``Wording``):
the version ``--probe`` found, else the inventory's ``flavor:``, else every server's form. The
checks (gates) and the wrappers commands are sent in are there with ``verbose``. The JSON is
the whole plan, every form and wrapper, whatever the wording.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harestart.domain.actions import PlanAction
from harestart.domain.dialect import Dialect, dialect_for
from harestart.domain.flavor import Flavor
from harestart.domain.group import Group
from harestart.domain.plan.model import Plan, Step

if TYPE_CHECKING:  # `plan` without --probe observes nothing: not imported for it
    from harestart.domain.observation import GroupState

# The words of each `flavor:` (MySQL: 8.0.22 and later, the REPLICA words; docs: Inventory).
FLAVOR_WORDS: Mapping[Flavor, Dialect] = {
    Flavor.MARIADB: dialect_for("10.11.0-MariaDB"),
    Flavor.MYSQL: dialect_for("8.0.22"),
}
_FLAVOR_NAMES = {Flavor.MARIADB: "MariaDB", Flavor.MYSQL: "MySQL 8.0.22 and later"}


@dataclass(frozen=True)
class Wording:
    """Whose words the text uses: each host's server where known (``dialects``), every form
    elsewhere; ``says`` tells the reader which (empty: every form everywhere)."""

    dialects: Mapping[str, Dialect] = field(default_factory=dict)
    says: str = ""

    def of(self, host: str) -> Dialect | None:
        return self.dialects.get(host)


EVERY_FORM = Wording()


def inventory_wording(group: Group) -> Wording:
    """The words of the group's ``flavor:``; every form when the inventory does not say."""
    if group.flavor is None:
        return EVERY_FORM
    d = FLAVOR_WORDS[group.flavor]
    name = _FLAVOR_NAMES[group.flavor]
    return Wording(
        {n.name: d for n in group.db_nodes},
        f"in the words of {name} (`flavor: {group.flavor.value}`)",
    )


def observed_wording(state: GroupState) -> Wording:
    """The words of the version each server answered with (``plan --probe``)."""
    dialects = {n.name: dialect_for(n.info.version) for n in state.nodes if n.info is not None}
    return Wording(dialects, "in the words of the versions found") if dialects else EVERY_FORM


def wording_for(group: Group, observed: GroupState | None) -> Wording:
    """The words of the versions found when the group was observed, else its ``flavor:``'s."""
    return observed_wording(observed) if observed is not None else inventory_wording(group)


def render_text(plan: Plan, wording: Wording = EVERY_FORM, *, verbose: bool = False) -> str:
    """One line per action (``do:``; ``finally:`` for what a step does at its end whatever
    happened), in the order the run sends them, each in ``wording``'s words; statements and
    commands quoted in backticks. ``verbose``: also every gate (``gate:``) where the run
    evaluates it, and each command exactly as sent (the wrapper around the inventory's)."""
    head = f"Plan for group {plan.group} (account {plan.account}): {len(plan.steps)} steps"
    says = f", {wording.says}" if wording.says else ""
    hint = "" if verbose else "; every check and exact command: plan --verbose"
    lines = [head + says + hint]
    lines += [f"  observed: {note}" for note in plan.notes]
    lines += [f"  not pending: left running: {node}" for node in plan.left_running]
    for s in plan.steps:
        lines += _step(s, wording, verbose)
    return "\n".join(lines)


def _step(s: Step, wording: Wording, verbose: bool) -> list[str]:
    def said(a: PlanAction) -> str:
        return a.describe(wording.of(a.host), brief=not verbose)

    def do(a: PlanAction) -> list[str]:
        proofs = [f"       gate: {g.describe()}" for g in a.then] if verbose else []
        return [f"       do: {said(a)}", *proofs]

    n = len(s.gates)
    checks = "" if verbose or not n else f" ({n} check{'s' if n != 1 else ''})"
    lines = [f"{s.number:>3}. [{s.action.value}] {s.summary}{checks}"]
    if verbose:
        lines += [f"       gate: {g.describe()}" for g in s.before]
    for a in s.actions:
        lines += do(a)
    if verbose:
        lines += [f"       gate: {g.describe()}" for g in s.after]
    for a in s.closing:
        lines += do(a)
    lines += [f"       finally: {said(a)}" for a in s.cleanup]
    return lines


# Indented for a handful of groups (people read those too); compact for fleets, where the C
# encoder (used only without indent) is several times faster.
INDENTED_UP_TO = 20


def render_json(plans: list[Plan]) -> str:
    return "".join(json_pieces(plans, len(plans)))


def pieces(
    plans: Iterable[Plan], wordings: Iterable[Wording], count: int, *, fmt: str, verbose: bool
) -> Iterator[str]:
    """What ``harestart plan`` prints for ``count`` plans (``fmt``: "json" or "text"), in
    pieces of a few plans each: with ``plans`` built lazily, a fleet's plans, their dicts and
    their text need not all be alive at once (10,000 groups are 94 MB of JSON). Joined, the
    pieces are exactly ``render_json`` of the list, or the texts separated by a blank line.

    Run it with the cyclic collector paused (``inventory.yamlsafe.collector_paused``): a plan
    makes no reference cycle, and the collections its many small objects trigger walked every
    live object again and again (2.4 s of a 10,000-group plan)."""
    if fmt == "json":
        parts = json_pieces(plans, count)
    else:
        texts = (render_text(p, w, verbose=verbose) for p, w in zip(plans, wordings, strict=True))
        parts = (("\n\n" if i else "") + text for i, text in enumerate(texts))
    batch: list[str] = []
    for part in parts:  # a write per plan cost a tenth of writing them (each write flushes)
        batch.append(part)
        if len(batch) == PLANS_PER_PIECE:
            yield "".join(batch)
            batch.clear()
    yield "".join(batch)


PLANS_PER_PIECE = 64


def json_pieces(plans: Iterable[Plan], count: int) -> Iterator[str]:
    """``json.dumps`` of the ``count`` plans as a list, in pieces (its ", " between items)."""
    if count <= INDENTED_UP_TO:
        yield json.dumps([p.to_dict() for p in plans], indent=2)
        return
    yield "["
    for i, p in enumerate(plans):
        yield (", " if i else "") + _COMPACT.encode(p.to_dict())
    yield "]"


# json.dumps' own encoder but for the check for circular references, which a plan's dict (a
# tree it just built) cannot have: the same text, an eighth faster.
_COMPACT = json.JSONEncoder(check_circular=False)
