"""Loading an inventory: ``load_inventory(path)`` validates it and resolves it into the models.

Validation is static (no network) and collects *every* problem in one pass, each with file,
line and field path. Reachability is preflight's job, and a password's environment variable is
only required when a run needs it (``credentials.mysql_endpoint(node)``), not for ``plan``.

Layering (once, on the validated models) is ``resolve.py``'s; every default is in
``defaults.py``. The cross-checks (each host once per group) use that same layering, and so
does ``needs.py`` (what a group's strategy and the coordination service need).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError

from harestart.domain.group import Group
from harestart.errors import InventoryError
from harestart.inventory.model import Inventory, did_you_mean
from harestart.inventory.needs import load_problems
from harestart.inventory.passthrough import passthrough_problems
from harestart.inventory.resolve import Resolver, address, mysql_target, ssh_endpoint
from harestart.inventory.schema import DefaultsSpec, InventorySpec, MysqlSpec, NodeSpec, SshSpec
from harestart.inventory.yamlsafe import (
    Located,
    YamlProblem,
    collector_paused,
    dotted,
    load_located,
)

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]

# --- loading ---------------------------------------------------------------------------------


def load_inventory(
    path: str | os.PathLike[str], *, secret_env: Mapping[str, str] | None = None
) -> Inventory:
    """Read, validate and resolve an inventory; raise InventoryError listing every problem.

    ``secret_env``: environment variables that hold a secret besides the inventory's own
    ``password_env`` ones (name -> what holds it, e.g. ``serve --tokens-env``): no hook may
    get them (``hooks.env_passthrough``)."""
    p = Path(path)
    shown = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(shown, ["file not found"]) from None
    except IsADirectoryError:
        raise InventoryError(shown, ["is a directory, not an inventory file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(shown, [f"cannot read: {exc}"]) from None
    return parse_inventory(text, shown, base_dir=p.resolve().parent, secret_env=secret_env)


def parse_inventory(
    text: str,
    shown: str,
    base_dir: Path | None = None,
    *,
    secret_env: Mapping[str, str] | None = None,
) -> Inventory:
    with collector_paused():  # a fleet's inventory makes many objects at once: see there
        return _parse_inventory(text, shown, base_dir, secret_env or {})


def _parse_inventory(
    text: str, shown: str, base_dir: Path | None, secret_env: Mapping[str, str]
) -> Inventory:
    try:
        located = load_located(text)
    except YamlProblem as exc:
        raise InventoryError(shown, [_at(shown, exc.line, exc.message)]) from None

    problems: list[tuple[int | None, str]] = list(located.problems)
    data = located.data
    if not isinstance(data, dict):
        raise InventoryError(
            shown, [_at(shown, 1, "the top level must be a mapping with a 'groups' list")]
        )

    spec: InventorySpec | None = None
    try:
        spec = InventorySpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message = _explain(err, loc)
            if err["type"] == "value_error":  # a refused string: say whose it is, by name
                message += _owner(data, loc)
            problems.append((located.line_of(loc), message))
    base = base_dir or Path.cwd()
    groups: tuple[Group, ...] = ()
    hosts: Iterable[Iterable[_Host]]
    if spec is not None:
        resolver = Resolver(spec.defaults, base)
        groups = tuple(resolver.group(g) for g in spec.groups)
        hosts = (_resolved_hosts(gi, g) for gi, g in enumerate(groups))
        problems.extend(load_problems(spec, groups, located))  # what strategies etc. need
    else:  # the valid parts of each group, layered by the same resolver
        hosts = _tolerant_hosts(data, base)
    problems.extend(_duplicate_ids(data, located))
    found = keys_in(data, ("password", "password_env"))
    problems.extend(passthrough_problems(located, secret_env, found["password_env"]))
    for group_hosts in hosts:
        problems.extend(_duplicate_hosts(group_hosts, located))

    if problems:
        problems.sort(key=lambda pl: pl[0] or 0)
        raise InventoryError(shown, _dedupe([_at(shown, line, msg) for line, msg in problems]))
    warnings = [_at(shown, line, msg) for line, msg in _warnings(found["password"], located)]
    return Inventory(path=shown, groups=groups, warnings=tuple(warnings))


def _owner(data: dict[str, Any], loc: tuple[str | int, ...]) -> str:
    """`` (group 'lab', node 'db2')`` for a field of a group (and of one of its nodes), by the
    names the file gives them; nothing where a name is missing or not a string."""
    if len(loc) < 3 or loc[0] != "groups" or not isinstance(loc[1], int):
        return ""
    groups = data.get("groups")
    group = groups[loc[1]] if isinstance(groups, list) and loc[1] < len(groups) else None
    if not isinstance(group, dict) or not isinstance(group.get("id"), str):
        return ""
    node: object = None
    if loc[2] == "source":
        node = group.get("source")
    elif loc[2] == "replicas" and len(loc) > 3 and isinstance(loc[3], int):
        replicas = group.get("replicas")
        node = replicas[loc[3]] if isinstance(replicas, list) and loc[3] < len(replicas) else None
    name = node.get("name") if isinstance(node, dict) else None
    node_part = f", node {_clip(name)}" if isinstance(name, str) else ""
    return f" (group {_clip(group['id'])}{node_part})"


def _clip(value: str) -> str:
    return repr(value) if len(value) <= 80 else f"{value[:80]!r}..."


def _at(shown: str, line: int | None, message: str) -> str:
    return f"{shown}:{line}: {message}" if line else f"{shown}: {message}"


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _explain(err: Mapping[str, Any], loc: tuple[str | int, ...]) -> str:
    kind = err["type"]
    where = dotted(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, _fields_at(loc[:-1]))
        return f"{where}: unknown key {key!r}{hint}"
    if kind == "missing":
        return f"{where}: required but missing"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "too_short" and loc and loc[-1] == "replicas":
        msg = "a group needs at least one replica"
    if kind == "too_short" and loc and loc[-1] == "groups":
        msg = "the inventory needs at least one group"
    if kind == "literal_error" and loc == ("version",):
        msg = "only inventory format version 1 is known"
    got = _shown(err.get("input"), loc)
    if kind in ("greater_than", "greater_than_equal") and loc:
        bound = "positive" if kind == "greater_than" else "zero or more"
        msg = f"must be {bound}{got}"
    if kind == "less_than_equal":
        msg = f"must be at most {err['ctx']['le']}{got}"
    if kind == "finite_number":
        msg = f"must be a finite number{got}"
    if kind in _TYPE_MESSAGES:
        msg = _TYPE_MESSAGES[kind] + got
        if kind == "string_type" and isinstance(err.get("input"), int | float):
            msg += "; quote it to mean text"
    return f"{where}: {msg}"


# Strict types: what each refused coercion is told (the value follows, unless it is secret).
_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
}

_SECRET_KEYS = frozenset({"password"})


def _shown(value: Any, loc: tuple[str | int, ...]) -> str:
    """`` (got 22.0)`` with the value as YAML writes it; nothing for a secret or a collection."""
    if loc and loc[-1] in _SECRET_KEYS:
        return ""
    if isinstance(value, dict):
        return " (got a mapping)"
    if isinstance(value, list):
        return " (got a list)"
    if isinstance(value, float) and not math.isfinite(value):
        return " (got .nan)" if math.isnan(value) else f" (got {'-' if value < 0 else ''}.inf)"
    if value is None or isinstance(value, bool | int | float | str):
        return f" (got {json.dumps(value)})"
    return f" (got {type(value).__name__} {value})"


def _fields_at(loc: Sequence[str | int]) -> list[str]:
    """Field names of the model that sits at ``loc`` in the schema (for 'did you mean')."""
    model: Any = InventorySpec
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _unwrap(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is None:
            return annotation
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin is Annotated:
            annotation = args[0]
        elif args:
            annotation = next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0]
            )
        else:
            return annotation


def _duplicate_ids(data: dict[str, Any], located: Located) -> list[tuple[int | None, str]]:
    """Each group id once (on the raw data: reported together with any other problem)."""
    out: list[tuple[int | None, str]] = []
    groups = data.get("groups")
    if not isinstance(groups, list):
        return out
    seen_ids: dict[str, int] = {}  # id -> the index of the group that defined it first
    for gi, group in enumerate(groups):
        if not isinstance(group, dict):
            out.append((located.line_of(("groups", gi)), f"groups[{gi}]: must be a mapping"))
            continue
        gid = group.get("id")
        if isinstance(gid, str):
            if gid in seen_ids:  # lines looked up only now (a walk of the document each)
                first = located.line_of(("groups", seen_ids[gid], "id"))
                out.append(
                    (
                        located.line_of(("groups", gi, "id")),
                        f"groups[{gi}].id: duplicate group id {gid!r} "
                        f"(first defined at line {first})",
                    )
                )
            else:
                seen_ids[gid] = gi
    return out


class _Host(NamedTuple):
    """What identifies one database host of a group, for the each-host-once check."""

    loc: tuple[str | int, ...]
    name: str
    ssh: tuple[str, int] | None  # None: its settings are invalid (already reported)
    mysql: tuple[str, int] | None


def _resolved_hosts(gi: int, group: Group) -> Iterator[_Host]:
    for ri, n in enumerate((group.source, *group.replicas)):
        loc: tuple[str | int, ...] = (
            ("groups", gi, "source") if ri == 0 else ("groups", gi, "replicas", ri - 1)
        )
        mysql = (n.mysql.host, n.mysql.port) if n.mysql else None
        yield _Host(loc, n.name, (n.ssh.host, n.ssh.port), mysql)


def _tolerant_hosts(data: dict[str, Any], base: Path) -> list[list[_Host]]:
    """The hosts of every group of a file that did not validate, from its valid parts."""
    groups = data.get("groups")
    if not isinstance(groups, list):
        return []
    defaults = _tolerant(DefaultsSpec, data.get("defaults"))
    d_ssh = defaults.ssh if defaults else None
    d_mysql = defaults.mysql if defaults else None
    out = []
    for gi, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        raw_nodes: list[tuple[tuple[str | int, ...], object]] = [
            (("groups", gi, "source"), group.get("source"))
        ]
        replicas = group.get("replicas")
        if isinstance(replicas, list):
            raw_nodes += [(("groups", gi, "replicas", ri), r) for ri, r in enumerate(replicas)]
        g_ssh = _tolerant(SshSpec, group.get("ssh"))
        g_mysql = _tolerant(MysqlSpec, group.get("mysql"))
        hosts = []
        for loc, raw in raw_nodes:
            name = raw.get("name") if isinstance(raw, dict) else None
            if not isinstance(name, str):
                continue
            node = _tolerant(NodeSpec, raw)
            if node is None:
                hosts.append(_Host(loc, name, None, None))
                continue
            ssh = ssh_endpoint((node.ssh, g_ssh, d_ssh), address(node), base)
            mysql = mysql_target((node.mysql, g_mysql, d_mysql), address(node), base)
            hosts.append(_Host(loc, name, (ssh.host, ssh.port), (mysql.host, mysql.port)))
        out.append(hosts)
    return out


def _tolerant(model: type[M], raw: object) -> M | None:
    """``raw`` validated as ``model``; when some keys are wrong (already reported), without those
    keys; None when that is still not valid or ``raw`` is no mapping."""
    if not isinstance(raw, dict):
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
    try:
        return model.model_validate({k: v for k, v in raw.items() if k not in bad})
    except ValidationError:
        return None


def _duplicate_hosts(hosts: Iterable[_Host], located: Located) -> list[tuple[int | None, str]]:
    """The same host twice in a group: by name, or by its resolved SSH or MySQL endpoint."""
    names: dict[str, Loc] = {}  # where each name was first seen (said only in a message)
    ssh_eps: dict[tuple[str, int], str] = {}
    mysql_eps: dict[tuple[str, int], str] = {}
    out: list[tuple[int | None, str]] = []
    for h in hosts:
        if h.name in names:
            here, also = dotted(h.loc), dotted(names[h.name])
            out.append(
                (
                    located.line_of(h.loc),
                    f"{here}: host {h.name!r} is listed twice in the group (also {also})",
                )
            )
            continue
        names[h.name] = h.loc
        for kind, endpoint, seen in (("SSH", h.ssh, ssh_eps), ("MySQL", h.mysql, mysql_eps)):
            if endpoint is None:
                continue
            if endpoint in seen:
                out.append(
                    (
                        located.line_of(h.loc),
                        f"{dotted(h.loc)}: {kind} endpoint {endpoint[0]}:{endpoint[1]} of "
                        f"{h.name!r} is the same as {seen[endpoint]}'s: the same host twice?",
                    )
                )
            seen.setdefault(endpoint, h.name)
    return out


def _warnings(passwords: list[tuple[Loc, Any]], located: Located) -> list[tuple[int | None, str]]:
    """A MySQL password given inline (``password:`` set under a ``mysql`` mapping)."""
    return [
        (
            located.line_of(loc),
            f"warning: {dotted(loc)}: password given inline; prefer password_env or password_file",
        )
        for loc, value in passwords
        if len(loc) > 1 and loc[-2] == "mysql" and value is not None
    ]


def keys_in(data: Any, keys: Iterable[str]) -> dict[str, list[tuple[Loc, Any]]]:
    """Where each of ``keys`` is a mapping key anywhere in ``data``, in document order, with
    its value: one walk of the raw document for every check that looks for a key anywhere."""
    found: dict[str, list[tuple[Loc, Any]]] = {k: [] for k in keys}
    _keys_in(data, (), found)
    return found


def _keys_in(value: Any, path: Loc, found: dict[str, list[tuple[Loc, Any]]]) -> None:
    """Module-level, called for collections only: a nested recursive function would be a
    reference cycle holding the whole document, and a call per scalar or a generator per level
    cost a tenth of loading a fleet."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k in found:
                found[k].append(((*path, k), v))
            if isinstance(v, dict | list):
                _keys_in(v, (*path, k), found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if isinstance(v, dict | list):
                _keys_in(v, (*path, i), found)
