"""Hooks: commands the inventory names, run on the bastion at named points of a run. Pure.

A hook is how a user drains a node from a proxy before it restarts, puts it back after, or
moves a VIP around a switchover. Each is a ``RunHook`` action of the plan (``harestart plan``
prints it); ``harestart.adapters.hooks`` runs it with ``/bin/sh -c`` in the inventory file's
directory, stdin closed, output captured, within its timeout, and with the environment built
here. A hook that fails or times out fails its step like any failed gate.

With ``hooks.mode: persistent`` each of these actions is an event sent to a program started
once per run instead (``harestart.domain.hook_protocol``): ``hook_event`` holds the same facts
as the variables below, and the program's environment (``program_environment``) is the same
allow-list with ``HARESTART_HOOK_MODE=persistent`` and none of the per-event variables.

A hook's environment is an allow-list, never harestart's whole environment (which holds every
``password_env`` variable, the API tokens, the coordination password): its own ``HARESTART_*``
variables, ``PATH``, ``HOME``, ``LANG``, ``LC_*``, ``TZ``, and the names the group lists under
``hooks.env_passthrough`` (the inventory refuses a name that holds a secret there).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from harestart.domain.actions import PlanAction, quoted
from harestart.domain.dialect import Dialect
from harestart.domain.group import Group, HookPoint, HookSpec, Role, Strategy
from harestart.domain.hook_protocol import EventOutcome

OUTPUT_TAIL_BYTES = 4096  # how much of a failed hook's output is reported (its end)

# What a hook inherits from harestart's environment besides its env_passthrough: these names
# and every name starting with one of INHERITED_PREFIXES (the locale's LC_ALL, LC_CTYPE, ...).
INHERITED_NAMES = frozenset({"PATH", "HOME", "LANG", "TZ"})
INHERITED_PREFIXES = ("LC_",)
# The variables harestart sets for each hook (hook_variables); they replace any inherited ones.
HOOK_VARIABLES = (
    "HARESTART_HOOK",
    "HARESTART_ACCOUNT",
    "HARESTART_GROUP",
    "HARESTART_RUN_ID",
    "HARESTART_NODE",
    "HARESTART_NODE_HOST",
    "HARESTART_ROLE",
    "HARESTART_OLD_SOURCE",
    "HARESTART_NEW_SOURCE",
    "HARESTART_STRATEGY",
)
# What a persistent program gets instead (its events carry the rest); also never passed through.
PROGRAM_VARIABLES = ("HARESTART_HOOK_MODE",)


@dataclass(frozen=True, kw_only=True)
class RunHook(PlanAction):
    """Run a hook on the bastion; ``host`` is the node it is about (for the switch hooks, the
    old source)."""

    point: HookPoint
    hook: HookSpec
    role: Role  # the node's role at that moment
    old_source: str
    new_source: str
    strategy: Strategy = "restart"
    env_passthrough: tuple[str, ...] = ()  # names (never values) it gets beyond the allow-list

    def statements(self) -> tuple[str, ...]:
        return (self.hook.command,)

    def describe(self, wording: Dialect | None = None, *, brief: bool = False) -> str:
        """The same for every server (a hook runs on the bastion)."""
        command, timeout = quoted(self.hook.command), self.hook.timeout
        passes = f"; passes {', '.join(self.env_passthrough)}" if self.env_passthrough else ""
        if self.hook.persistent:
            what = f"event sent to the persistent program {command}"
            text = f"hook {self.point.value}: {what} (answer within {timeout:g} s{passes})"
        else:
            text = f"hook {self.point.value}: {command} (timeout {timeout:g} s{passes})"
        return f"{text} (only if {self.when})" if self.when else text

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(point=self.point.value, command=self.hook.command, timeout_s=self.hook.timeout)
        if self.hook.persistent:  # the per-event mode's JSON stays as it was
            d["mode"] = self.hook.mode
        if self.env_passthrough:
            d["env_passthrough"] = list(self.env_passthrough)
        d["runs_on"] = "bastion"
        return d


def node_hook(
    group: Group,
    point: HookPoint,
    name: str,
    *,
    source: str | None = None,
    strategy: Strategy = "restart",
) -> RunHook | None:
    """The ``before_node_restart``/``after_node_restart`` action for node ``name`` (None: no
    hook at that point). ``source``: the group's source at that moment (default the
    inventory's; a switchover restarts the old source while the candidate is the source)."""
    spec = group.hooks.at(point)
    if spec is None:
        return None
    group.node(name)  # a node of the group (KeyError otherwise)
    current = source or group.source.name
    role: Role = "source" if name == current else "replica"
    return RunHook(host=name, point=point, hook=spec, role=role, old_source=current,
                   new_source=current, strategy=strategy,
                   env_passthrough=group.hooks.env_passthrough)  # fmt: skip


