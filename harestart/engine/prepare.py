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

``run --only-pending`` (#23): that one observation also detects each node's pending restarts
(only then: a plain run costs nothing more). A group with nothing pending is ``Skipped``
("nothing pending": no lock taken, MHA untouched, exit 0) before its health is judged; else
its plan restarts only the pending nodes (``domain.plan.only``). A resume follows its journal:
it restarts the nodes the interrupted run's plan had, whatever its options.

The groups are checked side by side, at most ``request.preflight_parallel`` at once
(``harestart run --preflight-parallel N``, 32 by default; ``engine.fanout``): a frozen host
costs its own group its timeouts, not every group queued behind it. Refusals and readiness
come out in the order the groups were given, whatever order their checks finished in; an
error harestart does not know, in one group's checks, refuses that group only (exit 3,
"unexpected error", the traceback in the log file).

Each group's plan is built once and its coordination backend opened once (kept open for its
run, closed by ``Prepared.release``/``close``). Nothing here changes anything: ``execute``
takes the lock, and re-checks under it what another run may have changed meanwhile.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace
from types import TracebackType

import structlog

from harestart.domain.group import Group, HookPoint
from harestart.domain.judge import preflight_problems
from harestart.domain.observation import GroupState
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action, Plan, PlanOptions
from harestart.domain.plan.only import NOTHING_PENDING, NodePending, Only, select_pending
from harestart.domain.secret import scrub
from harestart.engine.coordination import Coordination
from harestart.engine.fanout import fan_out
from harestart.engine.run import Environment, RunRequest, check_journal, observe
from harestart.errors import HarestartError, PreflightRefused, UsageError
from harestart.inventory.credentials import mysql_endpoint, require_replication_passwords
from harestart.inventory.needs import require_strategy

log = structlog.get_logger("harestart.engine.prepare")

CRASHED = "unexpected error while checking it (a harestart bug; its traceback is in the log file)"

__all__ = [
    "Prepared",
    "Ready",
    "Refusal",
    "Skipped",
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


@dataclass(frozen=True)
class Skipped:
    """``run --only-pending``: a group left alone, nothing in it needing a restart."""

    group: Group
    why: str = NOTHING_PENDING


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
    skipped: tuple[Skipped, ...] = ()
    _open: dict[tuple[str, str], Coordination] = field(default_factory=dict, repr=False)

    @property
    def idle(self) -> bool:
        """Nothing to run here: every group skipped (--only-pending) or refused."""
        return not self.fleet and not self.ready

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
    skipped: list[Skipped] = []

    def one(group: Group) -> Ready | Skipped:
        with structlog.contextvars.bound_contextvars(group=group.id):
            return _prepare_group(group, request, env, resume=resume)

    # Side by side (request.preflight_parallel at once); taken in the groups' order.
    found = fan_out(one, groups, limit=request.preflight_parallel, abandon=_close, name="preflight")
    for group, result in zip(groups, found, strict=True):
        if isinstance(result, Exception):
            refusals.append(Refusal(group, _refusal(group, result)))
        elif isinstance(result, Skipped):
            log.info("prepare.skipped", group=group.id, why=result.why)
            skipped.append(result)
        else:
            prepared._open[(group.account, group.id)] = result.coord
            ready.append(result)
    prepared.ready, prepared.refusals = tuple(ready), tuple(refusals)
    prepared.skipped = tuple(skipped)
    return prepared


def _close(result: Ready | Skipped) -> None:
    """A group prepared while the others were interrupted: its backend is not used."""
    if isinstance(result, Ready):
        result.coord.close()


def _refusal(group: Group, exc: Exception) -> HarestartError:
    """A group's refusal; an error harestart does not know (a bug) refuses that group alone,
    reported in one line (the traceback goes to the log), never the others' end."""
    if isinstance(exc, HarestartError):
        log.info("prepare.refused", group=group.id, error=str(exc), error_type=type(exc).__name__)
        return exc
    error = scrub(f"{type(exc).__name__}: {exc}")
    log.error("prepare.crashed", group=group.id, error=error)
    log.debug(
        "prepare.crashed.traceback",
        group=group.id,
        traceback="".join(traceback.format_exception(exc)),
    )
    return PreflightRefused(group.id, [f"{CRASHED}: {error}"])


def _prepare_group(
    group: Group, request: RunRequest, env: Environment, *, resume: bool
) -> Ready | Skipped:
    """One group's checks in the judge's order (raises the first refusal), its plan, its probe."""
    coord = env.coordination(group, env.state_dir)  # CoordinationUnavailable: exit 3
    try:
        coord.check_free(group, break_stale=True)  # 1. a live run holds it
        mark = coord.unfinished(group)
        journal = check_journal(group, request, env=env, resume=resume, mark=mark)  # 2. and 3.
        if coord.stale_locks and not request.break_lock:
            coord.check_free(group, break_stale=False)  # 4. a stale lock
        if resume:
            keys = {s.key for s in journal.steps} if journal is not None else set()
            return Ready(group, resumed_plan(group, request.plan, keys), coord)
        at = env.clock.now()
        state = observe(group, env=env, detect_pending=request.only_pending)  # 5. its health
        options = request.plan
        if request.only_pending:
            only = select_pending(group, state, unknown_pending=request.unknown_pending)
            if only.empty:
                coord.close()
                return Skipped(group)
            options = replace(options, only=only)
        problems = preflight_problems(group, state)
        if problems:
            raise PreflightRefused(group.id, problems)
        plan = build_plan(group, options)
        return Ready(group, plan.with_notes(state.notes()), coord, state, at)
    except BaseException:
        coord.close()
        raise


def resumed_plan(group: Group, options: PlanOptions, keys: set[str]) -> Plan:
    """The plan a resume continues: the steps of the interrupted run's (its journal's step
    ``keys``). A run of ``--only-pending`` restarted some nodes only: so does its resume."""
    plan = build_plan(group, options)
    restarts = (Action.RESTART_REPLICA, Action.RESTART_SOURCE)
    steps = [s for s in plan.steps if s.action in restarts and s.host is not None]
    if not keys or all(s.key in keys for s in steps):
        return plan
    kept = {s.host for s in steps if s.key in keys}
    why = ("restarted by the run being resumed",)
    only = Only(tuple(NodePending(n.name, why) for n in group.db_nodes if n.name in kept))
    return build_plan(group, replace(options, only=only))


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
