"""What a source strategy and a coordination setting need from the inventory. Static.

Checked when the inventory is loaded (``load.py``: each group's own strategy, the coordination
service's files), so ``plan``, ``run`` and ``serve`` refuse the same file with the same line
(file, line, key, group, what is missing), exit 2; and again for a strategy chosen on the
command line (``require_strategy``), with the same words. Nothing here reads the network or
the environment: whether a password's variable is set is asked when a run needs it
(``credentials.require_run_passwords``). The shape of the coordination URL (its scheme, no
password in it) is the schema's (``schema._coordination_url``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.switch import SourceStrategy
from harestart.errors import InventoryError
from harestart.inventory.schema import InventorySpec
from harestart.inventory.yamlsafe import Located, dotted

REPLICATION_EXAMPLE = "`replication: {user: repl, password_env: NAME}` (or password_file)"

# Query options of a coordination URL that name a file the driver opens (etcd3gw's TLS).
COORDINATION_FILES = ("ca_cert", "cert_cert", "cert_key")


def strategy_needs(group: Group, strategy: SourceStrategy) -> list[str]:
    """What ``strategy`` needs that ``group`` lacks, one sentence each ([]: nothing)."""
    if strategy is not SourceStrategy.SWITCHOVER:
        return []
    if group.replication is None:
        return [
            "the switchover strategy needs the replication account (the one replicas connect "
            f"with, re-pointed by the switch): {REPLICATION_EXAMPLE} under defaults or the group"
        ]
    password = group.replication.password
    if password.env is None and password.file is None and password.inline is None:
        return [
            "the switchover strategy needs the replication account's password: "
            "`replication.password_env: NAME` (or password_file) under defaults or the group"
        ]
    return []


def coordination_needs(settings: CoordinationSettings) -> list[str]:
    """The files the coordination URL names (``?ca_cert=/etc/ssl/etcd-ca.pem``...) that this
    machine lacks, one sentence each: absolute paths (the driver opens them as given, not
    relative to the inventory) of files that exist."""
    out = []
    for key, value in parse_qsl(urlsplit(settings.url).query):
        if key not in COORDINATION_FILES:
            continue
        path = Path(value)
        if not path.is_absolute():
            out.append(f"{key}={value}: give the file's absolute path")
        elif not path.is_file():
            out.append(f"{key}={value}: no such file")
    return out


def load_problems(
    spec: InventorySpec, groups: tuple[Group, ...], located: Located
) -> list[tuple[int | None, str]]:
    """(line, message) for each need of a group's strategy or of the coordination service
    that the inventory does not meet, at the key that asks for it."""
    out: list[tuple[int | None, str]] = []
    for gi, (g_spec, g) in enumerate(zip(spec.groups, groups, strict=True)):
        loc: tuple[str | int, ...] = (
            ("groups", gi, "source_strategy")
            if g_spec.source_strategy
            else ("defaults", "source_strategy")
        )
        for need in strategy_needs(g, SourceStrategy(g.source_strategy)):
            out.append((located.line_of(loc), f"{dotted(loc)} (group {g.id!r}): {need}"))
    coordination = groups[0].coordination if groups else None  # the file's, the same for all
    if coordination is not None:
        loc = ("defaults", "coordination", "url")
        out += [
            (located.line_of(loc), f"{dotted(loc)}: {n}") for n in coordination_needs(coordination)
        ]
    return out


def require_strategy(path: str, groups: Iterable[Group], chosen: SourceStrategy | None) -> None:
    """Refuse (InventoryError, exit 2) a strategy a group lacks what for: ``chosen`` on the
    command line (``--source-strategy``), else each group's own (refused at load already when
    the groups come from ``load_inventory``)."""
    problems = []
    for g in groups:
        strategy = chosen or SourceStrategy(g.source_strategy)
        where = f"--source-strategy {strategy.value}" if chosen else "source_strategy"
        problems += [f"{path}: {where} (group {g.id!r}): {n}" for n in strategy_needs(g, strategy)]
    if problems:
        raise InventoryError(path, problems)
