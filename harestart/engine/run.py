"""One group's run, and what the engine is given: ``Environment`` and ``RunRequest``.

Every way in (``harestart run``/``resume``, ``POST .../action``, fleet mode) goes through
``engine.prepare`` (what is checked before anything changes, in the judge's order) and
``engine.execute`` (the groups run); both use this module. ``restart`` runs one group under its
lock (through its coordination backend: the local flock, or a shared service's lease, see
``engine.coordination``): it opens or creates its journal (``journal_for``: refusing a second
run over an unfinished one, its own or another bastion's) and runs the executor on the plan
``prepare`` built. ``observe_groups`` and ``probe_plans`` are the read-only looks of ``status``
and ``plan --probe``.

Everything that reaches outside the process comes in an ``Environment``: how to connect to
hosts, how to drive the failover manager, where the state directory is, what time it is.
``harestart.wiring`` builds the real one; the unit tests build one on the fakes.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn, Protocol

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, HookRunner
from harestart.domain.group import Group
from harestart.domain.judge import preflight_problems, resume_command
from harestart.domain.observation import GroupState
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Action, Plan, PlanOptions
from harestart.domain.plan.only import NOTHING_PENDING, select_pending
from harestart.domain.result import RunResult, utc_now
from harestart.domain.secret import scrub
from harestart.engine.coordination import (
    Coordination,
    CoordinationFactory,
    HeldLock,
    UnfinishedMark,
    is_here,
    local_coordination,
    my_holder,
    my_mark,
    opened,
    state_dir_text,
    this_host,
)
from harestart.engine.fanout import PREFLIGHT_PARALLEL, fan_out
from harestart.engine.fleet import FleetBoardFactory
from harestart.engine.marks import MarksFactory, clear_marks, local_marks, with_operator_marks
from harestart.engine.observe import OBSERVE_CRASHED, crashed_state, observe_group
from harestart.engine.sequencer.executor import Executor, FailurePolicy, Reporter
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.waiting import SYSTEM_CLOCK, Clock
from harestart.engine.state.journal import (
    Journal,
    find_journal,
    inventory_identity,
    journal_path,
    new_run_id,
)
from harestart.errors import HarestartError, JournalMismatch, PreflightRefused, UsageError

log = structlog.get_logger("harestart.engine.run")

__all__ = [
    "Environment",
    "FailurePolicy",
    "Guard",
    "RunRequest",
    "check_journal",
    "default_log_file",
    "journal_for",
    "observe",
    "observe_groups",
    "probe_plans",
    "restart",
]


@dataclass(frozen=True)
class Environment:
    """What the engine is given rather than chooses: its only ways out of the process."""

    # A new connector (SSH and MySQL sessions); the engine closes it with close_all().
    connector: Callable[[], Connector]
    # The group's failover manager, driven through that connector.
    failover_manager: Callable[[Group, Connector], FailoverManager]
    # Where locks, journals and run logs live.
    state_dir: Path
    clock: Clock = SYSTEM_CLOCK  # waits and timeouts
    wall: Callable[[], float] = time.time  # journalled instants (compared across processes)
    # The group's lock and unfinished marks (group, state_dir) -> backend; the default knows
    # the local lock only, ``harestart.wiring`` adds the shared services.
    coordination: CoordinationFactory = local_coordination
    # The fleet board of ``run --all`` on a shared service (None: no fleet mode; ``--all``
    # restarts every group here).
    fleet: FleetBoardFactory | None = None
    fleet_poll: float = 2.0  # seconds between looks at the round while waiting on others
    # Runs the inventory's hooks on this machine (None: a group with hooks fails at its first).
    hooks: HookRunner | None = None
    # Where operators' pending-restart marks are kept (group, state_dir) -> store; the default
    # knows the state directory only, ``harestart.wiring`` adds the shared services (#23).
    marks: MarksFactory = local_marks


@dataclass(frozen=True)
class RunRequest:
    """What a caller asks of one restart (the same for each group of a fleet)."""

    inventory: str  # named in messages ("harestart resume INVENTORY --group ID")
    failure_policy: FailurePolicy = FailurePolicy.RESTORE_IF_HEALTHY
    break_lock: bool = False
    discard_unfinished: bool = False
    command: str = "harestart run"  # written into the lock: who holds the group
    plan: PlanOptions = field(default_factory=PlanOptions)
    log_file: str | None = None  # recorded in each result
    # run --only-pending (#23): restart only the nodes with a pending restart; a group with
    # none is skipped ("nothing pending"). ``unknown_pending``: what harestart cannot tell
    # counts as pending (--pending-unknown restart, the default).
    only_pending: bool = False
    unknown_pending: bool = True
    # Groups checked at once before the run (engine.prepare; --preflight-parallel).
    preflight_parallel: int = PREFLIGHT_PARALLEL


# --- read-only ------------------------------------------------------------------------------


@contextmanager
def _session(group: Group, env: Environment) -> Iterator[tuple[Connector, FailoverManager]]:
    connector = env.connector()
    try:
        yield connector, env.failover_manager(group, connector)
    finally:
        connector.close_all()


def observe(group: Group, *, env: Environment, detect_pending: bool = False) -> GroupState:
    """One read-only look at every node of the group and at its failover manager
    (``detect_pending``: and whether each node needs a restart, #23, the operator's marks
    included)."""
    with (
        structlog.contextvars.bound_contextvars(group=group.id, step="observe"),
        _session(group, env) as (connector, mha),
    ):
        state = observe_group(group, connector, mha, detect_pending=detect_pending)
    return with_operator_marks(group, state, env=env) if detect_pending else state


def observe_groups(
    groups: tuple[Group, ...],
    *,
    env: Environment,
    detect_pending: bool = False,
    parallel: int = PREFLIGHT_PARALLEL,
) -> list[tuple[Group, GroupState]]:
    """``observe`` of each group, ``parallel`` at once, in the groups' order (``status``)."""
    found = fan_out(
        lambda g: observe(g, env=env, detect_pending=detect_pending),
        groups,
        limit=parallel,
        name="observe",
    )
    return [(g, _observed(g, state)) for g, state in zip(groups, found, strict=True)]


