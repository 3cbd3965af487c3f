"""Run what ``engine.prepare`` accepted, the one way for every door (CLI, API, fleet mode).

``execute`` runs nothing when a group was refused (every refusal is reported, nothing has
changed); else one group, every group on this bastion (``--all``, up to ``parallel`` at once,
one group's failure or late refusal does not stop the others), or this bastion's share of a
fleet round (``engine.fleet``: each group checked under its lock when it is taken). Each
group's run (``engine.run.restart``) takes its lock, re-checks its journal under it and runs
the plan ``prepare`` built; its preflight step judges ``prepare``'s observation when that is
recent (``FRESH_FOR``), else observes again.

``Listener``\\ s hear each group's end (a result or a refusal), one call at a time: the CLI's
summaries, and ``views.metrics.MetricsListener`` for ``--metrics-textfile`` and ``serve``. The
``Outcome`` carries every result, every refusal and the exit code they make.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.domain.result import RunResult
from harestart.engine.fleet import FleetReport, fleet_name, restart_fleet
from harestart.engine.prepare import Prepared, Ready, Refusal, Skipped
from harestart.engine.run import Guard, restart
from harestart.engine.sequencer.executor import Reporter
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.errors import ExitCode, HarestartError

__all__ = ["FRESH_FOR", "Listener", "Outcome", "execute"]

# Seconds a prepared observation stays the one a run's preflight judges. A person confirming,
# or the groups of --all that run first, take longer: the run then observes the group again,
# under its lock, right before it changes anything.
FRESH_FOR = 10.0


class Listener(Protocol):
    """Told as each group ends, one call at a time (from the thread that ran it)."""

    def finished(self, result: RunResult) -> None:
        """The group's run ended: done, failed or interrupted."""

    def refused(self, refusal: Refusal) -> None:
        """The group was refused before anything changed (or its run stopped on an error)."""


# With several groups the exit code is the worst one, in this order.
SEVERITY = (
    ExitCode.OK,
    ExitCode.PREFLIGHT_REFUSED,
    ExitCode.LOCKED,
    ExitCode.USAGE,
    ExitCode.RUN_FAILED,
    ExitCode.INTERRUPTED,
)


@dataclass(frozen=True)
class Outcome:
    """Every group's result and every refusal, each in the order the groups were given.

    A group that had not started when an interrupt arrived has neither."""

    results: tuple[RunResult, ...]
    refusals: tuple[Refusal, ...]
    fleet: FleetReport | None = None  # fleet mode: this bastion's view of the round
    # run --only-pending: the groups left alone, nothing in them pending (exit 0).
    skipped: tuple[Skipped, ...] = ()

    @property
    def exit_code(self) -> ExitCode:
        """The worst of every group's code (``SEVERITY``); 1 when the fleet round failed or
        was left incomplete on some bastion."""
        codes = [_result_code(r) for r in self.results]
        codes += [x.error.exit_code for x in self.refusals]
        if self.fleet is not None and not self.fleet.ok:
            codes.append(ExitCode.RUN_FAILED)
        return max(codes, key=SEVERITY.index, default=ExitCode.OK)


def _result_code(r: RunResult) -> ExitCode:
    if r.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if r.ok else ExitCode.RUN_FAILED


class _Tell:
    """The listeners, told one at a time; collects what they were told."""

    def __init__(self, listeners: Sequence[Listener]) -> None:
        self.listeners = listeners
        self.results: list[RunResult] = []
        self.refusals: list[Refusal] = []
        self._lock = threading.Lock()

    def finished(self, result: RunResult) -> None:
        with self._lock:
            self.results.append(result)
            for x in self.listeners:
                x.finished(result)

    def refused(self, refusal: Refusal) -> None:
        with self._lock:
            self.refusals.append(refusal)
            for x in self.listeners:
                x.refused(refusal)

    def outcome(
        self,
        groups: tuple[Group, ...],
        fleet: FleetReport | None = None,
        skipped: tuple[Skipped, ...] = (),
    ) -> Outcome:
        order = {g.id: i for i, g in enumerate(groups)}
        return Outcome(
            results=tuple(sorted(self.results, key=lambda r: order[r.group])),
            refusals=tuple(sorted(self.refusals, key=lambda x: order[x.group.id])),
            fleet=fleet,
            skipped=skipped,
        )


