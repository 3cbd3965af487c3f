"""The one way into a restart: ``harestart run``/``resume`` and ``POST .../action`` call it.

``restart`` takes the group's lock (through its coordination backend: the local flock, or a
shared service's lease, see ``engine.coordination``), opens or creates its journal (refusing a
second run over an unfinished one, its own or another bastion's), builds the plan and runs the
executor. ``restart_groups`` does that for several groups (``--all``), ``preflight`` refuses
before any confirmation (locked: exit 4, reality contradicts the inventory: exit 3),
``observe_groups`` is the read-only look.

Everything that reaches outside the process comes in an ``Environment``: how to connect to
hosts, how to drive the failover manager, where the state directory is, what time it is.
``harestart.wiring`` builds the real one; the unit tests build one on the fakes.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog

from harestart.adapters.protocols import Connector, FailoverManager, HookRunner
from harestart.domain.group import Group
from harestart.domain.judge import preflight_problems
from harestart.domain.observation import GroupState
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import Plan, PlanOptions
from harestart.domain.result import RunResult, utc_now
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
)
from harestart.engine.fleet import FleetBoardFactory, FleetReport, fleet_name, restart_fleet
from harestart.engine.observe import observe_group
from harestart.engine.sequencer.executor import Executor, FailurePolicy, Reporter
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.waiting import SYSTEM_CLOCK, Clock
from harestart.engine.state.journal import Journal, find_journal, inventory_identity, journal_path
from harestart.errors import HarestartError, JournalMismatch, PreflightRefused, UsageError

log = structlog.get_logger("harestart.engine.run")

__all__ = [
    "Environment",
    "FailurePolicy",
    "FleetOutcome",
    "FleetReport",
    "Refusal",
    "RunRequest",
    "check_unlocked",
    "default_log_file",
    "fleet_mode",
    "journal_for",
    "observe",
    "observe_groups",
    "preflight",
    "probe_plans",
    "restart",
    "restart_groups",
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
    (``detect_pending``: and whether each node needs a restart, #23)."""
    with (
        structlog.contextvars.bound_contextvars(group=group.id, step="observe"),
        _session(group, env) as (connector, mha),
    ):
        return observe_group(group, connector, mha, detect_pending=detect_pending)


def observe_groups(
    groups: tuple[Group, ...], *, env: Environment, detect_pending: bool = False
) -> list[tuple[Group, GroupState]]:
    return [(group, observe(group, env=env, detect_pending=detect_pending)) for group in groups]


def probe_plans(groups: tuple[Group, ...], plans: list[Plan], *, env: Environment) -> list[Plan]:
    """Annotate plans with what is really there; refuse (exit 3) on any contradiction."""
    return [plan for plan, _ in probed(groups, plans, env=env)]


def probed(
    groups: tuple[Group, ...], plans: list[Plan], *, env: Environment
) -> list[tuple[Plan, GroupState]]:
    """``probe_plans``, each plan with what was observed (``plan --probe`` shows the plan in
    the words of the versions found)."""
    out: list[tuple[Plan, GroupState]] = []
    refusals: list[str] = []
    for group, plan in zip(groups, plans, strict=True):
        state = observe(group, env=env)
        out.append((plan.with_notes(state.notes()), state))
        refusals += [f"{group.id}: {p}" for p in preflight_problems(group, state)]
    if refusals:
        raise PreflightRefused(",".join(g.id for g in groups), refusals)
    return out


def check_unlocked(group: Group, *, env: Environment, break_lock: bool) -> None:
    """Refuse (LockHeld, exit 4) before probing a group that another run is restarting.

    The lock taken by ``restart`` stays the authority; this only keeps a second run from
    probing nodes mid-restart and reporting them unreachable (exit 3) instead of "locked".
    """
    with opened(env.coordination, group, env.state_dir) as coord:
        coord.check_free(group, break_stale=break_lock)


def preflight(
    groups: tuple[Group, ...], request: RunRequest, *, env: Environment, resume: bool = False
) -> list[Plan]:
    """What a run checks before asking for confirmation; nothing is changed.

    Every group must be free (exit 4, checked before any host is contacted); a new run's plans
    are then probed (exit 3 when reality contradicts the inventory) and returned for display.
    A resume returns no plans: its executor re-checks reality against the journal.
    """
    for g in groups:
        check_unlocked(g, env=env, break_lock=request.break_lock)
    if resume:
        return []
    return probe_plans(groups, [build_plan(g, request.plan) for g in groups], env=env)


