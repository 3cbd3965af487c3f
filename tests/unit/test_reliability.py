"""Lock, journal, resume, failure policy and interrupts, against the scripted fakes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from harestart.domain.plan.build import build_plan
from harestart.domain.result import GroupStatus, StepStatus, render_summary
from harestart.domain.topology import MhaState
from harestart.engine.sequencer.executor import Executor, FailurePolicy
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.state.journal import Journal, journal_path
from harestart.engine.state.lock import GroupLock, read_holder
from harestart.errors import Interrupted, LockHeld, PreflightRefused
from tests.unit.fakes import FakeConnector, FakeMha, FakeShell, FakeWorld
from tests.unit.test_executor import execute, failure, lab_group


def make(world: FakeWorld, journal: Journal | None = None, **kw: object) -> Executor:
    group = lab_group(len(world.nodes) - 1)
    return Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
        wall=world.clock.now,
        journal=journal,
        **kw,  # type: ignore[arg-type]
    )


def new_journal(tmp_path: Path) -> Journal:
    return Journal(
        path=journal_path(tmp_path, "1", "lab"), group="lab", account="1", inventory="inv.yml"
    )


# --- lock ------------------------------------------------------------------------------------


def test_second_holder_gets_the_first_ones_details(tmp_path: Path) -> None:
    with GroupLock(tmp_path, "1", "lab", command="harestart run"):
        with pytest.raises(LockHeld) as info:
            GroupLock(tmp_path, "1", "lab", command="harestart resume").acquire()
        assert f"pid {os.getpid()}" in str(info.value) and "harestart run" in str(info.value)
        holder, alive = read_holder(tmp_path, "1", "lab")
        assert alive and holder is not None and holder.pid == os.getpid()
    # released: free again, and not mistaken for a stale lock
    with GroupLock(tmp_path, "1", "lab", command="harestart run"):
        pass
    assert read_holder(tmp_path, "1", "lab") == (None, False)


def test_lock_of_a_killed_process_is_stale_and_broken_only_on_request(tmp_path: Path) -> None:
    code = (
        "import os, sys; from pathlib import Path; from harestart.engine.state.lock import GroupLock;"
        f"GroupLock(Path({str(tmp_path)!r}), '1', 'lab', command='harestart run').acquire();"
        "os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    holder, alive = read_holder(tmp_path, "1", "lab")
    assert holder is not None and not alive
    with pytest.raises(LockHeld, match=r"stale lock of a run that died.*--break-lock"):
        GroupLock(tmp_path, "1", "lab", command="harestart resume").acquire()
    with GroupLock(tmp_path, "1", "lab", command="harestart resume", break_stale=True):
        assert read_holder(tmp_path, "1", "lab")[1] is True


def test_lock_and_journal_files_are_owner_only(tmp_path: Path) -> None:
    with GroupLock(tmp_path, "1", "lab", command="x") as lock:
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(lock.path.parent.stat().st_mode) == 0o700
    j = new_journal(tmp_path)
    j.save()
    assert stat.S_IMODE(j.path.stat().st_mode) == 0o600


# --- journal and resume ----------------------------------------------------------------------


def test_journal_records_every_step_and_is_finished_after_success(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    result = make(world, new_journal(tmp_path)).run()
    assert result.ok
    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None and j.finished and j.outcome == "done"
    assert [s.status for s in j.steps] == ["done"] * 7
    assert j.topology == {"source": "db1", "source_server_id": 1, "replicas": {"db2": 2, "db3": 3}}
    assert j.mha_was_running is True
    restart_steps = [s for s in j.steps if s.key.startswith("restart_")]
    assert all(s.restart_issued_at is not None for s in restart_steps)


def test_refused_preflight_leaves_no_journal(tmp_path: Path) -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].sql, world.nodes["db2"].sql_error = "No", "boom"
    with pytest.raises(PreflightRefused):
        make(world, new_journal(tmp_path)).run()
    assert Journal.load(journal_path(tmp_path, "1", "lab")) is None


def test_interrupt_during_a_wait_stops_at_a_safe_point_and_resume_completes(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    flag = InterruptFlag()
    real_restart = world.restart

    def restart_then_interrupt(name: str) -> None:
        real_restart(name)
        if name == "db3":
            flag.request("SIGINT")  # arrives while harestart waits for db3 to come back

    world.restart = restart_then_interrupt  # type: ignore[method-assign]
    result = make(world, new_journal(tmp_path), interrupts=flag).run()
    assert result.interrupted == "SIGINT" and result.state is GroupStatus.ERROR
    steps = {s.key: s.status for s in result.steps}
    assert steps["restart_replica:db3"] is StepStatus.INTERRUPTED
    assert steps["restart_source:db1"] is StepStatus.PENDING
    assert world.nodes["db1"].restarts == 0
    assert world.mha_state is MhaState.NOT_RUNNING  # not started again after an interrupt
    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None and not j.finished and j.outcome == "interrupted"
    unfinished = j.first_unfinished()
    assert unfinished is not None and unfinished.key == "restart_replica:db3"

    world.restart = real_restart  # type: ignore[method-assign]
    world.clock.advance(30)
    resumed = make(world, j, resume=True).run()
    assert resumed.ok and resumed.resumed
    # db3 came back while we were away: it is not restarted a second time.
    assert [world.nodes[n].restarts for n in ("db1", "db2", "db3")] == [1, 1, 1]
    by_key = {s.key: s for s in resumed.steps}
    assert "earlier attempt" in by_key["restart_replica:db2"].detail
    assert "not restarted again" in by_key["restart_replica:db3"].detail
    assert world.mha_state.name == "PING_OK"  # (by name: mypy still sees the NOT_RUNNING above)
    reloaded = Journal.load(j.path)
    assert reloaded is not None and reloaded.finished


def test_interrupt_while_a_replica_restarts_stops_before_the_source_and_blames_no_node(
    tmp_path: Path,
) -> None:
    """Ctrl-C while db3's restart command runs: the command finishes, db3's gates hold, and the
    run stops at the next safe point, before restart_source:db1. That is no failure of db1."""
    world = FakeWorld.create(2)
    flag = InterruptFlag()
    real_restart = world.restart

    def restart_interrupted_meanwhile(name: str) -> None:
        real_restart(name)
        if name == "db3":
            flag.request("SIGINT")
            # `service mariadb restart` returns once mysqld is back: no wait, no safe point
            # inside db3's step, whose gates all hold at their first look.
            world.clock.advance(world.restart_downtime)

    world.restart = restart_interrupted_meanwhile  # type: ignore[method-assign]
    result = make(world, new_journal(tmp_path), interrupts=flag).run()

    assert result.interrupted == "SIGINT" and not result.ok and result.state is GroupStatus.ERROR
    steps = {s.key: s.status for s in result.steps}
    assert steps["restart_replica:db2"] is StepStatus.DONE
    assert steps["restart_replica:db3"] is StepStatus.DONE
    assert steps["restart_source:db1"] is StepStatus.PENDING  # never started: not failed
    assert steps["start_failover:mha"] is StepStatus.PENDING
    assert world.nodes["db1"].restarts == 0
    assert result.failure is None
    stop = result.interruption
    assert stop is not None and stop.before and stop.signal == "SIGINT"
    assert (stop.step, stop.last_done) == ("restart_source:db1", "restart_replica:db3")
    assert stop.untouched == ("db1",)
    assert not any("db1" in h and "mysqld" in h for h in stop.next_steps), stop.next_steps
    assert any("harestart resume" in h and "restart_source:db1" in h for h in stop.next_steps)
    assert "not touched by this run: db1" in stop.next_steps

    summary = render_summary(result)
    assert (
        "INTERRUPTED by SIGINT before restart_source:db1, after restart_replica:db3 finished"
        in summary
    ), summary
    assert "FAILED" not in summary and "look at mysqld" not in summary
    assert "automatic failover is OFF until `harestart resume`" in summary
    assert world.mha_state is MhaState.NOT_RUNNING  # not started again after an interrupt
    doc = result.to_dict()
    assert doc["failure"] is None and doc["interruption"]["step"] == "restart_source:db1"
    assert doc["interruption"]["before_step"] is True

    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None and not j.finished and j.outcome == "interrupted"
    first = j.first_unfinished()
    assert first is not None and (first.key, first.status) == ("restart_source:db1", "pending")

    world.restart = real_restart  # type: ignore[method-assign]
    resumed = make(world, j, resume=True).run()
    assert resumed.ok, resumed.failure
    assert [world.nodes[n].restarts for n in ("db1", "db2", "db3")] == [1, 1, 1]


def test_interrupt_inside_a_restart_step_names_it_and_only_nodes_it_did_not_touch(
    tmp_path: Path,
) -> None:
    world = FakeWorld.create(2)
    flag = InterruptFlag()
    real_restart = world.restart

    def restart_then_interrupt(name: str) -> None:
        real_restart(name)
        if name == "db2":
            flag.request("SIGTERM")  # arrives while harestart waits for db2 to come back

    world.restart = restart_then_interrupt  # type: ignore[method-assign]
    result = make(world, new_journal(tmp_path), interrupts=flag).run()
    stop = result.interruption
    assert stop is not None and not stop.before and stop.step == "restart_replica:db2"
    assert stop.untouched == ("db3", "db1")
    assert {s.key: s.status for s in result.steps}["restart_replica:db2"] is StepStatus.INTERRUPTED
    summary = render_summary(result)
    assert "INTERRUPTED by SIGTERM during restart_replica:db2" in summary, summary
    assert "not touched by this run: db3, db1" in summary and "FAILED" not in summary
    assert not any(h.startswith(("db1", "db3")) for h in stop.next_steps)


def test_resume_restarts_a_node_whose_restart_never_happened(tmp_path: Path) -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].restart_fails = True
    first = make(world, new_journal(tmp_path)).run()
    assert not first.ok
    world.nodes["db2"].restart_fails = False  # the operator fixed it
    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None
    second = make(world, j, resume=True).run()
    assert second.ok and world.nodes["db2"].restarts == 1 and world.nodes["db1"].restarts == 1


def test_resume_starts_a_node_left_down_by_the_failed_attempt(tmp_path: Path) -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].never_comes_back = True  # e.g. a broken option in its config
    first = make(world, new_journal(tmp_path)).run()
    assert not first.ok and first.failover_enabled is False
    assert world.nodes["db1"].restarts == 0
    world.nodes["db2"].never_comes_back = False  # config fixed, mysqld still down
    world.nodes["db2"].down_until = float("inf")
    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None
    # the fake starts db2 on the next restart command
    second = make(world, j, resume=True).run()
    assert second.ok, second.failure
    assert world.nodes["db2"].restarts == 2 and world.nodes["db1"].restarts == 1


def test_resume_refuses_when_the_topology_changed(tmp_path: Path) -> None:
    world = FakeWorld.create(2)
    world.nodes["db3"].restart_fails = True
    make(world, new_journal(tmp_path)).run()
    world.nodes["db3"].source_id = 2  # repointed at db2 meanwhile
    j = Journal.load(journal_path(tmp_path, "1", "lab"))
    assert j is not None
    with pytest.raises(PreflightRefused, match="db3 replicates from server_id 2"):
        make(world, j, resume=True).run()
    world.nodes["db3"].source_id = 1
    world.nodes["db1"].server_id = 9  # a different source server
    with pytest.raises(PreflightRefused, match="db1 now has server_id 9, it had 1"):
        make(world, j, resume=True).run()


def test_each_step_is_journalled_done_before_the_next_one_acts(tmp_path: Path) -> None:
    """A lone step's "done" rides on the next save (the next step's "running"): what the
    journal on disk says when each restart is sent, every step before it done."""
    world = FakeWorld.create(2)
    seen: dict[str, dict[str, str]] = {}
    restart = world.restart

    def noted(name: str) -> None:
        j = Journal.load(journal_path(tmp_path, "1", "lab"))
        assert j is not None
        seen[name] = {s.key: s.status for s in j.steps}
        restart(name)

    world.restart = noted  # type: ignore[method-assign]
    assert make(world, new_journal(tmp_path)).run().ok
    done_before = {
        "db2": ["stop_failover:mha"],
        "db3": ["stop_failover:mha", "restart_replica:db2"],
        "db1": ["stop_failover:mha", "restart_replica:db2", "restart_replica:db3"],
    }
    for node, steps in done_before.items():
        assert [seen[node][k] for k in steps] == ["done"] * len(steps), seen[node]
        assert seen[node][f"restart_{'source' if node == 'db1' else 'replica'}:{node}"] == "running"


def test_journal_never_contains_the_password(tmp_path: Path) -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].restart_fails = True
    make(world, new_journal(tmp_path)).run()
    text = journal_path(tmp_path, "1", "lab").read_text()
    assert "pw-for-tests" not in text
    lines = text.splitlines()
    assert len(lines) > 1 and all(json.loads(line)["group"] == "lab" for line in lines)


# --- failure policy --------------------------------------------------------------------------


def test_leave_stopped_policy_keeps_mha_off_even_when_healthy() -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].restart_fails = True
    result = make(world, failure_policy=FailurePolicy.LEAVE_STOPPED).run()
    assert not result.ok and result.failover_enabled is False
    assert "leave-mha-stopped" in failure(result).failover_note
    assert world.mha_state is MhaState.NOT_RUNNING


def test_source_that_does_not_come_back_leaves_mha_off() -> None:
    world = FakeWorld.create(2)
    world.nodes["db1"].never_comes_back = True
    result = make(world).run()
    assert failure(result).step == "restart_source:db1"
    assert result.failover_enabled is False and world.mha_state is MhaState.NOT_RUNNING
    assert "not healthy enough" in failure(result).failover_note
    nodes = {n["name"]: n for n in result.nodes}
    assert nodes["db1"]["reachable"] is False


def test_interrupted_exception_carries_exit_code_130() -> None:
    assert int(Interrupted("SIGTERM").exit_code) == 130


def test_check_free_says_what_acquire_would_without_taking_the_lock(tmp_path: Path) -> None:
    from harestart.engine.state.lock import check_free

    check_free(tmp_path, "1", "lab", break_stale=False)  # no lock file: free
    with (
        GroupLock(tmp_path, "1", "lab", command="harestart run"),
        pytest.raises(LockHeld, match="another harestart run holds group lab"),
    ):
        check_free(tmp_path, "1", "lab", break_stale=True)
    code = (
        "import os; from pathlib import Path; from harestart.engine.state.lock import GroupLock;"
        f"GroupLock(Path({str(tmp_path)!r}), '1', 'lab', command='harestart run').acquire();"
        "os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    with pytest.raises(LockHeld, match="stale lock"):
        check_free(tmp_path, "1", "lab", break_stale=False)
    check_free(tmp_path, "1", "lab", break_stale=True)  # the run may take it over


def test_resume_after_a_kill_between_detach_and_reattach_starts_the_io_threads_first(
    tmp_path: Path,
) -> None:
    world = FakeWorld.create(2)
    journal = new_journal(tmp_path)
    at_kill: dict[str, object] = {}
    real_restart = world.restart

    def restart_and_snapshot(name: str) -> None:
        real_restart(name)
        if name == "db1":  # what a kill -9 right after the source's restart command leaves
            at_kill["journal"] = journal.path.read_bytes()
            at_kill["io"] = {r: world.nodes[r].io for r in ("db2", "db3")}

    world.restart = restart_and_snapshot  # type: ignore[method-assign]
    assert make(world, journal).run().ok
    # Rewind to the moment of the kill: the journal on disk, the replicas' IO threads stopped.
    journal.path.write_bytes(at_kill["journal"])  # type: ignore[arg-type]
    assert at_kill["io"] == {"db2": "No", "db3": "No"}
    for name, io in at_kill["io"].items():
        world.nodes[name].io = io
    world.restart = real_restart  # type: ignore[method-assign]
    world.clock.advance(30)
    world.events.clear()
    j = Journal.load(journal.path)
    assert j is not None and j.memory["detached"] == ["db2", "db3"]

    resumed = make(world, j, resume=True).run()
    assert resumed.ok, resumed.failure
    assert [k for k, _, _ in world.events][:2] == ["io_start", "io_start"]  # before judging
    assert world.nodes["db1"].restarts == 1  # not restarted twice
    assert "detached" not in Journal.load(j.path).memory  # type: ignore[union-attr]


def test_a_gate_that_waits_says_what_on_once_and_one_that_holds_says_nothing_first() -> None:
    """The log has no record per gate start (most hold at once): a gate whose first look does
    not hold logs "wait.started" once, with what it waits on; every gate that held, "gate.held"."""
    world = FakeWorld.create(1)
    world.mha_slow_start = 30  # MHA answers NOT_RUNNING for a while after its start
    with structlog.testing.capture_logs() as events:
        _, result = execute(world, 1)
    assert result.ok, result
    waits = [(e["host"], e["what"]) for e in events if e["event"] == "wait.started"]
    assert waits == [  # what waited: mysqld coming back twice, MHA once; nothing else
        ("db2", "db2: mysqld restarted (Uptime reset)"),
        ("db1", "db1: mysqld restarted (Uptime reset)"),
        ("mha", "MHA monitoring (PING_OK)"),
    ]
    assert not any(e["event"] == "gate.start" for e in events)
    assert sum(e["event"] == "gate.held" for e in events) >= 5


def test_a_resume_waits_for_the_io_threads_it_started_again_before_judging(
    tmp_path: Path,
) -> None:
    """An IO thread just started is "Preparing" for a moment (MariaDB): the resume's preflight
    waits until it runs instead of refusing the group (seen on the lab under load)."""
    world = FakeWorld.create(2)
    world.nodes["db3"].restart_fails = True
    journal = new_journal(tmp_path)
    assert not make(world, journal).run().ok
    world.nodes["db3"].restart_fails = False
    j = Journal.load(journal.path)
    assert j is not None
    j.memory = {**j.memory, "detached": ["db2", "db3"]}  # killed with both IO threads stopped
    for name in ("db2", "db3"):
        world.nodes[name].io = "No"
        world.nodes[name].io_preparing_reads = 3
    resumed = make(world, j, resume=True).run()
    assert resumed.ok, resumed.failure
    assert all(world.nodes[n].io == "Yes" for n in ("db2", "db3"))
