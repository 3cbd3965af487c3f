"""The executor against scripted fakes: order, proofs, and stopping at the first failed gate."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from harestart.domain.group import Group
from harestart.domain.plan.build import build_plan
from harestart.domain.plan.model import PlanOptions
from harestart.domain.result import Failure, GroupStatus, RunResult, StepStatus
from harestart.domain.topology import MhaState
from harestart.engine.sequencer.executor import Executor
from harestart.errors import PreflightRefused
from harestart.inventory.load import parse_inventory
from tests.unit.fakes import FakeConnector, FakeMha, FakeNode, FakeShell, FakeWorld


def failure(result: RunResult) -> Failure:
    """The run's failure (a test that reads it has already asserted the run failed)."""
    assert result.failure is not None, "the run did not fail"
    return result.failure


def lab_group(replicas: int = 2) -> Group:
    reps = "".join(
        f"      - {{name: db{i}, address: 10.0.0.{i}}}\n" for i in range(2, replicas + 2)
    )
    text = (
        "defaults: {mysql: {user: harestart, password: pw-for-tests}, "
        "health: {restart_timeout: 30, catchup_timeout: 30, failover_timeout: 20}}\n"
        "groups:\n  - id: lab\n    account: '1'\n"
        "    source: {name: db1, address: 10.0.0.1}\n"
        f"    replicas:\n{reps}"
        "    mha: {manager: {name: mha, address: 10.0.0.9}, config: /etc/mha/app1.cnf}\n"
    )
    return parse_inventory(text, "inv.yml").groups[0]


def execute(
    world: FakeWorld, replicas: int = 2, options: PlanOptions | None = None
) -> tuple[Executor, RunResult]:
    group = lab_group(replicas)
    ex = Executor(
        group,
        build_plan(group, options),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
    )
    return ex, ex.run()


@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_happy_path_order_and_every_node_once(replicas: int) -> None:
    world = FakeWorld.create(replicas)
    _, result = execute(world, replicas)
    assert result.ok and result.state is GroupStatus.ACTIVE
    kinds = [(k, h) for k, h, _ in world.events if not k.startswith(("io_", "set_"))]
    assert kinds[0] == ("mha_stop", "mha")
    assert kinds[-1] == ("mha_start", "mha")
    restarts = [h for k, h in kinds if k == "restart"]
    assert restarts == [f"db{i}" for i in range(2, replicas + 2)] + ["db1"]
    assert all(n.restarts == 1 for n in world.nodes.values())
    assert all(s.status is StepStatus.DONE for s in result.steps)
    assert world.mha_state is MhaState.PING_OK


def test_replicas_reconnect_without_waiting_for_connect_retry() -> None:
    world = FakeWorld.create(2)
    _, result = execute(world, options=PlanOptions(detach_replicas=False))
    assert result.ok
    # The IO thread restarted (stopped and started) only once the source came back: never
    # detached before its restart.
    io = [(k, h, t) for k, h, t in world.events if k in ("io_stop", "io_start")]
    src_restart = next(t for k, h, t in world.events if k == "restart" and h == "db1")
    assert sorted((k, h) for k, h, _ in io) == sorted(
        (k, h) for k in ("io_stop", "io_start") for h in ("db2", "db3")
    )
    assert all(t > src_restart for _, _, t in io)


def _source_events(world: FakeWorld) -> list[tuple[str, str]]:
    """Events from the first IO stop on: what happened around the source's restart."""
    events = [(k, h) for k, h, _ in world.events]
    first = next(i for i, (k, _) in enumerate(events) if k == "io_stop")
    return [e for e in events[first:] if e[0] in ("io_stop", "io_start", "restart", "back")]


def test_replicas_are_detached_before_the_source_restart_and_reattached_when_it_answers() -> None:
    world = FakeWorld.create(2)
    _, result = execute(world)
    assert result.ok
    assert _source_events(world) == [
        ("io_stop", "db2"),
        ("io_stop", "db3"),
        ("restart", "db1"),
        ("back", "db1"),
        ("io_start", "db2"),
        ("io_start", "db3"),
    ]
    assert all(n.io == "Yes" for n in world.nodes.values() if n.role == "replica")


def test_lingering_binlog_dump_threads_delay_the_source_restart_only_up_to_the_bound() -> None:
    world = FakeWorld.create(2)
    world.dump_threads_linger = True
    with capture_logs() as logs:
        _, result = execute(world, options=PlanOptions(detach_timeout=3))
    assert result.ok
    stops = [t for k, _, t in world.events if k == "io_stop"]
    restart = next(t for k, h, t in world.events if k == "restart" and h == "db1")
    assert 3 <= restart - stops[-1] < 5
    assert any(e["event"] == "replica.senders_linger" for e in logs)


