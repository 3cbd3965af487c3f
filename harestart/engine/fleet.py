"""``run --all`` on several bastions at once: every group restarted exactly once in total.

Only with a shared coordination backend (``defaults.coordination``); with the local lock
``--all`` restarts every group here, as before. The bastions pointed at one service share a
*fleet* (named from the inventory's group ids) and a *round* in it:

- each bastion joins the fleet's members (a lease: a dead bastion drops out by itself) and
  reads the round in progress, or creates it (persistent: it outlives every member);
- a group belongs to the live member the rendezvous hash of (group, member) picks; a member
  restarts the groups that are its own and not yet marked in the round, one at a time, under
  the group's own lock, and marks each ``done`` (or ``failed``) before releasing that lock;
- a group whose lock another run holds is left for later (re-checked every poll); a group
  whose lock it takes but which is marked by then is skipped (another member finished it);
- when its share is done a member keeps polling: members that died drop out of the hash after
  their lease, so their unfinished groups become the survivors'. A dead member's half-done
  group is refused by its unfinished mark (the usual rule): it is marked failed, "resume it
  there", never restarted blindly;
- when every group is marked a member leaves; the last one out deletes the round. When every
  member died the round stays, and the next ``--all`` continues it (marked groups skipped).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, NoReturn

import structlog

from harestart.adapters.protocols import FleetBoard, FleetMark
from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.result import RunResult, utc_now
from harestart.engine.coordination import state_dir_text, this_host
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.errors import HarestartError, LockHeld, UsageError

log = structlog.get_logger("harestart.engine.fleet")

__all__ = ["FleetBoardFactory", "FleetReport", "fleet_name", "owner", "restart_fleet"]

# Builds the fleet board on a shared service: (settings, fleet name) -> board.
FleetBoardFactory = Callable[[CoordinationSettings, str], FleetBoard]


def key(group: Group) -> str:
    return f"{group.account}/{group.id}"


def fleet_name(groups: tuple[Group, ...]) -> str:
    """The fleet of an inventory: the hash of its sorted groups (same inventory, same fleet)."""
    text = "\n".join(sorted(key(g) for g in groups))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def owner(group_key: str, members: set[str]) -> str:
    """The member a group belongs to (rendezvous hashing: a member that leaves only hands
    its own groups over)."""
    return max(members, key=lambda m: hashlib.sha256(f"{group_key}|{m}".encode()).hexdigest())


@dataclass
class FleetReport:
    """What this bastion saw of the round: restarted here, skipped (another did it), failed."""

    round: str
    member: str
    restarted: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    complete: bool = False  # every group of the round is marked
    error: str | None = None  # why this member stopped before the round was complete

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "member": self.member,
            "complete": self.complete,
            "error": self.error,
            "restarted": list(self.restarted),
            "skipped": list(self.skipped),
            "failed": list(self.failed),
        }

    @property
    def ok(self) -> bool:
        return self.complete and not self.failed


class _Settled(Exception):
    """The group was marked in the round by the time this member held its lock."""

    def __init__(self, mark: FleetMark) -> None:
        self.mark = mark
        super().__init__(mark.describe())


@dataclass
class _Guard:
    """Checked and written under the group's lock (``restart``'s ``guard``).

    A mark the service refused (it stopped answering right after a restart) is kept in
    ``unmarked`` and written again by the member's loop: the restart itself succeeded and is
    reported as such, never as a failure.
    """

    board: FleetBoard
    round_id: str
    state_dir: str
    unmarked: list[FleetMark] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, group: Group) -> None:
        mark = self.board.marks(self.round_id).get(key(group))
        if mark is not None:
            raise _Settled(mark)

    def settle(self, group: Group, result: RunResult) -> None:
        detail = "" if result.ok else _result_detail(result)
        mark = self.mark_of(group, ok=result.ok, detail=detail)
        try:
            self.board.mark(self.round_id, mark)
        except HarestartError as exc:
            log.warning("fleet.mark_deferred", group=group.id, error=str(exc))
            with self.lock:
                self.unmarked.append(mark)

    def skip(self, group: Group, why: str) -> NoReturn:
        """``run --only-pending``: the group needs nothing; it is done in the round, and this
        member's report lists it as skipped (``why``)."""
        mark = self.mark_of(group, ok=True, detail=why)
        self.board.mark(self.round_id, mark)
        raise _Settled(mark)

    def flush(self) -> None:
        """Write the marks the service refused earlier (raises while it still refuses)."""
        with self.lock:
            while self.unmarked:
                self.board.mark(self.round_id, self.unmarked[0])
                self.unmarked.pop(0)

    def mark_of(self, group: Group, *, ok: bool, detail: str) -> FleetMark:
        return FleetMark(
            group=key(group),
            outcome="done" if ok else "failed",
            host=this_host(),
            pid=os.getpid(),
            state_dir=self.state_dir,
            detail=detail,
        )