def _observed(group: Group, state: GroupState | Exception) -> GroupState:
    """A group's observation; one that crashed (a harestart bug, never a host's error: those
    are recorded per host) is that group's ERROR, its reason on every host, logged."""
    if not isinstance(state, Exception):
        return state
    error = scrub(f"{OBSERVE_CRASHED}: {type(state).__name__}: {state}")
    log.error("observe.crashed", group=group.id, error=error)
    log.debug(
        "observe.crashed.traceback",
        group=group.id,
        traceback="".join(traceback.format_exception(state)),
    )
    return crashed_state(group, error)


def probe_plans(
    groups: tuple[Group, ...],
    plans: list[Plan],
    *,
    env: Environment,
    parallel: int = PREFLIGHT_PARALLEL,
) -> list[Plan]:
    """Annotate plans with what is really there; refuse (exit 3) on any contradiction."""
    return [plan for plan, _ in probed(groups, plans, env=env, parallel=parallel)]


def probed(
    groups: tuple[Group, ...],
    plans: list[Plan],
    *,
    env: Environment,
    parallel: int = PREFLIGHT_PARALLEL,
) -> list[tuple[Plan, GroupState]]:
    """``probe_plans``, each plan with what was observed (``plan --probe`` shows the plan in
    the words of the versions found); the groups observed ``parallel`` at once."""
    out: list[tuple[Plan, GroupState]] = []
    refusals: list[str] = []
    found = observe_groups(groups, env=env, detect_pending=True, parallel=parallel)
    for (group, state), plan in zip(found, plans, strict=True):
        out.append((plan.with_notes(state.notes()), state))
        refusals += [f"{group.id}: {p}" for p in preflight_problems(group, state)]
    if refusals:
        raise PreflightRefused(",".join(g.id for g in groups), refusals)
    return out


