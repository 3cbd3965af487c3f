"""``run --all`` on several bastions sharing one coordination service (fleet mode, #12).

The service is tooz's own ``file://`` driver (a real tooz backend, as in test_coordination);
the "bastions" are threads in this process, each with its own state directory and
Environment, over one set of fake groups (so every node's restart count is shared).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from harestart import cli
from harestart.adapters.coordination import ToozCoordination, ToozFleet
from harestart.adapters.protocols import FleetMark
from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.result import RunResult
from harestart.engine.coordination import my_mark
from harestart.engine.execute import Outcome as FleetOutcome
from harestart.engine.execute import execute
from harestart.engine.fleet import FleetReport, fleet_name, owner, restart_fleet
from harestart.engine.prepare import fleet_mode, prepare
from harestart.engine.run import Environment, RunRequest
from harestart.engine.run import restart as engine_restart
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.waiting import ManualClock
from harestart.errors import CoordinationUnavailable, ExitCode, LockHeld
from harestart.inventory.load import parse_inventory
from harestart.views.outcome import render_fleet
from harestart.wiring import marks as real_marks

from .test_cli_run import Lab, Outcome, inventory_text

GROUPS = ["a", "b", "c", "d", "e", "f"]
LEASE = 6  # seconds: the file driver's membership timeout, with room for a loaded machine
# (at 2 s, a heartbeat thread starved for 2 s on two busy cores lost the lease: a flake)


class PacedClock(ManualClock):
    """The fakes' manual clock, whose sleeps also pass a little real time: the bastions'
    threads take turns, and the service's leases (real time) can expire."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        time.sleep(0.002)


class FleetLab(Lab):
    """Six groups on fakes, ``defaults.coordination`` on a file:// service, and one
    Environment per bastion (its own state directory)."""

    def setup(self) -> None:
        self.clock = PacedClock(1000.0)
        for w in self.worlds.values():
            w.clock = self.clock
        self.url = f"file://{self.tmp / 'service'}"
        text = inventory_text(self.group_ids).replace(
            "defaults: {", f"defaults: {{coordination: {{url: '{self.url}', lease: {LEASE}}}, "
        )
        self.inventory.write_text(text)

    def groups(self) -> tuple[Group, ...]:
        return parse_inventory(self.inventory.read_text(), str(self.inventory)).groups

    def bastion(self, name: str) -> Environment:
        """A bastion: its own state directory and its own coordination session (one process
        stands in for several bastions here)."""

        def coordination(group: Group, state_dir: Path) -> Any:
            assert group.coordination is not None
            return ToozCoordination(group.coordination, group.id, scope=name)

        def fleet(settings: CoordinationSettings, fleet: str) -> ToozFleet:
            return ToozFleet(settings, fleet, scope=name)

        return Environment(
            connector=self.connector,
            failover_manager=self.failover_manager,
            state_dir=self.tmp / name,
            clock=self.clock,
            wall=self.clock.now,
            coordination=coordination,
            marks=real_marks,
            fleet=fleet,
            fleet_poll=0.05,
        )

    @property
    def env(self) -> Environment:
        return self.bastion("bastion1")

    def board(self, scope: str = "board") -> ToozFleet:
        g = self.groups()
        assert g[0].coordination is not None
        return ToozFleet(g[0].coordination, fleet_name(g), scope=scope)


@pytest.fixture
def fleet_lab(tmp_path: Path) -> Iterator[FleetLab]:
    lab = FleetLab(tmp_path, GROUPS)
    lab.setup()
    yield lab
    structlog.reset_defaults()


def run_bastions(x: FleetLab, names: list[str]) -> dict[str, FleetOutcome]:
    """``run --all`` of every group on each bastion (prepare, execute), all started together."""
    groups = x.groups()
    outcomes: dict[str, FleetOutcome] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(names))

    def bastion(name: str) -> None:
        try:
            start.wait()
            request = RunRequest(inventory=str(x.inventory))
            prepared = prepare(groups, request, x.bastion(name))
            outcomes[name] = execute(prepared, interrupts=InterruptFlag())
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=bastion, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert set(outcomes) == set(names)
    return outcomes


def keys(ids: list[str]) -> set[str]:
    return {f"1/{g}" for g in ids}


def test_fleet_mode_needs_a_shared_service_and_several_groups(fleet_lab: FleetLab) -> None:
    x = fleet_lab
    groups = x.groups()
    assert fleet_mode(groups, env=x.env)
    assert not fleet_mode(groups, env=x.env, resume=True)  # resume: this bastion's own runs
    assert not fleet_mode(groups[:1], env=x.env)  # --group: the lock says who does it
    local = parse_inventory(inventory_text(GROUPS), "inv.yml").groups  # the local lock
    assert not fleet_mode(local, env=x.env)