def _result_detail(result: RunResult) -> str:
    if result.interruption is not None:
        return f"interrupted {result.interruption.describe()}"
    if result.failure is not None:
        return f"{result.failure.step}: {result.failure.reason}"
    return result.state.value


# restart(group, guard) -> RunResult: ``engine.run.restart`` with the request bound.
Restart = Callable[[Group, _Guard], RunResult]


def restart_fleet(
    groups: tuple[Group, ...],
    *,
    board: FleetBoard,
    restart: Restart,
    state_dir: Any,
    interrupts: InterruptFlag,
    sleep: Callable[[float], None],
    now: Callable[[], float],
    poll: float,
    parallel: int = 1,
    on_result: Callable[[RunResult], None] | None = None,
    on_refusal: Callable[[Group, HarestartError], None] | None = None,
) -> FleetReport:
    """This member's part of the round (see the module's text), up to ``parallel`` of its
    groups at a time; returns what it saw. The service lost mid-round ends this member's part
    (the groups running here finish first): the report says so and keeps what was done."""
    here = state_dir_text(state_dir)
    board = _Serialised(board)  # the loop and the restarts' guards share one client
    board.join({"host": this_host(), "pid": str(os.getpid()), "state_dir": here})
    proposal = f"{utc_now().replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:6]}"
    round_id = board.open_round(proposal)
    log.info("fleet.joined", round=round_id, member=board.member)
    member = _Member(
        board=board,
        guard=_Guard(board, round_id, here),
        report=FleetReport(round=round_id, member=board.member),
        restart=restart,
        on_result=on_result,
        on_refusal=on_refusal,
        pending={key(g): g for g in groups},
    )
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="fleet") as pool:
        try:
            member.loop(pool, max(1, parallel), interrupts, sleep=sleep, now=now, poll=poll)
        except HarestartError as exc:  # the service stopped answering between groups
            member.report.error = f"coordination service lost: {exc}"
            log.warning("fleet.service_lost", round=round_id, error=str(exc))
        member.drain()
    _leave(board, member.report, round_id)
    return member.report


class _Serialised:
    """A board whose calls take turns (a service client is not shared across threads)."""

    def __init__(self, board: FleetBoard) -> None:
        self._board = board
        self._lock = threading.Lock()
        self.member = board.member

    def join(self, capabilities: dict[str, str]) -> None:
        with self._lock:
            self._board.join(capabilities)

    def members(self) -> set[str]:
        with self._lock:
            return self._board.members()

    def open_round(self, proposal: str) -> str:
        with self._lock:
            return self._board.open_round(proposal)

    def marks(self, round_id: str) -> dict[str, FleetMark]:
        with self._lock:
            return self._board.marks(round_id)

    def mark(self, round_id: str, mark: FleetMark) -> None:
        with self._lock:
            self._board.mark(round_id, mark)

    def leave(self) -> None:
        with self._lock:
            self._board.leave()

    def end_round(self, round_id: str) -> None:
        with self._lock:
            self._board.end_round(round_id)

    def close(self) -> None:
        with self._lock:
            self._board.close()


def _leave(board: FleetBoard, report: FleetReport, round_id: str) -> None:
    try:
        board.leave()
        if report.complete and not board.members():
            board.end_round(round_id)  # the last one out
            log.info("fleet.round_ended", round=round_id)
    except HarestartError as exc:  # the membership's lease ends it by itself
        log.warning("fleet.leave_failed", round=round_id, error=str(exc))