def node_hooks(
    group: Group, name: str, *, source: str | None = None, strategy: Strategy = "restart"
) -> tuple[tuple[RunHook, ...], tuple[RunHook, ...]]:
    """The hooks around node ``name``'s restart: (before it, after its checks passed)."""
    hooks = group.hooks
    if hooks.before_node_restart is None and hooks.after_node_restart is None:
        return (), ()  # most groups of a fleet: asked for each of their nodes
    before = node_hook(group, HookPoint.BEFORE_NODE_RESTART, name, source=source, strategy=strategy)
    after = node_hook(group, HookPoint.AFTER_NODE_RESTART, name, source=source, strategy=strategy)
    return tuple(h for h in (before,) if h), tuple(h for h in (after,) if h)


def switch_hook(group: Group, point: HookPoint, old_source: str, new_source: str) -> RunHook | None:
    """The ``before_switch``/``after_switch`` action of a switchover from ``old_source`` to
    ``new_source`` (None: no hook there). The hook is about the old source: a source before the
    switch, a replica after it."""
    if point not in (HookPoint.BEFORE_SWITCH, HookPoint.AFTER_SWITCH):
        raise ValueError(f"{point.value} is not a switch hook point")
    spec = group.hooks.at(point)
    if spec is None:
        return None
    role: Role = "source" if point is HookPoint.BEFORE_SWITCH else "replica"
    return RunHook(
        host=old_source,
        point=point,
        hook=spec,
        role=role,
        old_source=old_source,
        new_source=new_source,
        strategy="switchover",
        env_passthrough=group.hooks.env_passthrough,
    )


def inherited(name: str, passthrough: Collection[str]) -> bool:
    """Whether a hook gets variable ``name`` of harestart's environment."""
    return name in INHERITED_NAMES or name.startswith(INHERITED_PREFIXES) or name in passthrough


def hook_environment(
    group: Group, act: RunHook, run_id: str, environ: Mapping[str, str]
) -> dict[str, str]:
    """A hook's whole environment: the allowed part of ``environ`` (harestart's own, given by
    the caller), then the hook's ``HARESTART_*`` variables over it."""
    env = {k: v for k, v in environ.items() if inherited(k, act.env_passthrough)}
    env.update(hook_variables(group, act, run_id))
    return env


def program_environment(act: RunHook, environ: Mapping[str, str]) -> dict[str, str]:
    """A persistent program's whole environment: the allowed part of ``environ`` and
    ``HARESTART_HOOK_MODE=persistent`` (the per-event variables come as its events)."""
    env = {k: v for k, v in environ.items() if inherited(k, act.env_passthrough)}
    env.update(HARESTART_HOOK_MODE="persistent")
    return env


def hook_event(group: Group, act: RunHook, run_id: str) -> dict[str, str]:
    """The event a persistent program gets: ``hook_variables``' facts under the names of the
    protocol (``HARESTART_HOOK`` -> ``point``, ``HARESTART_NODE_HOST`` -> ``node_host``...)."""
    return {
        "point" if name == "HARESTART_HOOK" else name.removeprefix("HARESTART_").lower(): value
        for name, value in hook_variables(group, act, run_id).items()
    }


def hook_variables(group: Group, act: RunHook, run_id: str) -> dict[str, str]:
    """The variables harestart sets for each hook (``HOOK_VARIABLES``)."""
    node = group.node(act.host)
    return {
        "HARESTART_HOOK": act.point.value,
        "HARESTART_ACCOUNT": group.account,
        "HARESTART_GROUP": group.id,
        "HARESTART_RUN_ID": run_id,
        "HARESTART_NODE": node.name,
        "HARESTART_NODE_HOST": node.mysql.host if node.mysql is not None else node.ssh.host,
        "HARESTART_ROLE": act.role,
        "HARESTART_OLD_SOURCE": act.old_source,
        "HARESTART_NEW_SOURCE": act.new_source,
        "HARESTART_STRATEGY": act.strategy,
    }


@dataclass(frozen=True)
class HookOutcome:
    """One finished hook. ``exit_status`` is None when it timed out (its process group was
    killed); ``output`` is the end of its stdout and stderr together (at most
    ``OUTPUT_TAIL_BYTES``, decoded), never scrubbed here."""

    command: str
    exit_status: int | None
    duration_s: float
    output: str
    timeout: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def timed_out(self) -> bool:
        return self.exit_status is None

    def status_text(self) -> str:
        if self.exit_status is None:
            return f"timed out after {self.timeout:g} s (killed)"
        return f"exited {self.exit_status} after {self.duration_s:.1f} s"


def hook_failure(act: RunHook, outcome: HookOutcome | EventOutcome, output: str) -> str:
    """Why the step failed, in one message: point, node, how it ended, its output's end
    (``output``: already scrubbed of secrets; a persistent program's stderr since its previous
    answer)."""
    persistent = isinstance(outcome, EventOutcome)
    kind = "stderr" if persistent else "output"
    lines = output.rstrip().splitlines()
    tail = "".join(f"\n  | {line}" for line in lines)
    shown = (
        f"; {kind} (its last {OUTPUT_TAIL_BYTES} bytes at most):{tail}" if lines else f"; no {kind}"
    )
    what = (
        f"the persistent program {quoted(act.hook.command)}"
        if persistent
        else quoted(act.hook.command)
    )
    return f"hook {act.point.value} for {act.host} failed: {what} {outcome.status_text()}{shown}"
