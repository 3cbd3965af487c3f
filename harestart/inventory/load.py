"""Loading an inventory: ``load_inventory(path)`` validates it and resolves it into the models.

Validation is static (no network) and collects *every* problem in one pass, each with file,
line and field path. Reachability is preflight's job, and a password's environment variable is
only required when a run needs it (``Node.mysql_endpoint()``), not for ``plan``.

Layering: settings come from the file's ``defaults``, then the group, then the node; a node's
``address`` is the default host for both SSH and MySQL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from harestart.domain.endpoints import SshEndpoint
from harestart.domain.group import Group, Health, Mha, MysqlTarget, Node, PasswordSource
from harestart.domain.secret import Secret
from harestart.errors import InventoryError
from harestart.inventory.model import Inventory, did_you_mean
from harestart.inventory.schema import DefaultsSpec, GroupSpec, InventorySpec, NodeSpec
from harestart.inventory.yamlsafe import Located, YamlProblem, dotted, load_located

DEFAULT_RESTART_COMMAND = "systemctl restart mysql"

# --- loading ---------------------------------------------------------------------------------


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read, validate and resolve an inventory; raise InventoryError listing every problem."""
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
    return parse_inventory(text, shown, base_dir=p.resolve().parent)


def parse_inventory(text: str, shown: str, base_dir: Path | None = None) -> Inventory:
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
            problems.append((located.line_of(loc), _explain(err, loc)))
    problems.extend(_cross_checks(data, located))

    if problems:
        problems.sort(key=lambda pl: pl[0] or 0)
        raise InventoryError(shown, _dedupe([_at(shown, line, msg) for line, msg in problems]))
    assert spec is not None
    warnings = [_at(shown, line, msg) for line, msg in _warnings(data, located)]
    groups = tuple(_resolve_group(spec, g, base_dir or Path.cwd()) for g in spec.groups)
    return Inventory(path=shown, groups=groups, warnings=tuple(warnings))


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
    if kind in ("greater_than", "greater_than_equal") and loc:
        bound = "positive" if kind == "greater_than" else "zero or more"
        msg = f"must be {bound} (got {err['input']!r})"
    return f"{where}: {msg}"


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


def _cross_checks(data: dict[str, Any], located: Located) -> list[tuple[int | None, str]]:
    """Rules that span fields: unique group ids, each host once per group. Tolerates bad shapes."""
    out: list[tuple[int | None, str]] = []
    groups = data.get("groups")
    if not isinstance(groups, list):
        return out
    seen_ids: dict[str, int | None] = {}
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    for gi, group in enumerate(groups):
        if not isinstance(group, dict):
            out.append((located.line_of(("groups", gi)), f"groups[{gi}]: must be a mapping"))
            continue
        gid = group.get("id")
        if isinstance(gid, (str, int)):
            line = located.line_of(("groups", gi, "id"))
            if str(gid) in seen_ids:
                out.append(
                    (
                        line,
                        f"groups[{gi}].id: duplicate group id {gid!r} "
                        f"(first defined at line {seen_ids[str(gid)]})",
                    )
                )
            else:
                seen_ids[str(gid)] = line
        out.extend(_duplicate_hosts(gi, group, defaults or {}, located))
    return out


def _duplicate_hosts(
    gi: int, group: dict[str, Any], defaults: dict[str, Any], located: Located
) -> list[tuple[int | None, str]]:
    nodes: list[tuple[tuple[str | int, ...], dict[str, Any]]] = []
    if isinstance(group.get("source"), dict):
        nodes.append((("groups", gi, "source"), group["source"]))
    replicas = group.get("replicas")
    if isinstance(replicas, list):
        for ri, r in enumerate(replicas):
            if isinstance(r, dict):
                nodes.append((("groups", gi, "replicas", ri), r))
    names: dict[str, str] = {}
    ssh_eps: dict[tuple[str, int], str] = {}
    mysql_eps: dict[tuple[str, int], str] = {}
    out: list[tuple[int | None, str]] = []

    def layered(section: str, key: str, node: dict[str, Any]) -> Any:
        for layer in (node.get(section), group.get(section), defaults.get(section)):
            if isinstance(layer, dict) and layer.get(key) is not None:
                return layer[key]
        return None

    for loc, node in nodes:
        here = dotted(loc)
        name = node.get("name")
        if not isinstance(name, str):
            continue
        address = node.get("address") or name
        if name in names:
            out.append(
                (
                    located.line_of(loc),
                    f"{here}: host {name!r} is listed twice in the group (also {names[name]})",
                )
            )
            continue
        names[name] = here
        ssh_host = (
            (node.get("ssh") or {}).get("host") if isinstance(node.get("ssh"), dict) else None
        )
        ssh_ep = (str(ssh_host or address), _as_port(layered("ssh", "port", node), 22))
        mysql_host = (
            (node.get("mysql") or {}).get("host") if isinstance(node.get("mysql"), dict) else None
        )
        mysql_ep = (str(mysql_host or address), _as_port(layered("mysql", "port", node), 3306))
        if ssh_ep in ssh_eps:
            out.append(
                (
                    located.line_of(loc),
                    f"{here}: SSH endpoint {ssh_ep[0]}:{ssh_ep[1]} of "
                    f"{name!r} is the same as {ssh_eps[ssh_ep]}'s: the same host twice?",
                )
            )
        ssh_eps.setdefault(ssh_ep, name)
        if mysql_ep in mysql_eps:
            out.append(
                (
                    located.line_of(loc),
                    f"{here}: MySQL endpoint {mysql_ep[0]}:{mysql_ep[1]} "
                    f"of {name!r} is the same as {mysql_eps[mysql_ep]}'s: the same host twice?",
                )
            )
        mysql_eps.setdefault(mysql_ep, name)
    return out