def default_log_file(env: Environment, group_ids: list[str]) -> Path:
    """A new run log under the state directory: logs/run-<group|all>-<UTC stamp>-<pid>.jsonl."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    label = group_ids[0] if len(group_ids) == 1 else "all"
    return env.state_dir / "logs" / f"run-{label}-{stamp}-{os.getpid()}.jsonl"


# --- one group ------------------------------------------------------------------------------


def journal_for(
    group: Group,
    request: RunRequest,
    *,
    env: Environment,
    resume: bool,
    coord: Coordination | None = None,
) -> Journal:
    """The journal a run writes: the unfinished one to resume, else a new one.

    A new run refuses (exit 2) over an unfinished one unless asked to discard it: its own
    journal, or the unfinished mark another bastion left in the coordination service (which
    ``--discard-unfinished`` then clears). A resume refuses when there is nothing to resume.
    A journal written for another group or inventory file (JournalMismatch, exit 2) is never
    resumed; a new run replaces it only with ``--discard-unfinished``.
    """
    path = journal_path(env.state_dir, group.account, group.id)
    try:
        existing = find_journal(env.state_dir, group.account, group.id, request.inventory)
    except JournalMismatch:
        if resume or not request.discard_unfinished:
            raise
        existing = None
    mark = coord.unfinished(group) if coord is not None else None
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
            f"group {group.id} has an unfinished run: {existing.describe()}. Continue it with "
            f"`harestart resume {request.inventory} --group {group.id}`, or start over with "
            "`harestart run ... --discard-unfinished`"
        )
    if elsewhere is not None and not request.discard_unfinished:
        raise UsageError(
            f"group {group.id} has an unfinished run on another bastion: "
            f"{_elsewhere(elsewhere, request, group)}, or start over here with "
            "`harestart run ... --discard-unfinished`"
        )
    if mark is not None and coord is not None:
        coord.clear_unfinished(group)
    return Journal(
        path=path,
        group=group.id,
        account=group.account,
        inventory=request.inventory,
        inventory_path=inventory_identity(request.inventory),
    )


def _elsewhere(mark: UnfinishedMark, request: RunRequest, group: Group) -> str:
    return (
        f"{mark.describe()}. Continue it there with "
        f"`harestart resume {request.inventory} --group {group.id}` on {mark.host} "
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
) -> RunResult:
    """Run (or resume) the restart of one group under its lock, journalled.

    ``guard`` (fleet mode) is asked under the lock whether the group is still to be done
    (``claim`` raises when not) and told the result before the lock is released (``settle``).

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
        opened(env.coordination, group, env.state_dir) as coord,
    ):
        held = coord.acquire(
            group,
            my_holder(command=request.command, state_dir=env.state_dir),
            break_stale=request.break_lock,
            on_lost=flag.lose_lease,
        )
        try:
            if guard is not None:
                guard.claim(group)
            result = _run_locked(
                group, request, env, coord, held, reporter=reporter, flag=flag, resume=resume
            )
            if guard is not None:
                guard.settle(group, result)
        finally:
            held.release()
    return result if request.log_file is None else result.with_log_file(request.log_file)


def _run_locked(
    group: Group,
    request: RunRequest,
    env: Environment,
    coord: Coordination,
    held: HeldLock,
    *,
    reporter: Reporter | None,
    flag: InterruptFlag,
    resume: bool,
) -> RunResult:
    """The run under its lock: the journal rules, the unfinished mark, the executor."""
    journal = journal_for(group, request, env=env, resume=resume, coord=coord)
    held.publish(journal.run_id)
    plan = build_plan(group, request.plan)
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
            ).run()
    except PreflightRefused:
        if not resume:  # nothing changed and no journal was left: nothing is unfinished
            _clear_mark(coord, group)
        raise
    if journal.finished:
        _clear_mark(coord, group)
    return result


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


# --- several groups -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A group whose run was refused or stopped by an error (the other groups went on)."""

    group: Group
    error: HarestartError