@dataclass
class _Member:
    """One bastion's loop state in a round (the loop runs in one thread; restarts in the
    pool's threads only call ``restart``)."""

    board: FleetBoard
    guard: _Guard
    report: FleetReport
    restart: Restart
    on_result: Callable[[RunResult], None] | None
    on_refusal: Callable[[Group, HarestartError], None] | None
    pending: dict[str, Group]
    retry_at: dict[str, float] = field(default_factory=dict)
    running: dict[str, tuple[Group, Future[RunResult]]] = field(default_factory=dict)

    def loop(
        self,
        pool: ThreadPoolExecutor,
        parallel: int,
        interrupts: InterruptFlag,
        *,
        sleep: Callable[[float], None],
        now: Callable[[], float],
        poll: float,
    ) -> None:
        while (self.pending or self.running or self.guard.unmarked) and not interrupts.requested:
            self.collect(now(), poll)
            self.guard.flush()
            group = self.next_group(now()) if len(self.running) < parallel else None
            if group is not None:
                self.running[key(group)] = (group, pool.submit(self.restart, group, self.guard))
            elif self.running:
                wait(
                    [f for _g, f in self.running.values()],
                    timeout=poll,
                    return_when=FIRST_COMPLETED,
                )
            else:
                sleep(poll)
        self.report.complete = not (self.pending or self.running or self.guard.unmarked)

    def drain(self) -> None:
        """Let the groups running here finish (an interrupt or a lost service stops new ones)."""
        wait([f for _g, f in self.running.values()])
        self.collect(float("inf"), 0.0)
        try:
            self.guard.flush()
        except HarestartError as exc:
            log.warning("fleet.marks_unwritten", marks=len(self.guard.unmarked), error=str(exc))

    def collect(self, now: float, poll: float) -> None:
        for k, (group, future) in list(self.running.items()):
            if future.done():
                del self.running[k]
                if not self.finished(group, future):
                    self.pending[k] = group
                    self.retry_at[k] = now + poll

    def next_group(self, now: float) -> Group | None:
        """The next pending group that is this member's now (marks and members re-read)."""
        marks = self.board.marks(self.guard.round_id)
        for k in [k for k in self.pending if k in marks]:
            del self.pending[k]
            _note_mark(self.report, marks[k])
        members = self.board.members() | {self.board.member}
        for k, g in self.pending.items():
            if owner(k, members) == self.board.member and self.retry_at.get(k, 0.0) <= now:
                del self.pending[k]
                return g
        return None

    def finished(self, group: Group, future: Future[RunResult]) -> bool:
        """Record a restart's end; False when its lock was held by another run (try later)."""
        k = key(group)
        try:
            result = future.result()
        except _Settled as settled:
            _note_mark(self.report, settled.mark)
            return True
        except LockHeld as exc:  # another run has it now: look again later
            log.info("fleet.lock_held", group=group.id, error=str(exc))
            return False
        except HarestartError as exc:
            self._refused(group, exc)
            return True
        if result.ok:
            self.report.restarted.append(k)
        else:
            self.report.failed.append({"group": k, "why": _result_detail(result)})
        if self.on_result is not None:
            self.on_result(result)
        return True

    def _refused(self, group: Group, exc: HarestartError) -> None:
        why = str(exc)
        if isinstance(exc, UsageError) and "unfinished" in why:
            why = f"blocked: {why}"  # a dead bastion's half-done run: resume it there
        self.report.failed.append({"group": key(group), "why": why})
        if self.on_refusal is not None:
            self.on_refusal(group, exc)
        try:
            self.board.mark(self.guard.round_id, self.guard.mark_of(group, ok=False, detail=why))
        except HarestartError as mark_error:
            log.warning("fleet.mark_failed", group=group.id, error=str(mark_error))


def _note_mark(report: FleetReport, mark: FleetMark) -> None:
    """A group marked in the round by another member (or by an earlier run of the round)."""
    if mark.group in report.restarted or any(f["group"] == mark.group for f in report.failed):
        return  # this member's own: already in the report
    if mark.outcome == "done":
        report.skipped.append({"group": mark.group, "why": mark.describe()})
    else:
        report.failed.append({"group": mark.group, "why": mark.describe()})
