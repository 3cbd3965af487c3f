"""Resolution: validated specs -> the frozen domain models, layering once, on typed values.

Every setting is the first one set in node -> group -> file ``defaults`` -> the built-in table
(``defaults.py``); a node's ``address`` (default: its name) is the default host for both
SSH and MySQL. ``merge`` layers whole sections field by field; ``first`` picks single values.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from pydantic import BaseModel

from harestart.domain.endpoints import SshEndpoint
from harestart.domain.flavor import Flavor
from harestart.domain.group import (
    CoordinationSettings,
    Group,
    Health,
    HookPoint,
    Hooks,
    Mha,
    MysqlTarget,
    Node,
    PasswordSource,
    Replication,
)
from harestart.domain.group import HookSpec as Hook
from harestart.domain.secret import Secret
from harestart.inventory.defaults import (
    COORDINATION_LEASE,
    HEALTH,
    HOOK_TIMEOUT,
    MYSQL,
    REPLICATION_USER,
    RESTART_COMMAND,
    SOURCE_STRATEGY,
    SSH,
    mha_defaults,
)
from harestart.inventory.schema import (
    CoordinationSpec,
    DefaultsSpec,
    GroupSpec,
    HealthSpec,
    HookEntry,
    HooksSpec,
    ManagerSpec,
    MhaSpec,
    MysqlSpec,
    NodeSpec,
    ReplicationSpec,
    SshSpec,
)

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T")
_Fields = dict[str, Any]  # an endpoint's fields but its host


def merge(*layers: S | None) -> S:
    """One spec of the layers' type, each field the first layer's that is set (most specific
    layer first). The layers were validated, so the result needs no validation again."""
    present = tuple(layer for layer in layers if layer is not None)
    if not present:
        raise ValueError("merge needs at least one layer")
    # Most nodes of a fleet share their layers: merge each distinct stack once (section specs
    # are frozen and hashable, so equal layers give an equal result).
    return cast(S, _merge(present))


@functools.lru_cache(maxsize=4096)
def _merge(present: tuple[BaseModel, ...]) -> BaseModel:
    kind = type(present[0])
    values = [layer.__dict__ for layer in present]
    fields = {}
    for name in kind.model_fields:
        for v in values:
            if v[name] is not None:
                fields[name] = v[name]
                break
    return kind.model_construct(**fields)


def first(*values: T | None) -> T:
    """The first value that is set; the defaults table sets every field that has a default."""
    for value in values:
        if value is not None:
            return value
    raise ValueError("no layer sets this value (the defaults table lacks it)")


def address(node: NodeSpec | ManagerSpec) -> str:
    return node.address or node.name


def _path(value: str | None, base: Path) -> str | None:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p))


def ssh_endpoint(layers: Sequence[SshSpec | None], address: str, base: Path) -> SshEndpoint:
    """The SSH endpoint of a host from its layers (most specific first)."""
    host, fields = _ssh_fields(layers, base)
    return SshEndpoint(host=host or address, **fields)


def _ssh_fields(layers: Sequence[SshSpec | None], base: Path) -> tuple[str | None, _Fields]:
    """The host the layers set (None: the node's address) and every other field."""
    s = merge(*layers, SSH)
    jump = None
    if s.jump is not None:
        j = s.jump
        jump = SshEndpoint(
            host=j.host,
            port=first(j.port, SSH.port),
            user=first(j.user, s.user),
            key_file=_path(j.key_file or s.key_file, base),
            use_agent=first(s.agent),
            known_hosts=_path(s.known_hosts, base),
            accept_new_host_keys=first(s.accept_new_host_keys),
            sudo=False,  # nothing runs on the bastion
            connect_timeout=first(s.connect_timeout),
            command_timeout=first(s.command_timeout),
            jump=None,
        )
    return s.host, {
        "port": first(s.port),
        "user": first(s.user),
        "key_file": _path(s.key_file, base),
        "use_agent": first(s.agent),
        "known_hosts": _path(s.known_hosts, base),
        "accept_new_host_keys": first(s.accept_new_host_keys),
        "sudo": first(s.sudo),
        "connect_timeout": first(s.connect_timeout),
        "command_timeout": first(s.command_timeout),
        "jump": jump,
    }


def mysql_target(layers: Sequence[MysqlSpec | None], address: str, base: Path) -> MysqlTarget:
    """Where and how to reach a node's mysqld from its layers (most specific first)."""
    host, fields = _mysql_fields(layers, base)
    return MysqlTarget(host=host or address, **fields)


def _mysql_fields(layers: Sequence[MysqlSpec | None], base: Path) -> tuple[str | None, _Fields]:
    m = merge(*layers, MYSQL)
    return m.host, {
        "port": first(m.port),
        "user": first(m.user),
        "password": PasswordSource(
            env=m.password_env,
            file=_path(m.password_file, base),
            inline=Secret(m.password) if m.password is not None else None,
        ),
        "connect_timeout": first(m.connect_timeout),
        "tunnel": first(m.tunnel),
    }


def coordination(spec: CoordinationSpec | None) -> CoordinationSettings | None:
    """``defaults.coordination``, resolved; None: the local lock."""
    if spec is None:
        return None
    return CoordinationSettings(
        url=spec.url,
        lease=first(spec.lease, COORDINATION_LEASE),
        password_env=spec.password_env,
    )


def hooks(layers: Sequence[HooksSpec | None], base: Path) -> Hooks:
    """A group's hooks: each point, ``env_passthrough`` and ``mode``, from the first layer that
    sets it (group, then defaults; a group's ``env_passthrough: []`` passes nothing more). The
    mode applies to every point of the group (default ``event``)."""
    present = [layer for layer in layers if layer is not None]
    if not present:
        return Hooks()
    h = merge(*present)

    mode = h.mode or "event"

    def hook(entry: HookEntry | None) -> Hook | None:
        if entry is None:
            return None
        if isinstance(entry, str):
            return Hook(command=entry, timeout=HOOK_TIMEOUT, cwd=str(base), mode=mode)
        return Hook(command=entry.command, timeout=first(entry.timeout, HOOK_TIMEOUT),
                    cwd=str(base), mode=mode)  # fmt: skip

    passthrough = tuple(dict.fromkeys(h.env_passthrough or ()))  # each name once, in order
    return Hooks(
        **{p.value: hook(getattr(h, p.value)) for p in HookPoint}, env_passthrough=passthrough
    )


class Resolver:
    """One inventory's layering (node -> group -> ``defaults`` -> the built-in table), each
    distinct stack of sections resolved once: a fleet's nodes share a few stacks, so a node
    costs a lookup and its own objects (the frozen settings shared by groups are one object).

    Stacks are told apart by the identity of their sections (validated, frozen); each cache
    entry keeps its sections alive, so an identity is never reused while the resolver lives.
    """

    def __init__(self, defaults: DefaultsSpec | None, base: Path) -> None:
        self.d = defaults or DefaultsSpec()
        self.base = base
        self.coordination = coordination(self.d.coordination)  # the file's, for every group
        self._stacks: dict[tuple[str, int, int], tuple[object, object, Any]] = {}

    def _once(self, kind: str, a: object, b: object, make: Callable[..., T], *args: Any) -> T:
        """``make(*args)`` for the stack of sections ``a`` and ``b`` (and the defaults')."""
        key = (kind, id(a), id(b))
        hit = self._stacks.get(key)
        if hit is None:
            hit = self._stacks[key] = (a, b, make(*args))
        return cast(T, hit[2])

    def group(self, g: GroupSpec) -> Group:
        d, base = self.d, self.base
        return Group(
            id=g.id,
            account=g.account,
            name=g.name or g.id,
            source=self._node(g, g.source, "source"),
            replicas=tuple(self._node(g, r, "replica") for r in g.replicas),
            mha=self._mha(g, g.mha),
            health=self._once("health", g.health, None, _health, g.health, d.health),
            coordination=self.coordination,
            hooks=self._once("hooks", g.hooks, None, hooks, (g.hooks, d.hooks), base),
            source_strategy=first(g.source_strategy, d.source_strategy, SOURCE_STRATEGY),
            candidate=g.candidate,
            replication=self._once(
                "replication", g.replication, None, replication, g.replication, d.replication, base
            ),
            flavor=_flavor(g.flavor or d.flavor),
        )

    def _ssh(self, n: NodeSpec | ManagerSpec, g: GroupSpec) -> SshEndpoint:
        layers = (n.ssh, g.ssh, self.d.ssh)
        host, fields = self._once("ssh", n.ssh, g.ssh, _ssh_fields, layers, self.base)
        return SshEndpoint(host=host or address(n), **fields)

    def _mysql(self, n: NodeSpec, g: GroupSpec) -> MysqlTarget:
        layers = (n.mysql, g.mysql, self.d.mysql)
        host, fields = self._once("mysql", n.mysql, g.mysql, _mysql_fields, layers, self.base)
        return MysqlTarget(host=host or address(n), **fields)

    def _node(self, g: GroupSpec, n: NodeSpec, role: Literal["source", "replica"]) -> Node:
        d = self.d
        return Node(
            name=n.name,
            role=role,
            ssh=self._ssh(n, g),
            mysql=self._mysql(n, g),
            restart_command=first(
                n.restart_command,
                g.restart_command,
                d.restart_command,
                RESTART_COMMAND,
            ),
            replication_host=n.replication_host,
            replication_port=n.replication_port,
        )

    def _mha(self, g: GroupSpec, m: MhaSpec) -> Mha:
        manager = Node(
            name=m.manager.name,
            role="manager",
            ssh=self._ssh(m.manager, g),
            mysql=None,
            restart_command=None,
        )
        md = mha_defaults(m.config)
        return Mha(
            manager=manager,
            config=m.config,
            log=first(m.log, md.log),
            stop_command=first(m.stop_command, md.stop_command),
            start_command=first(m.start_command, md.start_command),
            status_command=first(m.status_command, md.status_command),
        )


def _health(group: HealthSpec | None, defaults: HealthSpec | None) -> Health:
    h = merge(group, defaults, HEALTH)
    return Health(
        max_lag=first(h.max_lag),
        restart_timeout=first(h.restart_timeout),
        catchup_timeout=first(h.catchup_timeout),
        failover_timeout=first(h.failover_timeout),
        min_healthy_replicas=first(h.min_healthy_replicas),
    )


def _flavor(name: str | None) -> Flavor | None:
    return Flavor(name) if name is not None else None


def replication(
    group: ReplicationSpec | None, defaults: ReplicationSpec | None, base: Path
) -> Replication | None:
    """``replication:`` layered group -> defaults; None when neither says it."""
    if group is None and defaults is None:
        return None
    r = merge(group, defaults)
    return Replication(
        user=first(r.user, REPLICATION_USER),
        password=PasswordSource(
            env=r.password_env,
            file=_path(r.password_file, base),
            inline=Secret(r.password) if r.password is not None else None,
        ),
    )
