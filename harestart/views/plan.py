"""A plan for people (text) and for tools (JSON)."""

from __future__ import annotations

import json

from harestart.domain.plan.model import Plan


def render_text(plan: Plan) -> str:
    """Every step with every gate (``gate:``) and every action (``do:``) in the order the run
    evaluates and sends them, and what each step does at its end whatever happened
    (``finally:``). Statements and commands are quoted in backticks, exactly as sent."""
    lines = [f"Plan for group {plan.group} (account {plan.account}): {len(plan.steps)} steps"]
    for note in plan.notes:
        lines.append(f"  observed: {note}")
    for s in plan.steps:
        lines.append(f"{s.number:>3}. [{s.action.value}] {s.summary}")
        lines += [f"       gate: {g.describe()}" for g in s.before]
        for a in s.actions:
            lines.append(f"       do: {a.describe()}")
            lines += [f"       gate: {g.describe()}" for g in a.then]
        lines += [f"       gate: {g.describe()}" for g in s.after]
        for a in s.closing:
            lines.append(f"       do: {a.describe()}")
            lines += [f"       gate: {g.describe()}" for g in a.then]
        lines += [f"       finally: {a.describe()}" for a in s.cleanup]
    return "\n".join(lines)


def render_json(plans: list[Plan]) -> str:
    # Indented for a handful of groups (people read those too); compact for fleets, where the
    # C encoder (used only without indent) keeps `plan` of 1,000 groups well under a second.
    indent = 2 if len(plans) <= 20 else None
    return json.dumps([p.to_dict() for p in plans], indent=indent)