def test_the_owner_of_a_group_is_stable_and_spread() -> None:
    members = {"m1", "m2", "m3"}
    owners = {g: owner(g, members) for g in [f"1/g{i}" for i in range(30)]}
    assert set(owners.values()) == members  # every member gets a share
    # one member leaving hands over its own groups only
    after = {g: owner(g, members - {"m2"}) for g in owners}
    assert all(after[g] == o for g, o in owners.items() if o != "m2")


def test_three_bastions_restart_every_group_exactly_once(fleet_lab: FleetLab) -> None:
    x = fleet_lab
    outcomes = run_bastions(x, ["bastion1", "bastion2", "bastion3"])
    for g in GROUPS:
        assert x.restarts(g) == [1, 1, 1], g
    reports = {n: o.fleet for n, o in outcomes.items()}
    assert all(r is not None for r in reports.values())
    restarted = [k for r in reports.values() if r is not None for k in r.restarted]
    assert sorted(restarted) == sorted(keys(GROUPS))  # once each, in total
    assert len({r.round for r in reports.values() if r is not None}) == 1  # one round
    for name, r in reports.items():
        assert r is not None and r.ok and not r.failed, (name, r)
        # each bastion's report covers every group: restarted here or skipped (done by another)
        assert set(r.restarted) | {s["group"] for s in r.skipped} == keys(GROUPS)
        assert all(s["why"].startswith("done by ") for s in r.skipped)
        assert [res.group for res in outcomes[name].results] == [
            g for g in GROUPS if f"1/{g}" in r.restarted
        ]
    # the last one out deleted the round: a new --all starts a new one
    board = x.board()
    try:
        round_id = next(r.round for r in reports.values() if r is not None)
        assert board.marks(round_id) == {}
    finally:
        board.close()


def test_a_dead_members_groups_are_taken_over_after_its_lease(fleet_lab: FleetLab) -> None:
    x = fleet_lab
    ghost = x.board("ghost")  # a bastion that joined the round, then died (no heartbeat, no leave)
    ghost.join({"host": "ghost"})
    round_id = ghost.open_round("0-ghost")
    ghost._session._stop.set()  # its heartbeat thread stops
    outcomes = run_bastions(x, ["bastion1", "bastion2"])
    for g in GROUPS:
        assert x.restarts(g) == [1, 1, 1], g
    reports = [o.fleet for o in outcomes.values()]
    assert all(r is not None and r.round == round_id and r.ok for r in reports)
    restarted = sorted(k for r in reports if r is not None for k in r.restarted)
    assert restarted == sorted(keys(GROUPS))
    ghost.close()


def test_a_dead_bastions_half_done_group_is_reported_blocked_not_restarted(
    fleet_lab: FleetLab, capsys: pytest.CaptureFixture[str]
) -> None:
    x = fleet_lab
    groups = {g.id: g for g in x.groups()}
    # a bastion killed while restarting c: its lease expired, its unfinished mark stays
    settings = groups["c"].coordination
    assert settings is not None
    dead = ToozCoordination(settings, "c")
    dead.mark_unfinished(
        groups["c"],
        my_mark(run_id="run-dead", started_at="2026-01-01T00:00:00+00:00", state_dir=x.tmp / "d"),
    )
    dead.close()
    outcomes = run_bastions(x, ["bastion1", "bastion2"])
    assert x.restarts("c") == [0, 0, 0]  # never restarted blindly
    for g in set(GROUPS) - {"c"}:
        assert x.restarts(g) == [1, 1, 1], g
    reports = [o.fleet for o in outcomes.values() if o.fleet is not None]
    assert len(reports) == 2 and all(r.complete and not r.ok for r in reports)
    for r in reports:
        (failed,) = r.failed  # each knows: one bastion found it blocked, the other its mark
        assert failed["group"] == "1/c"
        assert "blocked" in failed["why"] and "run-dead" in failed["why"], failed
    restarted = sorted(k for r in reports for k in r.restarted)
    assert restarted == sorted(keys(GROUPS) - {"1/c"})


def harestart(x: FleetLab, capsys: pytest.CaptureFixture[str], *args: str) -> Outcome:
    command, *rest = args
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, str(x.inventory), *rest], env=x.env)
    out, err = capsys.readouterr()
    code = exit_.value.code
    return Outcome(code if isinstance(code, int) else -1, out, err)