def _as_port(value: Any, default: int) -> int:
    return value if isinstance(value, int) else default


def _warnings(data: dict[str, Any], located: Located) -> list[tuple[int | None, str]]:
    out: list[tuple[int | None, str]] = []

    def walk(value: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "password" and path and path[-1] == "mysql" and v is not None:
                    out.append(
                        (
                            located.line_of((*path, k)),
                            f"warning: {dotted((*path, k))}: "
                            "password given inline; prefer password_env or password_file",
                        )
                    )
                else:
                    walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    walk(data, ())
    return out


# --- resolution ------------------------------------------------------------------------------


def _merge(*layers: BaseModel | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update(dict(layer.model_dump(exclude_none=True).items()))
    return merged


def _path(value: str | None, base: Path) -> str | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p))


def _ssh_endpoint(layers: dict[str, Any], address: str, base: Path) -> SshEndpoint:
    jump = layers.get("jump")
    jump_ep = None
    if jump:
        jump_ep = SshEndpoint(
            host=jump["host"],
            port=jump.get("port", 22),
            user=jump.get("user") or layers.get("user", "root"),
            key_file=_path(jump.get("key_file") or layers.get("key_file"), base),
            use_agent=bool(layers.get("agent", False)),
            known_hosts=_path(layers.get("known_hosts"), base),
            accept_new_host_keys=bool(layers.get("accept_new_host_keys", False)),
            connect_timeout=float(layers.get("connect_timeout", 10.0)),
        )
    return SshEndpoint(
        host=layers.get("host") or address,
        port=layers.get("port", 22),
        user=layers.get("user", "root"),
        key_file=_path(layers.get("key_file"), base),
        use_agent=bool(layers.get("agent", False)),
        known_hosts=_path(layers.get("known_hosts"), base),
        accept_new_host_keys=bool(layers.get("accept_new_host_keys", False)),
        sudo=bool(layers.get("sudo", False)),
        connect_timeout=float(layers.get("connect_timeout", 10.0)),
        command_timeout=float(layers.get("command_timeout", 300.0)),
        jump=jump_ep,
    )


def _mysql_target(layers: dict[str, Any], address: str, base: Path) -> MysqlTarget:
    inline = layers.get("password")
    return MysqlTarget(
        host=layers.get("host") or address,
        port=layers.get("port", 3306),
        user=layers.get("user", "root"),
        password=PasswordSource(
            env=layers.get("password_env"),
            file=_path(layers.get("password_file"), base),
            inline=Secret(inline) if inline is not None else None,
        ),
        connect_timeout=float(layers.get("connect_timeout", 5.0)),
        tunnel=bool(layers.get("tunnel", False)),
    )


def _resolve_group(spec: InventorySpec, g: GroupSpec, base: Path) -> Group:
    d = spec.defaults or DefaultsSpec()

    def node(n: NodeSpec, role: Literal["source", "replica"]) -> Node:
        address = n.address or n.name
        return Node(
            name=n.name,
            role=role,
            ssh=_ssh_endpoint(_merge(d.ssh, g.ssh, n.ssh), address, base),
            mysql=_mysql_target(_merge(d.mysql, g.mysql, n.mysql), address, base),
            restart_command=n.restart_command
            or g.restart_command
            or d.restart_command
            or DEFAULT_RESTART_COMMAND,
        )

    m = g.mha
    manager = Node(
        name=m.manager.name,
        role="manager",
        ssh=_ssh_endpoint(
            _merge(d.ssh, g.ssh, m.manager.ssh), m.manager.address or m.manager.name, base
        ),
        mysql=None,
        restart_command=None,
    )
    app = Path(m.config).stem
    log = m.log or f"/var/log/mha/{app}/manager.log"
    health = _merge(d.health, g.health)
    return Group(
        id=g.id,
        account=g.account,
        name=g.name or g.id,
        source=node(g.source, "source"),
        replicas=tuple(node(r, "replica") for r in g.replicas),
        mha=Mha(
            manager=manager,
            config=m.config,
            log=log,
            stop_command=m.stop_command or f"masterha_stop --conf={m.config}",
            start_command=m.start_command
            or f"masterha_manager --conf={m.config} --ignore_last_failover",
            status_command=m.status_command or f"masterha_check_status --conf={m.config}",
        ),
        health=Health(**health),
    )