def test_a_failed_source_restart_starts_the_detached_io_threads_again() -> None:
    world = FakeWorld.create(2)
    world.nodes["db1"].restart_fails = True
    _, result = execute(world)
    assert not result.ok and failure(result).host == "db1"
    assert _source_events(world) == [
        ("io_stop", "db2"),
        ("io_stop", "db3"),
        ("io_start", "db2"),
        ("io_start", "db3"),
    ]
    assert all(n.io == "Yes" for n in world.nodes.values() if n.role == "replica")
    # ...so the replicas replicate again and MHA may be, and is, started again.
    assert result.failover_enabled is True


def test_super_read_only_is_noted_and_restored_exactly() -> None:
    world = FakeWorld.create(2)
    src = world.nodes["db1"]
    src.super_read_only = False  # a MySQL source: writable, super_read_only OFF
    for r in ("db2", "db3"):
        world.nodes[r].super_read_only = True  # replicas run super_read_only
    orig_up = world.up

    def up_and_wrong(n: FakeNode) -> bool:  # the config brings the source back super-read-only
        was_down = n.down_until is not None
        ok = orig_up(n)
        if ok and was_down and n.name == "db1":
            n.read_only, n.super_read_only = True, True
        return ok

    world.up = up_and_wrong  # type: ignore[method-assign]
    _, result = execute(world)
    assert result.ok
    assert (src.read_only, src.super_read_only) == (False, False)
    assert ("set_read_only", "db1:0-") in [(k, h) for k, h, _ in world.events]
    # Exactly the RestoreReadOnly action's statements, filled with the state noted before.
    restore = [s.shown() for h, s in world.sent if h == "db1" and "read_only" in s.text]
    assert restore == ["SET GLOBAL read_only = OFF", "SET GLOBAL super_read_only = OFF"]
    assert all(world.nodes[r].super_read_only for r in ("db2", "db3"))


def test_failed_restart_command_stops_the_run_and_leaves_the_source_alone() -> None:
    world = FakeWorld.create(2)
    world.nodes["db2"].restart_fails = True
    _, result = execute(world)
    assert not result.ok and result.state is GroupStatus.ERROR
    assert (
        failure(result).host == "db2" and "Job for mariadb.service failed" in failure(result).reason
    )
    assert world.nodes["db1"].restarts == 0 and world.nodes["db3"].restarts == 0
    statuses = {s.key: s.status for s in result.steps}
    assert statuses["restart_replica:db2"] is StepStatus.FAILED
    assert statuses["restart_source:db1"] is StepStatus.PENDING
    # db2 still runs and replicates (its restart never happened): MHA is safe, so it is back.
    assert result.failover_enabled is True and world.mha_state is MhaState.PING_OK
    assert "MHA was started again: automatic failover is ON" in failure(result).failover_note
    assert {n["name"] for n in result.nodes} == {"db1", "db2", "db3"}


def test_node_that_never_comes_back_fails_its_gate_after_the_deadline() -> None:
    world = FakeWorld.create(2)
    world.nodes["db2"].never_comes_back = True
    _, result = execute(world)
    assert not result.ok
    assert "db2: mysqld restarted (Uptime reset): not reached within 30 s" in failure(result).reason
    assert world.nodes["db1"].restarts == 0
    # db2 is down: MHA would not be safe, so it stays stopped, loudly.
    assert result.failover_enabled is False and world.mha_state is MhaState.NOT_RUNNING
    assert "automatic failover is OFF" in failure(result).failover_note
    assert any("MHA was stopped by this run" in h for h in failure(result).next_steps)


def test_broken_sql_thread_fails_at_once_with_the_server_error_text() -> None:
    world = FakeWorld.create(2)
    world.nodes["db2"].break_sql_after_restart = "Duplicate entry '7' for key 'PRIMARY'"
    t_before = world.clock.now()
    _, result = execute(world)
    assert not result.ok
    assert "Duplicate entry '7' for key 'PRIMARY'" in failure(result).reason
    assert world.clock.now() - t_before < 25  # failed on sight, not at the 30 s deadline
    assert world.nodes["db3"].restarts == 0 and world.nodes["db1"].restarts == 0


def test_preflight_refuses_and_changes_nothing() -> None:
    world = FakeWorld.create(2)
    world.nodes["db3"].source_id = 7  # replicates from somewhere else
    with pytest.raises(PreflightRefused, match="db3 replicates from server_id 7"):
        execute(world)
    assert world.events == []


