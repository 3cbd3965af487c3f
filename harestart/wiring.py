"""Wiring: real adapters for a group, then probe, status or restart through them.

This is the only module besides the adapters that knows which concrete adapters exist; the
executor and the observers see Protocols only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from harestart.adapters.mha import MhaManager
from harestart.adapters.protocols import Connector, FailoverManager
from harestart.adapters.ssh import ParamikoConnector
from harestart.domain.group import Group
from harestart.domain.judge import preflight_problems
from harestart.domain.observation import GroupState
from harestart.domain.plan import Plan, PlanOptions, build_plan
from harestart.domain.result import RunResult
from harestart.engine.executor import Executor, FailurePolicy, Reporter
from harestart.engine.interrupts import InterruptFlag
from harestart.engine.journal import Journal, journal_path
from harestart.engine.lock import GroupLock, check_free
from harestart.engine.observe import observe_group
from harestart.errors import PreflightRefused, UsageError

log = structlog.get_logger("harestart.wiring")


def state_dir() -> Path:
    """Where run logs (and journals) live: $HARESTART_STATE_DIR or ~/.local/state/harestart."""
    env = os.environ.get("HARESTART_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "harestart"


def default_log_file(group_ids: list[str]) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    label = group_ids[0] if len(group_ids) == 1 else "all"
    return state_dir() / "logs" / f"run-{label}-{stamp}-{os.getpid()}.jsonl"


def failover_manager(group: Group, connector: Connector) -> FailoverManager:
    m = group.mha
    shell = connector.shell(m.manager.name, m.manager.ssh)
    return MhaManager(
        shell,
        config_path=m.config,
        log_path=m.log,
        stop_command=m.stop_command,
        start_command=m.start_command,  # detached by MhaManager
        status_command=m.status_command,
        check_repl_command=m.check_repl_command,
    )


@dataclass
class Session:
    """Real adapters for one group; close() releases every connection."""

    group: Group
    connector: Connector
    mha: FailoverManager

    @classmethod
    def open(cls, group: Group) -> Session:
        connector = ParamikoConnector()
        return cls(group, connector, failover_manager(group, connector))

    def close(self) -> None:
        self.connector.close_all()

    def observe(self) -> GroupState:
        return observe_group(self.group, self.connector, self.mha)


def probe_plans(groups: tuple[Group, ...], plans: list[Plan]) -> list[Plan]:
    """Annotate plans with what is really there; refuse (exit 3) on any contradiction."""
    out: list[Plan] = []
    refusals: list[str] = []
    for group, plan in zip(groups, plans, strict=True):
        state = _observe_one(group)
        out.append(plan.with_notes(state.notes()))
        refusals += [f"{group.id}: {p}" for p in preflight_problems(group, state)]
    if refusals:
        raise PreflightRefused(",".join(g.id for g in groups), refusals)
    return out


def observe_groups(groups: tuple[Group, ...]) -> list[tuple[Group, GroupState]]:
    return [(group, _observe_one(group)) for group in groups]


def _observe_one(group: Group) -> GroupState:
    with structlog.contextvars.bound_contextvars(group=group.id, step="observe"):
        session = Session.open(group)
        try:
            return session.observe()
        finally:
            session.close()


@dataclass(frozen=True)
class RunOptions:
    inventory: str
    failure_policy: FailurePolicy = FailurePolicy.RESTORE_IF_HEALTHY
    break_lock: bool = False
    discard_unfinished: bool = False
    command: str = "harestart run"
    plan: PlanOptions = field(default_factory=PlanOptions)


def restart_group(
    group: Group,
    reporter: Reporter,
    options: RunOptions,
    *,
    resume: bool = False,
    interrupts: InterruptFlag | None = None,
) -> RunResult:
    """Run (or resume) the restart of one group under its lock, journalled."""
    state = state_dir()
    with (
        structlog.contextvars.bound_contextvars(group=group.id),
        GroupLock(
            state, group.account, group.id, command=options.command, break_stale=options.break_lock
        ),
    ):
        journal = _journal_for(group, options, resume=resume)
        plan = build_plan(group, options.plan)
        session = Session.open(group)
        try:
            return Executor(
                group,
                plan,
                session.connector,
                session.mha,
                reporter=reporter,
                journal=journal,
                resume=resume,
                interrupts=interrupts,
                failure_policy=options.failure_policy,
            ).run()
        finally:
            session.close()


def _journal_for(group: Group, options: RunOptions, *, resume: bool) -> Journal:
    path = journal_path(state_dir(), group.account, group.id)
    existing = Journal.load(path)
    unfinished = existing is not None and not existing.finished
    if resume:
        if existing is None or not unfinished:
            raise UsageError(f"group {group.id}: there is no unfinished run to resume ({path})")
        return existing
    if unfinished and not options.discard_unfinished:
        assert existing is not None
        raise UsageError(
            f"group {group.id} has an unfinished run: {existing.describe()}. Continue it with "
            f"`harestart resume {options.inventory} --group {group.id}`, or start over with "
            "`harestart run ... --discard-unfinished`"
        )
    return Journal(path=path, group=group.id, account=group.account, inventory=options.inventory)


def ensure_unlocked(group: Group, *, break_lock: bool) -> None:
    """Refuse (LockHeld, exit 4) before probing a group that another run is restarting.

    The lock taken by restart_group stays the authority; this only keeps a second run from
    probing nodes mid-restart and reporting them unreachable (exit 3) instead of "locked".
    """
    check_free(state_dir(), group.account, group.id, break_stale=break_lock)