@dataclass(frozen=True)
class FleetOutcome:
    """Every group's result and every refusal, each in the order the groups were given.

    A group that had not started when an interrupt arrived has neither.
    """

    results: tuple[RunResult, ...]
    refusals: tuple[Refusal, ...]
    fleet: FleetReport | None = None  # fleet mode: this bastion's view of the round


def restart_groups(
    groups: tuple[Group, ...],
    request: RunRequest,
    *,
    env: Environment,
    reporter: Reporter | None = None,
    interrupts: InterruptFlag,
    resume: bool = False,
    parallel: int = 1,
    on_result: Callable[[RunResult], None] | None = None,
    on_refusal: Callable[[Refusal], None] | None = None,
) -> FleetOutcome:
    """``restart`` each group, up to ``parallel`` at a time; one refusal does not stop others.

    ``on_result``/``on_refusal`` are called as each group ends, one at a time. Once an
    interrupt is requested no further group starts. Errors that are not HarestartErrors
    (bugs) propagate.
    """
    if fleet_mode(groups, env=env, resume=resume):
        return _restart_as_fleet(
            groups, request, env, reporter, interrupts, on_result, on_refusal, parallel=parallel
        )
    lock = threading.Lock()
    results: list[RunResult] = []
    refusals: list[Refusal] = []

    def one(g: Group) -> None:
        if interrupts.requested:
            return
        try:
            result = restart(
                g, request, env=env, reporter=reporter, interrupts=interrupts, resume=resume
            )
        except HarestartError as exc:
            refusal = Refusal(g, exc)
            with lock:
                refusals.append(refusal)
                if on_refusal is not None:
                    on_refusal(refusal)
            return
        with lock:
            results.append(result)
            if on_result is not None:
                on_result(result)

    if parallel > 1 and len(groups) > 1:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for f in [pool.submit(contextvars.copy_context().run, one, g) for g in groups]:
                f.result()
    else:
        for g in groups:
            one(g)
    order = {g.id: i for i, g in enumerate(groups)}
    return FleetOutcome(
        results=tuple(sorted(results, key=lambda r: order[r.group])),
        refusals=tuple(sorted(refusals, key=lambda x: order[x.group.id])),
    )


def fleet_mode(groups: tuple[Group, ...], *, env: Environment, resume: bool = False) -> bool:
    """Does ``restart_groups`` share these groups with other bastions (a shared service)?"""
    return (
        env.fleet is not None
        and not resume
        and len(groups) > 1
        and groups[0].coordination is not None
    )


def _restart_as_fleet(
    groups: tuple[Group, ...],
    request: RunRequest,
    env: Environment,
    reporter: Reporter | None,
    interrupts: InterruptFlag,
    on_result: Callable[[RunResult], None] | None,
    on_refusal: Callable[[Refusal], None] | None,
    *,
    parallel: int,
) -> FleetOutcome:
    """``restart_groups`` on a shared service: this bastion's share (``engine.fleet``)."""
    settings = groups[0].coordination
    if env.fleet is None or settings is None:  # pragma: no cover - fleet_mode() checked it
        raise ValueError("no fleet board in this environment")
    results: list[RunResult] = []
    refusals: list[Refusal] = []
    lock = threading.Lock()

    def one(group: Group, guard: Guard) -> RunResult:
        return restart(
            group, request, env=env, reporter=reporter, interrupts=interrupts, guard=guard
        )

    def done(result: RunResult) -> None:
        with lock:
            results.append(result)
        if on_result is not None:
            on_result(result)

    def refused(group: Group, error: HarestartError) -> None:
        refusal = Refusal(group, error)
        with lock:
            refusals.append(refusal)
        if on_refusal is not None:
            on_refusal(refusal)

    board = env.fleet(settings, fleet_name(groups))
    try:
        report = restart_fleet(
            groups,
            board=board,
            restart=one,
            state_dir=env.state_dir,
            interrupts=interrupts,
            sleep=env.clock.sleep,
            now=env.clock.now,
            poll=env.fleet_poll,
            parallel=parallel,
            on_result=done,
            on_refusal=refused,
        )
    finally:
        board.close()
    order = {g.id: i for i, g in enumerate(groups)}
    return FleetOutcome(
        results=tuple(sorted(results, key=lambda r: order[r.group])),
        refusals=tuple(sorted(refusals, key=lambda x: order[x.group.id])),
        fleet=report,
    )
