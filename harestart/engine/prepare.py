"""Everything checked before a run changes anything: ``harestart run``/``resume``, ``POST
.../action`` and fleet mode all begin with ``prepare``, then hand its result to
``engine.execute``.

``prepare`` first checks what the run needs (``check_needs``: what the chosen strategy needs,
every MySQL password and the switchover's replication password, a hook runner for a group with
hooks; exit 2), decides once whether the groups are shared with other bastions (fleet mode:
each group is then checked when this bastion takes it, under its lock), then checks each group
in the judge's order (``domain/judge.py``), so that a refusal names its first cause:

1. a live run holds the group (LockHeld, exit 4), before any host is contacted;
2. the journal cannot be used (exit 2);
3. an unfinished run, in this state directory or on another bastion (the coordination
   service's unfinished mark): exit 2, naming the run, its bastion and state directory and the
   ``harestart resume`` to run there. A group a run left half-done (MHA off, replicas' IO
   threads stopped) is not refused for its health: that is the run's doing;
4. a stale lock (exit 4, unless ``--break-lock``);
5. the group's health: its hosts observed once (PreflightRefused, exit 3). A resume is judged
   by its executor against the journal instead.

Each group's plan is built once and its coordination backend opened once (kept open for its
run, closed by ``Prepared.release``/``close``). Nothing here changes anything: ``execute``
takes the lock, and re-checks under it what another run may have changed meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

import structlog

from harestart.domain.group import Group, HookPoint
from harestart.domain.judge import preflight_problems
from harestart.domain.observation import GroupState
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Plan, PlanOptions
from harestart.engine.coordination import Coordination
from harestart.engine.run import Environment, RunRequest, check_journal, observe
from harestart.errors import HarestartError, PreflightRefused, UsageError
from harestart.inventory.credentials import mysql_endpoint, require_replication_passwords
from harestart.inventory.needs import require_strategy

log = structlog.get_logger("harestart.engine.prepare")

__all__ = [
    "Prepared",
    "Ready",
    "Refusal",
    "available_passwords",
    "check_needs",
    "fleet_mode",
    "prepare",
]


@dataclass(frozen=True)
class Refusal:
    """A group whose run was refused before anything changed (or stopped by an error)."""

    group: Group
    error: HarestartError


@dataclass(frozen=True)
class Ready:
    """A group that may run: its plan (built once; a new run's annotated with what the probe
    found), the probe and the clock's reading when it was taken (None: a resume, judged by its
    executor against the journal), and its coordination backend (opened once)."""

    group: Group
    plan: Plan
    coord: Coordination
    observed: GroupState | None = None
    observed_at: float | None = None


@dataclass
class Prepared:
    """What ``prepare`` found, for ``execute``: the groups ready to run and the refusals (in
    the order the groups were given), and whether the groups are a fleet's."""

    groups: tuple[Group, ...]
    request: RunRequest
    env: Environment
    resume: bool
    fleet: bool
    ready: tuple[Ready, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    _open: dict[tuple[str, str], Coordination] = field(default_factory=dict, repr=False)

    @property
    def plans(self) -> list[Plan]:
        """The plans to show before confirming: a new run's (a resume's plan is its journal)."""
        return [] if self.resume else [r.plan for r in self.ready]

    def release(self, group: Group) -> None:
        """Close ``group``'s backend (its run ended); no error when it was closed already."""
        coord = self._open.pop((group.account, group.id), None)
        if coord is not None:
            coord.close()

    def close(self) -> None:
        """Close every backend still open (groups that did not run)."""
        for ready in self.ready:
            self.release(ready.group)

    def __enter__(self) -> Prepared:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def prepare(
    groups: tuple[Group, ...], request: RunRequest, env: Environment, *, resume: bool = False
) -> Prepared:
    """Check everything before anything changes (the module's text); raises UsageError when
    the run lacks what it needs, and returns every group's refusal or readiness otherwise."""
    check_needs(groups, request, hooks=env.hooks is not None)
    if fleet_mode(groups, env=env, resume=resume):
        return Prepared(groups, request, env, resume, fleet=True)
    prepared = Prepared(groups, request, env, resume, fleet=False)
    ready: list[Ready] = []
    refusals: list[Refusal] = []
    try:
        for group in groups:
            with structlog.contextvars.bound_contextvars(group=group.id):
                try:
                    one = _prepare_group(group, request, env, resume=resume)
                except HarestartError as exc:
                    log.info("prepare.refused", error=str(exc), error_type=type(exc).__name__)
                    refusals.append(Refusal(group, exc))
                    continue
            prepared._open[(group.account, group.id)] = one.coord
            ready.append(one)
    except BaseException:
        for one in ready:
            one.coord.close()
        raise
    prepared.ready, prepared.refusals = tuple(ready), tuple(refusals)
    return prepared


def _prepare_group(group: Group, request: RunRequest, env: Environment, *, resume: bool) -> Ready:
    """One group's checks in the judge's order (raises the first refusal), its plan, its probe."""
    coord = env.coordination(group, env.state_dir)  # CoordinationUnavailable: exit 3
    try:
        coord.check_free(group, break_stale=True)  # 1. a live run holds it
        mark = coord.unfinished(group)
        check_journal(group, request, env=env, resume=resume, mark=mark)  # 2. and 3.
        coord.check_free(group, break_stale=request.break_lock)  # 4. a stale lock
        plan = build_plan(group, request.plan)
        if resume:
            return Ready(group, plan, coord)
        at = env.clock.now()
        state = observe(group, env=env)  # 5. the group's health
        problems = preflight_problems(group, state)
        if problems:
            raise PreflightRefused(group.id, problems)
        return Ready(group, plan.with_notes(state.notes()), coord, state, at)
    except BaseException:
        coord.close()
        raise


def check_needs(groups: tuple[Group, ...], request: RunRequest, *, hooks: bool = True) -> None:
    """What a run of ``groups`` needs before anything starts (exit 2, naming the group and
    what is missing): what the chosen strategy needs (``inventory.needs``, the same words as
    at load), the passwords (``available_passwords``), and (``hooks``: this harestart runs
    hooks) a way to run the hooks a group names."""
    require_strategy(request.inventory, groups, request.plan.source_strategy)
    available_passwords(groups, request.plan)
    for g in groups:
        named = [p.value for p in HookPoint if g.hooks.at(p) is not None]
        if named and not hooks:
            raise UsageError(
                f"group {g.id}: the inventory names hooks ({', '.join(named)}) and this "
                "harestart has no way to run them"
            )


def available_passwords(groups: tuple[Group, ...], options: PlanOptions) -> None:
    """Every MySQL password, and the switchover's replication password, readable now
    (UsageError otherwise); the API answers 503 with the same message."""
    for g in groups:
        for node in g.db_nodes:
            mysql_endpoint(node)
    require_replication_passwords(groups, options.source_strategy)


def fleet_mode(groups: tuple[Group, ...], *, env: Environment, resume: bool = False) -> bool:
    """Are these groups shared with other bastions (a shared service, several groups, a new
    run)? Then each is checked when this bastion takes it (``engine.fleet``)."""
    return (
        env.fleet is not None
        and not resume
        and len(groups) > 1
        and groups[0].coordination is not None
    )