def test_mha_failover_in_progress_is_refused_before_any_restart() -> None:
    world = FakeWorld.create(1)
    world.mha_state = MhaState.FAILOVER_RUNNING
    with pytest.raises(PreflightRefused, match="failing over"):
        execute(world, 1)
    assert not any(k == "restart" for k, _, _ in world.events)


def test_mha_that_does_not_stop_fails_before_any_restart() -> None:
    world = FakeWorld.create(1)
    world.mha_stop_ignored = True
    _, result = execute(world, 1)
    assert not result.ok and failure(result).step == "stop_failover:mha"
    assert not any(k == "restart" for k, _, _ in world.events)


def test_mha_dying_on_start_fails_with_its_log_tail() -> None:
    world = FakeWorld.create(1)
    world.mha_dies_on_start = True
    _, result = execute(world, 1)
    assert not result.ok and failure(result).step == "start_failover:mha"
    assert "Fake MHA log: died" in failure(result).reason


def test_mha_dying_on_start_is_told_by_its_process_not_by_the_clock() -> None:
    world = FakeWorld.create(1)
    world.mha_dies_on_start = True
    _, result = execute(world, 1)
    assert not result.ok and "MHA died after starting" in failure(result).reason
    # the process the start printed was asked about, before any timeout ran out
    asked = [(pid, t) for k, pid, t in world.events if k == "mha_alive"]
    start = next(t for k, _, t in world.events if k == "mha_start")
    assert asked and asked[0][0] == "4242"
    assert asked[-1][1] - start < 1  # failover_timeout is 20 s: not waited out


def test_mha_slow_to_start_is_waited_for_while_its_process_lives() -> None:
    # NOT_RUNNING for longer than the 10 s that used to mean "died" (a loaded manager host)
    world = FakeWorld.create(1)
    world.mha_slow_start = 30
    _, result = execute(world, 1)
    assert result.ok, result
    start = next(t for k, _, t in world.events if k == "mha_start")
    assert world.clock.now() - start > 10
    assert world.mha_slow_start == 0


def test_mha_not_running_before_is_left_stopped() -> None:
    world = FakeWorld.create(1)
    world.mha_state = MhaState.NOT_RUNNING
    _, result = execute(world, 1)
    assert result.ok
    start = next(s for s in result.steps if s.action.value == "start_failover")
    assert start.status is StepStatus.SKIPPED and "left stopped" in start.detail
    assert not any(k == "mha_start" for k, _, _ in world.events)


def test_read_only_is_restored_to_what_it_was() -> None:
    world = FakeWorld.create(1)
    src = world.nodes["db1"]
    orig_up = world.up

    def up_and_read_only(n: FakeNode) -> bool:  # the config brings the source back read-only
        was_down = n.down_until is not None
        ok = orig_up(n)
        if ok and was_down and n is src:
            n.read_only = True
        return ok

    world.up = up_and_read_only  # type: ignore[method-assign]
    _, result = execute(world, 1)
    assert result.ok and src.read_only is False


def test_fresh_mysqld_is_let_age_so_its_restart_can_be_proven() -> None:
    world = FakeWorld.create(1)
    world.nodes["db2"].started_at = world.clock.now()  # up for 0 s
    _, result = execute(world, 1)
    assert result.ok and world.nodes["db2"].restarts == 1


def test_every_step_ends_in_one_logged_sentence_with_group_and_step() -> None:
    world = FakeWorld.create(1)
    with capture_logs() as logs:
        execute(world, 1)
    finished = [e for e in logs if e["event"] == "step.finished"]
    assert [e["step"] for e in finished] == [
        "preflight",
        "stop_failover:mha",
        "restart_replica:db2",
        "restart_source:db1",
        "start_failover:mha",
        "verify",
    ]
    assert all(e["group"] == "lab" and e["detail"] for e in finished)


def run_with(world: FakeWorld, replicas: int, **options: Any) -> RunResult:
    from harestart.domain.plan.model import PlanOptions

    group = lab_group(replicas)
    plan = build_plan(group, PlanOptions(**options))
    ex = Executor(
        group,
        plan,
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
    )
    return ex.run()


def test_parallel_batch_restarts_two_replicas_together_keeping_one_healthy() -> None:
    import threading

    world = FakeWorld.create(3)
    # db2's and db3's restart commands must be in flight at the same moment, or this times out.
    world.restart_barrier = threading.Barrier(2, timeout=10)
    world.barrier_hosts = frozenset({"db2", "db3"})
    result = run_with(world, 3, replica_parallelism=2)
    assert result.ok
    order = [(k, h) for k, h, _ in world.events if k in ("restart", "back")]
    restarted = [h for k, h in order if k == "restart"]
    assert sorted(restarted[:2]) == ["db2", "db3"] and restarted[2:] == ["db4", "db1"]
    # db4 (the replica kept healthy) restarts only after both batch mates are back.
    db4 = order.index(("restart", "db4"))
    assert ("back", "db2") in order[:db4] and ("back", "db3") in order[:db4]


