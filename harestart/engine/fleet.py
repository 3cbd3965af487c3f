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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from harestart.adapters.protocols import FleetBoard, FleetMark
from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.result import RunResult, utc_now
from harestart.engine.coordination import state_dir_text, this_host
from harestart.engine.interrupts import InterruptFlag
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "member": self.member,
            "complete": self.complete,
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
    """Checked and written under the group's lock (``restart``'s ``guard``)."""

    board: FleetBoard
    round_id: str
    state_dir: str

    def claim(self, group: Group) -> None:
        mark = self.board.marks(self.round_id).get(key(group))
        if mark is not None:
            raise _Settled(mark)

    def settle(self, group: Group, result: RunResult) -> None:
        detail = "" if result.ok else _result_detail(result)
        self.board.mark(self.round_id, self.mark_of(group, ok=result.ok, detail=detail))

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
    on_result: Callable[[RunResult], None] | None = None,
    on_refusal: Callable[[Group, HarestartError], None] | None = None,
) -> FleetReport:
    """This member's part of the round (see the module's text); returns what it saw."""
    here = state_dir_text(state_dir)
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
    try:
        while member.pending and not interrupts.requested:
            group = member.next_group(now())
            if group is None:
                sleep(poll)
            elif not member.take(group):
                member.retry_at[key(group)] = now() + poll
        member.report.complete = not member.pending
    finally:
        board.leave()
    if member.report.complete and not board.members():
        board.end_round(round_id)  # the last one out
        log.info("fleet.round_ended", round=round_id)
    return member.report


@dataclass
class _Member:
    """One bastion's loop state in a round."""

    board: FleetBoard
    guard: _Guard
    report: FleetReport
    restart: Restart
    on_result: Callable[[RunResult], None] | None
    on_refusal: Callable[[Group, HarestartError], None] | None
    pending: dict[str, Group]
    retry_at: dict[str, float] = field(default_factory=dict)

    def next_group(self, now: float) -> Group | None:
        """The next pending group that is this member's now (marks and members re-read)."""
        marks = self.board.marks(self.guard.round_id)
        for k in [k for k in self.pending if k in marks]:
            del self.pending[k]
            _note_mark(self.report, marks[k])
        members = self.board.members() | {self.board.member}
        for k, g in self.pending.items():
            if owner(k, members) == self.board.member and self.retry_at.get(k, 0.0) <= now:
                return g
        return None

    def take(self, group: Group) -> bool:
        """Restart the group; False when its lock is held by another run (try later)."""
        k = key(group)
        try:
            result = self.restart(group, self.guard)
        except _Settled as settled:
            del self.pending[k]
            _note_mark(self.report, settled.mark)
            return True
        except LockHeld as exc:  # another run has it now: look again later
            log.info("fleet.lock_held", group=group.id, error=str(exc))
            return False
        except HarestartError as exc:
            del self.pending[k]
            self._refused(group, exc)
            return True
        del self.pending[k]
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