def execute(
    prepared: Prepared,
    listeners: Sequence[Listener] = (),
    *,
    reporter: Reporter | None = None,
    interrupts: InterruptFlag | None = None,
    parallel: int = 1,
) -> Outcome:
    """Run the prepared groups (the module's text); errors that are not HarestartErrors (bugs)
    propagate. Once an interrupt is requested no further group starts."""
    tell = _Tell(listeners)
    flag = interrupts or InterruptFlag()
    try:
        if prepared.refusals:  # refused before anything changed: nothing runs
            for refusal in prepared.refusals:
                tell.refused(refusal)
            return tell.outcome(prepared.groups, skipped=prepared.skipped)
        if prepared.fleet:
            report = _as_fleet(prepared, tell, reporter, flag, parallel)
            return tell.outcome(prepared.groups, report)
        _here(prepared, tell, reporter, flag, parallel)
        return tell.outcome(prepared.groups, skipped=prepared.skipped)
    finally:
        prepared.close()


def _here(
    prepared: Prepared,
    tell: _Tell,
    reporter: Reporter | None,
    interrupts: InterruptFlag,
    parallel: int,
) -> None:
    """Every ready group on this bastion, up to ``parallel`` at a time."""
    clock = prepared.env.clock

    def one(ready: Ready) -> None:
        if interrupts.requested:
            return
        fresh = ready.observed_at is not None and clock.now() - ready.observed_at <= FRESH_FOR
        observed: GroupState | None = ready.observed if fresh else None
        try:
            result = restart(
                ready.group,
                prepared.request,
                env=prepared.env,
                reporter=reporter,
                interrupts=interrupts,
                resume=prepared.resume,
                plan=ready.plan,
                observed=observed,
                coord=ready.coord,
            )
        except HarestartError as exc:
            tell.refused(Refusal(ready.group, exc))
            return
        finally:
            prepared.release(ready.group)
        tell.finished(result)

    if parallel > 1 and len(prepared.ready) > 1:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(contextvars.copy_context().run, one, r) for r in prepared.ready]
            for f in futures:
                f.result()
    else:
        for ready in prepared.ready:
            one(ready)


def _as_fleet(
    prepared: Prepared,
    tell: _Tell,
    reporter: Reporter | None,
    interrupts: InterruptFlag,
    parallel: int,
) -> FleetReport:
    """This bastion's share of the fleet round; each group is checked and run under its lock
    when this bastion takes it (``restart`` then opens its backend, builds its plan and its
    preflight step observes it: once each)."""
    env, groups = prepared.env, prepared.groups
    settings = groups[0].coordination
    if env.fleet is None or settings is None:  # pragma: no cover - prepare() checked it
        raise ValueError("no fleet board in this environment")

    def one(group: Group, guard: Guard) -> RunResult:
        return restart(
            group,
            prepared.request,
            env=env,
            reporter=reporter,
            interrupts=interrupts,
            guard=guard,
        )

    def refused(group: Group, error: HarestartError) -> None:
        tell.refused(Refusal(group, error))

    board = env.fleet(settings, fleet_name(groups))
    try:
        return restart_fleet(
            groups,
            board=board,
            restart=one,
            state_dir=env.state_dir,
            interrupts=interrupts,
            sleep=env.clock.sleep,
            now=env.clock.now,
            poll=env.fleet_poll,
            parallel=parallel,
            on_result=tell.finished,
            on_refusal=refused,
        )
    finally:
        board.close()
