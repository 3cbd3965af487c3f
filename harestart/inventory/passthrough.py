"""``hooks.env_passthrough``: the names a hook may get from harestart's environment.

A hook runs with an allow-listed environment (``harestart.domain.hooks``); the inventory may
add names to it, never one that holds a secret. Refused at load, each with its file, line and
field: a name some ``password_env`` of the inventory names (MySQL, replication, coordination,
at any layer and in any group: a hook of one group has no business with another's password),
a name the caller says holds a secret (``serve --tokens-env``), and a name harestart sets for
each hook itself (it would be replaced, so listing it says something untrue).

Checked on the raw document, so a file with other problems still gets this one reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from harestart.domain.hooks import HOOK_VARIABLES, PROGRAM_VARIABLES
from harestart.inventory.yamlsafe import Located, dotted

Loc = tuple[str | int, ...]


def passthrough_problems(
    located: Located, secret_env: Mapping[str, str], password_envs: Iterable[tuple[Loc, Any]]
) -> list[tuple[int | None, str]]:
    """(line, message) for each ``env_passthrough`` entry that names a secret or a hook's own
    variable. ``secret_env``: more names holding secrets, each with what holds it there;
    ``password_envs``: every ``password_env`` key of the document, anywhere, with its value
    (``load.keys_in``: one walk of a fleet's document serves every such check)."""
    data = located.data
    named = {v: f"{dotted(loc)} names it" for loc, v in password_envs if isinstance(v, str)}
    secrets = {**named, **secret_env}
    out: list[tuple[int | None, str]] = []
    for loc, name in _entries(data):
        where = dotted(loc)
        if name in secrets:
            why = f"it holds a secret ({secrets[name]})"
        elif name in HOOK_VARIABLES or name in PROGRAM_VARIABLES:
            why = "harestart sets it for each hook itself"
        else:
            continue
        out.append((located.line_of(loc), f"{where}: {name} cannot be passed to hooks: {why}"))
    return out


def _entries(data: Any) -> Iterator[tuple[Loc, str]]:
    """Each name listed under ``defaults.hooks.env_passthrough`` and a group's."""
    if not isinstance(data, dict):
        return
    places: list[tuple[Loc, Any]] = [(("defaults",), data.get("defaults"))]
    groups = data.get("groups")
    if isinstance(groups, list):
        places += [(("groups", gi), g) for gi, g in enumerate(groups)]
    for loc, section in places:
        hooks = section.get("hooks") if isinstance(section, dict) else None
        names = hooks.get("env_passthrough") if isinstance(hooks, dict) else None
        if isinstance(names, list):
            for i, name in enumerate(names):
                if isinstance(name, str):
                    yield (*loc, "hooks", "env_passthrough", i), name