def default_log_file(env: Environment, group_ids: list[str]) -> Path:
    """A new run log under the state directory: logs/run-<group|all>-<UTC stamp>-<pid>.jsonl."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    label = group_ids[0] if len(group_ids) == 1 else "all"
    return env.state_dir / "logs" / f"run-{label}-{stamp}-{os.getpid()}.jsonl"


# --- one group ------------------------------------------------------------------------------


# Why an unfinished run is refused before the group's health is judged (#22).
_LEFT = (
    "The group is as that run left it (MHA may be stopped, replicas' IO threads stopped), "
    "so its health is not judged until it is finished."
)


def check_journal(
    group: Group,
    request: RunRequest,
    *,
    env: Environment,
    resume: bool,
    mark: UnfinishedMark | None,
) -> Journal | None:
    """The journal rules, read only: raise the refusal, else return the unfinished journal a
    resume continues (None for a new run). ``mark``: the group's unfinished mark in its
    coordination service (None: none, or the local backend).

    A new run refuses (exit 2) over an unfinished one unless asked to discard it: its own
    journal, or the mark another bastion left (naming that run, its bastion, its state
    directory and the ``resume`` to run there). A resume refuses when there is nothing to
    resume. A journal written for another group or inventory file (JournalMismatch, exit 2)
    is never resumed; a new run replaces it only with ``--discard-unfinished``.
    """
    path = journal_path(env.state_dir, group.account, group.id)
    try:
        existing = find_journal(env.state_dir, group.account, group.id, request.inventory)
    except JournalMismatch:
        if resume or not request.discard_unfinished:
            raise
        existing = None
    elsewhere = mark if mark is not None and not is_here(mark, env.state_dir) else None
    if resume:
        if existing is None or existing.finished:
            there = f"; {_elsewhere(elsewhere, request, group)}" if elsewhere else ""
            raise UsageError(
                f"group {group.id}: there is no unfinished run to resume ({path}){there}"
            )
        if elsewhere is not None and elsewhere.run_id != existing.run_id:
            raise UsageError(
                f"group {group.id}: the coordination service names another unfinished run: "
                f"{elsewhere.describe()}; this bastion's journal ({path}) is older. Resume it "
                "there, or start over with `harestart run ... --discard-unfinished`"
            )
        return existing
    if existing is not None and not existing.finished and not request.discard_unfinished:
        raise UsageError(
            f"group {group.id} has an unfinished run on this bastion ({this_host()}, state "
            f"directory {state_dir_text(env.state_dir)}): {existing.describe()}. {_LEFT} "
            f"Continue it with `{resume_command(request.inventory, group.id)}`, or start over "
            "with `harestart run ... --discard-unfinished`"
        )
    if elsewhere is not None and not request.discard_unfinished:
        raise UsageError(
            f"group {group.id} has an unfinished run on another bastion: "
            f"{_elsewhere(elsewhere, request, group)}, or start over here with "
            "`harestart run ... --discard-unfinished`"
        )
    return None


def journal_for(
    group: Group,
    request: RunRequest,
    *,
    env: Environment,
    resume: bool,
    coord: Coordination | None = None,
    run_id: str | None = None,
) -> Journal:
    """The journal a run writes, under the group's lock: the unfinished one to resume, else a
    new one, of run ``run_id`` when given (``check_journal``'s refusals first; a discarded
    run's mark is cleared here)."""
    mark = coord.unfinished(group) if coord is not None else None
    existing = check_journal(group, request, env=env, resume=resume, mark=mark)
    if existing is not None:
        return existing
    if mark is not None and coord is not None:
        coord.clear_unfinished(group)
    return Journal(
        path=journal_path(env.state_dir, group.account, group.id),
        group=group.id,
        account=group.account,
        inventory=request.inventory,
        inventory_path=inventory_identity(request.inventory),
        run_id=run_id or new_run_id(),
    )


def _elsewhere(mark: UnfinishedMark, request: RunRequest, group: Group) -> str:
    return (
        f"{mark.describe()}. {_LEFT} Continue it there with "
        f"`{resume_command(request.inventory, group.id)}` on {mark.host} "
        f"(HARESTART_STATE_DIR={mark.state_dir})"
    )


def restart(
    group: Group,
    request: RunRequest,
    *,
    env: Environment,
    reporter: Reporter | None = None,
    interrupts: InterruptFlag | None = None,
    resume: bool = False,
    guard: Guard | None = None,
    plan: Plan | None = None,
    observed: GroupState | None = None,
    coord: Coordination | None = None,
) -> RunResult:
    """Run (or resume) the restart of one group under its lock, journalled.

    ``plan``, ``observed`` and ``coord`` are what ``engine.prepare`` built, observed and
    opened (None: built, observed by the run's preflight step, opened and closed here);
    ``observed`` is judged by the preflight step instead of looking again. ``guard`` (fleet
    mode) is asked under the lock whether the group is still to be done (``claim`` raises
    when not) and told the result before the lock is released (``settle``).

    Raises (nothing changed) when the lock is held (LockHeld), the coordination service does
    not answer (CoordinationUnavailable), over an unfinished run or without one to resume
    (UsageError), on an unreadable journal (JournalError) or when the executor's preflight
    refuses (PreflightRefused); every other outcome is the RunResult. A lease lost mid-run
    stops the run at its next safe point: a failed RunResult ("coordination lease lost").
    """
    # This run's own stop flag: the parent's signals, and this group's lease only.
    flag = (interrupts or InterruptFlag()).scoped()
    with (
        structlog.contextvars.bound_contextvars(group=group.id),
        _backend(env, group, coord) as backend,
    ):
        held, run_id = _acquire(backend, group, request, env, flag, resume=resume)
        try:
            if guard is not None:
                guard.claim(group)
            plan, observed = _planned(group, request, env, guard, plan, observed, resume=resume)
            result = _run_locked(
                group,
                request,
                env,
                backend,
                held,
                plan,
                reporter=reporter,
                flag=flag,
                resume=resume,
                observed=observed,
                run_id=run_id,
            )
            if guard is not None:
                guard.settle(group, result)
        finally:
            held.release()
    return result if request.log_file is None else result.with_log_file(request.log_file)


def _acquire(
    backend: Coordination,
    group: Group,
    request: RunRequest,
    env: Environment,
    flag: InterruptFlag,
    *,
    resume: bool,
) -> tuple[HeldLock, str | None]:
    """The group's lock, and the new run's id: chosen now, so the holder record names it from
    the start (against a service, no second write of the record once the journal exists)."""
    run_id = None if resume else new_run_id()
    holder = my_holder(command=request.command, state_dir=env.state_dir, run_id=run_id)
    held = backend.acquire(group, holder, break_stale=request.break_lock, on_lost=flag.lose_lease)
    return held, run_id


def _planned(
    group: Group,
    request: RunRequest,
    env: Environment,
    guard: Guard | None,
    plan: Plan | None,
    observed: GroupState | None,
    *,
    resume: bool,
) -> tuple[Plan, GroupState | None]:
    """The plan ``prepare`` built, else the request's; ``--only-pending`` in fleet mode, under
    the group's lock: one observation that detects pending restarts (the run's preflight
    judges it) and the plan of the pending nodes; a group with nothing pending is settled as
    such (``guard.skip`` raises: nothing changed)."""
    if plan is not None or not request.only_pending or resume:
        return plan or build_plan(group, request.plan), observed
    state = observe(group, env=env, detect_pending=True)
    only = select_pending(group, state, unknown_pending=request.unknown_pending)
    if only.empty:
        if guard is None:  # pragma: no cover - engine.prepare skips it before any run
            raise ValueError(f"group {group.id}: nothing pending and nobody to tell")
        guard.skip(group, NOTHING_PENDING)
    return build_plan(group, replace(request.plan, only=only)), state


@contextmanager
def _backend(env: Environment, group: Group, coord: Coordination | None) -> Iterator[Coordination]:
    """The backend ``prepare`` opened (its owner closes it), else one for this run."""
    if coord is not None:
        yield coord
        return
    with opened(env.coordination, group, env.state_dir) as mine:
        yield mine


def _run_locked(
    group: Group,
    request: RunRequest,
    env: Environment,
    coord: Coordination,
    held: HeldLock,
    plan: Plan,
    *,
    reporter: Reporter | None,
    flag: InterruptFlag,
    resume: bool,
    observed: GroupState | None,
    run_id: str | None = None,
) -> RunResult:
    """The run under its lock: the journal rules, the unfinished mark, the executor."""
    journal = journal_for(group, request, env=env, resume=resume, coord=coord, run_id=run_id)
    held.publish(journal.run_id)
    # Before anything changes, tell every bastion a run is unfinished here (it outlives the
    # lease: a holder killed mid-run leaves it, and its journal, behind).
    coord.mark_unfinished(
        group,
        my_mark(
            run_id=journal.run_id,
            started_at=journal.started_at or utc_now(),
            state_dir=env.state_dir,
        ),
    )
    try:
        with _session(group, env) as (connector, mha):
            result = Executor(
                group,
                plan,
                connector,
                mha,
                clock=env.clock,
                wall=env.wall,
                reporter=reporter,
                journal=journal,
                resume=resume,
                interrupts=flag,
                failure_policy=request.failure_policy,
                hooks=env.hooks,
                observed=None if resume else observed,
            ).run()
    except PreflightRefused:
        if not resume:  # nothing changed and no journal was left: nothing is unfinished
            _clear_mark(coord, group)
        raise
    if journal.finished:
        _clear_mark(coord, group)
        if result.ok:
            _clear_operator_marks(group, plan, env)
    return result


_RESTARTS = (Action.RESTART_REPLICA, Action.RESTART_SOURCE)


def _clear_operator_marks(group: Group, plan: Plan, env: Environment) -> None:
    """The operator's pending-restart marks of the nodes this run restarted are done with (a
    whole-group mark too once every node was). Best effort: a mark left shows in ``status``
    and an operator clears it with ``clear-pending``."""
    restarted = frozenset(s.host for s in plan.steps if s.action in _RESTARTS and s.host)
    every = {n.name for n in group.db_nodes}
    try:
        clear_marks(group, None if restarted >= every else restarted, env=env)
    except HarestartError as exc:
        log.warning("marks.clear_failed", group=group.id, reason=str(exc))


def _clear_mark(coord: Coordination, group: Group) -> None:
    """Best effort: a mark left behind names a finished run; the next run here replaces it."""
    try:
        coord.clear_unfinished(group)
    except HarestartError as exc:
        log.warning("coordination.clear_failed", error=str(exc))


class Guard(Protocol):
    """What a fleet checks and records under a group's lock (``engine.fleet``)."""

    def claim(self, group: Group) -> None: ...

    def settle(self, group: Group, result: RunResult) -> None: ...

    def skip(self, group: Group, why: str) -> NoReturn:
        """Settle the group as left alone (``why``), then end its run: raises."""