def test_failure_in_a_parallel_batch_stops_before_the_next_batch() -> None:
    world = FakeWorld.create(3)
    world.nodes["db3"].restart_fails = True
    result = run_with(world, 3, replica_parallelism=2)
    assert not result.ok and failure(result).host == "db3"
    assert world.nodes["db2"].restarts == 1  # its batch mate finished its restart
    assert world.nodes["db4"].restarts == 0 and world.nodes["db1"].restarts == 0


def test_preflush_flushes_then_the_restart_resets_the_setting() -> None:
    world = FakeWorld.create(1)
    result = run_with(world, 1, preflush=True)
    assert result.ok
    sets = [h for k, h, _ in world.events if k == "set_global"]
    assert sets == ["db1:innodb_max_dirty_pages_pct=0.000000"]
    src_restart = next(t for k, h, t in world.events if k == "restart" and h == "db1")
    assert world.nodes["db1"].dirty_pages == 0
    assert src_restart > 0
    assert world.nodes["db1"].variables["innodb_max_dirty_pages_pct"] == "90.000000"


def test_a_setting_before_that_is_not_a_number_is_never_sent_back() -> None:
    """#21 SQL paragraph: `SET GLOBAL ... = <value before>` sends a number as a parameter; a
    value read back that is no number is not sent (a warning), never a traceback."""
    world = FakeWorld.create(1)
    world.nodes["db1"].restart_fails = True
    world.nodes["db1"].variables["innodb_max_dirty_pages_pct"] = "90; SET GLOBAL read_only=0"
    result = run_with(world, 1, preflush=True)
    assert not result.ok and failure(result).host == "db1"
    sets = [h for k, h, _ in world.events if k == "set_global"]
    assert sets == ["db1:innodb_max_dirty_pages_pct=0.000000"]


def test_preflush_setting_is_restored_when_the_source_restart_fails() -> None:
    world = FakeWorld.create(1)
    world.nodes["db1"].restart_fails = True
    result = run_with(world, 1, preflush=True)
    assert not result.ok
    sets = [h for k, h, _ in world.events if k == "set_global"]
    assert sets == [
        "db1:innodb_max_dirty_pages_pct=0.000000",
        "db1:innodb_max_dirty_pages_pct=90.000000",
    ]


def test_an_unexpected_error_in_a_step_fails_it_and_the_failure_policy_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (here a ValueError from a gate, as the tagged-GTID parser of #22 raised) must not
    end the run with a traceback and MHA stopped: the step fails, MHA is restored when safe,
    and the result is reported."""
    from harestart.engine.ops import registry

    def broken(w: Any, gate: Any, st: Any) -> None:
        raise ValueError("invalid literal for int() with base 10: 'audit'")

    from harestart.domain.gates import CaughtUp

    monkeypatch.setitem(registry.EVALUATORS, CaughtUp, broken)
    world = FakeWorld.create(2)
    with capture_logs() as logs:
        _, result = execute(world)
    assert not result.ok and result.state is GroupStatus.ERROR
    assert failure(result).host == "db2"
    assert "unexpected error (a harestart bug" in failure(result).reason
    assert "ValueError: invalid literal for int() with base 10: 'audit'" in failure(result).reason
    assert world.nodes["db1"].restarts == 0  # the source was never restarted
    assert result.failover_enabled is True and world.mha_state is MhaState.PING_OK
    crashed = [e for e in logs if e["event"] == "step.crashed.traceback"]
    assert crashed and "Traceback" in crashed[0]["traceback"]


def test_a_server_that_is_not_the_inventorys_flavor_is_refused_before_any_change() -> None:
    """`flavor: mysql` promises MySQL 8.0.22+ (the plan a person read said REPLICA); the
    fakes are MariaDB 10.11: preflight refuses, naming each node and what it runs."""
    from dataclasses import replace

    from harestart.domain.topology import Flavor

    world = FakeWorld.create(2)
    group = replace(lab_group(2), flavor=Flavor.MYSQL)
    ex = Executor(
        group,
        build_plan(group),
        FakeConnector(world),
        FakeMha(world, FakeShell(world, "mha")),
        clock=world.clock,
    )
    with pytest.raises(PreflightRefused, match=r"db1 runs 10\.11.*`flavor: mysql`"):
        ex.run()
    assert world.events == []