def test_run_all_json_lists_the_fleet_and_continues_a_round_whose_members_all_died(
    fleet_lab: FleetLab, capsys: pytest.CaptureFixture[str]
) -> None:
    x = fleet_lab
    ghost = x.board()  # every member of this round died after a and b were done
    round_id = ghost.open_round("0-earlier")
    for g in ("a", "b"):
        mark = FleetMark(f"1/{g}", "done", "elsewhere", 4242, "/var/lib/harestart")
        ghost.mark(round_id, mark)
    ghost.close()
    r = harestart(x, capsys, "run", "--all", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    doc = r.json()
    assert [d["group"] for d in doc["results"]] == ["c", "d", "e", "f"]
    fleet = doc["fleet"]
    assert fleet["round"] == round_id and fleet["complete"]
    assert fleet["restarted"] == ["1/c", "1/d", "1/e", "1/f"]
    assert fleet["failed"] == []
    assert [s["group"] for s in fleet["skipped"]] == ["1/a", "1/b"]
    assert "done by elsewhere/pid 4242" in fleet["skipped"][0]["why"]
    assert x.restarts("a") == [0, 0, 0] and x.restarts("c") == [1, 1, 1]
    assert "fleet mode" in r.err
    # the round is over (the last one out deleted it): the next --all is a new round
    r = harestart(x, capsys, "run", "--all", "--yes")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [1, 1, 1] and x.restarts("c") == [2, 2, 2]
    assert "restarted here: 1/a" in r.out


class RefusalWatch:
    """A group's real coordination backend that sets ``refused`` when it finds ``group_id``
    locked by another run (LockHeld from acquire or check_free)."""

    def __init__(self, inner: Any, group_id: str, refused: threading.Event) -> None:
        self.inner, self.group_id, self.refused = inner, group_id, refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _watch(self, group: Group, call: Any) -> Any:
        try:
            return call()
        except LockHeld:
            if group.id == self.group_id:
                self.refused.set()
            raise

    def acquire(self, group: Group, *args: Any, **kwargs: Any) -> Any:
        return self._watch(group, lambda: self.inner.acquire(group, *args, **kwargs))

    def check_free(self, group: Group, *args: Any, **kwargs: Any) -> Any:
        return self._watch(group, lambda: self.inner.check_free(group, *args, **kwargs))


def test_a_group_locked_by_another_run_is_left_for_later_then_done_once(
    fleet_lab: FleetLab,
) -> None:
    x = fleet_lab
    groups = {g.id: g for g in x.groups()}
    settings = groups["b"].coordination
    assert settings is not None
    other = ToozCoordination(settings, "b", heartbeat_interval=0.2)
    from harestart.engine.coordination import my_holder

    held = other.acquire(
        groups["b"],
        my_holder(command="harestart run", state_dir=x.tmp / "other"),
        break_stale=False,
        on_lost=lambda _r: None,
    )
    # The other run ends once bastion1 has found b locked (not after a guessed delay).
    refused = threading.Event()
    bastion = x.bastion

    def watched(name: str) -> Environment:
        def coordination(group: Group, state_dir: Path) -> Any:
            assert group.coordination is not None
            inner = ToozCoordination(group.coordination, group.id, scope=name)
            return RefusalWatch(inner, "b", refused)

        return replace(bastion(name), coordination=coordination)

    x.bastion = watched  # type: ignore[method-assign]

    def release_once_refused() -> None:
        if refused.wait(60):
            held.release()

    released = threading.Thread(target=release_once_refused)
    released.start()
    try:
        outcomes = run_bastions(x, ["bastion1"])
        found_locked = refused.is_set()
    finally:
        refused.set()
        released.join()
        other.close()
    assert found_locked  # the run met b locked by the other run first
    report = outcomes["bastion1"].fleet
    assert report is not None and report.ok
    assert sorted(report.restarted) == sorted(keys(GROUPS))
    assert x.restarts("b") == [1, 1, 1]


def test_a_group_failed_on_another_bastion_makes_the_exit_code_1(
    fleet_lab: FleetLab, capsys: pytest.CaptureFixture[str]
) -> None:
    x = fleet_lab
    ghost = x.board()  # a round whose member failed group a, then died
    round_id = ghost.open_round("0-failed")
    ghost.mark(round_id, FleetMark("1/a", "failed", "elsewhere", 4242, "/s", "GateFailed: lag"))
    ghost.close()
    r = harestart(x, capsys, "run", "--all", "--yes", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED, r.err
    fleet = r.json()["fleet"]
    assert fleet["complete"] and fleet["restarted"] == [f"1/{g}" for g in GROUPS[1:]]
    (failed,) = fleet["failed"]
    assert failed["group"] == "1/a" and "failed by elsewhere/pid 4242" in failed["why"]
    assert "GateFailed: lag" in failed["why"]
    assert x.restarts("a") == [0, 0, 0]
    r = harestart(x, capsys, "run", "--all", "--yes")  # text: the same lists
    assert "restarted here: 1/a" in r.out and r.code == ExitCode.OK, r.err


class FlakyBoard:
    """The real file:// board, whose ``mark`` or ``marks`` can be told to fail (the service
    stopped answering) for a number of calls."""

    def __init__(self, board: ToozFleet) -> None:
        self.board = board
        self.member = board.member
        self.fail_marks_after: int | None = None  # marks() answers this many times, then fails
        self.fail_mark = 0  # the next N mark() calls fail
        self.marks_calls = 0
        self.written: list[str] = []  # the groups whose mark() the service took

    def _down(self) -> CoordinationUnavailable:
        return CoordinationUnavailable("fleet", "coordination service file://x does not answer")

    def join(self, capabilities: dict[str, str]) -> None:
        self.board.join(capabilities)

    def members(self) -> set[str]:
        return self.board.members()

    def open_round(self, proposal: str) -> str:
        return self.board.open_round(proposal)

    def marks(self, round_id: str) -> dict[str, FleetMark]:
        self.marks_calls += 1
        if self.fail_marks_after is not None and self.marks_calls > self.fail_marks_after:
            raise self._down()
        return self.board.marks(round_id)

    def mark(self, round_id: str, mark: FleetMark) -> None:
        if self.fail_mark:
            self.fail_mark -= 1
            raise self._down()
        self.board.mark(round_id, mark)
        self.written.append(mark.group)

    def leave(self) -> None:
        self.board.leave()

    def end_round(self, round_id: str) -> None:
        self.board.end_round(round_id)

    def close(self) -> None:
        self.board.close()


def fleet_of(
    x: FleetLab, board: FlakyBoard, *, parallel: int = 1, restart: Any = None
) -> FleetReport:
    groups = x.groups()
    env = x.bastion("bastion1")

    def one(group: Group, guard: Any) -> RunResult:
        return engine_restart(group, RunRequest(inventory=str(x.inventory)), env=env, guard=guard)

    return restart_fleet(
        groups,
        board=board,
        restart=restart or one,
        state_dir=env.state_dir,
        interrupts=InterruptFlag(),
        sleep=x.clock.sleep,
        now=x.clock.now,
        poll=0.05,
        parallel=parallel,
    )


def test_parallel_groups_restart_that_many_groups_of_the_share_at_once(
    fleet_lab: FleetLab,
) -> None:
    """--parallel-groups holds in fleet mode: two restarts must be running together to pass
    the barrier (one at a time, the first would wait alone and break it)."""
    x = fleet_lab
    together = threading.Barrier(2, timeout=10)
    env = x.bastion("bastion1")
    overlapped: list[str] = []

    def one(group: Group, guard: Any) -> RunResult:
        if group.id in ("a", "b"):
            together.wait()
            overlapped.append(group.id)
        return engine_restart(group, RunRequest(inventory=str(x.inventory)), env=env, guard=guard)

    board = FlakyBoard(x.board())
    try:
        report = fleet_of(x, board, parallel=2, restart=one)
    finally:
        board.close()
    assert sorted(overlapped) == ["a", "b"]
    assert report.ok and sorted(report.restarted) == sorted(keys(GROUPS))
    for g in GROUPS:
        assert x.restarts(g) == [1, 1, 1], g


def test_a_mark_the_service_refused_after_a_restart_is_written_later_not_a_failure(
    fleet_lab: FleetLab,
) -> None:
    x = fleet_lab
    board = FlakyBoard(x.board())
    board.fail_mark = 1  # the first group's restart ends while the service does not answer
    try:
        report = fleet_of(x, board)
        assert report.ok and report.error is None
        assert sorted(report.restarted) == sorted(keys(GROUPS))
        # every group was marked once in the round: the refused mark was written again
        assert sorted(board.written) == sorted(keys(GROUPS))
    finally:
        board.close()
    for g in GROUPS:
        assert x.restarts(g) == [1, 1, 1], g


def test_the_service_lost_mid_round_stops_this_bastion_and_keeps_what_it_did(
    fleet_lab: FleetLab,
) -> None:
    x = fleet_lab
    board = FlakyBoard(x.board())
    board.fail_marks_after = 4  # the loop's and the guard's look at the marks: 2 groups' worth
    try:
        report = fleet_of(x, board)
    finally:
        board.close()
    assert report.error is not None and "does not answer" in report.error
    assert not report.complete and not report.ok
    done = [g for g in GROUPS if x.restarts(g) == [1, 1, 1]]
    assert done and len(done) < len(GROUPS)
    assert sorted(report.restarted) == sorted(keys(done))  # reported: exactly those
    assert all(x.restarts(g) in ([0, 0, 0], [1, 1, 1]) for g in GROUPS)  # none half-done
    text = render_fleet(report)
    assert "STOPPED: coordination service lost" in text
    assert "run --all again to continue it" in text
