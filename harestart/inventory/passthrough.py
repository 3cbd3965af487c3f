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

from collections.abc import Iterator, Mapping
from typing import Any

from harestart.domain.hooks import HOOK_VARIABLES, PROGRAM_VARIABLES
from harestart.inventory.yamlsafe import Located, dotted

Loc = tuple[str | int, ...]


def passthrough_problems(
    located: Located, secret_env: Mapping[str, str]
) -> list[tuple[int | None, str]]:
    """(line, message) for each ``env_passthrough`` entry that names a secret or a hook's own
    variable. ``secret_env``: more names holding secrets, each with what holds it there."""
    data = located.data
    secrets = {**dict(_password_envs(data, ())), **secret_env}
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


def _password_envs(value: Any, path: Loc) -> Iterator[tuple[str, str]]:
    """(variable, "<field> names it") for every ``password_env`` string anywhere in the file."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "password_env" and isinstance(v, str):
                yield v, f"{dotted((*path, k))} names it"
            else:
                yield from _password_envs(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _password_envs(v, (*path, i))


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
