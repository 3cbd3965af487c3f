"""Observing a group: every node and MHA are asked at the same time, results as before."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog

from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.topology import MhaStatus, ServerInfo
from harestart.engine.observe import observe_group, observe_mha, observe_node
from harestart.errors import MhaError
from tests.unit.fakes import FakeConnector, FakeMha, FakeProbe, FakeShell, FakeWorld
from tests.unit.test_executor import lab_group

# Generous: a serial observation fails with BrokenBarrierError after this, it never hangs.
MEETING_TIMEOUT = 10.0


class MeetingProbe(FakeProbe):
    """Answers only once every node's probe and MHA's status are in flight together."""

    def __init__(self, world: FakeWorld, name: str, meeting: Meeting) -> None:
        super().__init__(world, name)
        self.meeting = meeting

    def server_info(self) -> ServerInfo:
        self.meeting.arrive(self.name)
        return super().server_info()


class MeetingMha(FakeMha):
    def __init__(self, world: FakeWorld, meeting: Meeting) -> None:
        super().__init__(world, FakeShell(world, "mha"))
        self.meeting = meeting

    def status(self) -> MhaStatus:
        self.meeting.arrive("mha")
        return super().status()


class Meeting:
    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=MEETING_TIMEOUT)
        self.lock = threading.Lock()
        self.threads: dict[str, int] = {}
        self.context: dict[str, dict[str, Any]] = {}

    def arrive(self, who: str) -> None:
        with self.lock:
            self.threads[who] = threading.get_ident()
            self.context[who] = structlog.contextvars.get_contextvars()
        self.barrier.wait()


class MeetingConnector(FakeConnector):
    def __init__(self, world: FakeWorld, meeting: Meeting) -> None:
        super().__init__(world)
        self.meeting = meeting

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> MeetingProbe:
        return MeetingProbe(self.world, name, self.meeting)


@pytest.mark.parametrize("replicas", [1, 4])
def test_every_node_and_mha_are_observed_at_the_same_time(replicas: int) -> None:
    world = FakeWorld.create(replicas)
    group = lab_group(replicas)
    meeting = Meeting(parties=len(group.db_nodes) + 1)  # every node, and MHA
    with structlog.contextvars.bound_contextvars(group="lab", step="preflight"):
        state = observe_group(group, MeetingConnector(world, meeting), MeetingMha(world, meeting))
    assert not meeting.barrier.broken
    assert sorted(meeting.threads) == sorted([*(n.name for n in group.db_nodes), "mha"])
    assert len(set(meeting.threads.values())) == len(meeting.threads)  # one thread each
    assert threading.get_ident() not in meeting.threads.values()
    # Log events from inside the probes still carry the caller's group and step.
    assert all(c == {"group": "lab", "step": "preflight"} for c in meeting.context.values())
    assert [n.name for n in state.nodes] == [n.name for n in group.db_nodes]
    assert all(n.reachable for n in state.nodes) and state.mha is not None


class BrokenMha(FakeMha):
    def status(self) -> MhaStatus:
        raise MhaError("mha", "masterha_check_status", "exit status 255")


def test_parallel_observation_gives_the_serial_results_in_order_with_errors_per_node() -> None:
    world = FakeWorld.create(3)
    world.nodes["db2"].ssh_unreachable = True
    world.nodes["db3"].down_until, world.nodes["db3"].never_comes_back = 0.0, True
    world.nodes["db4"].io, world.nodes["db4"].lag = "Connecting", None
    group = lab_group(3)
    connector = FakeConnector(world)
    mha = BrokenMha(world, FakeShell(world, "mha"))

    state = observe_group(group, connector, mha)

    serial = tuple(observe_node(n, connector) for n in group.db_nodes)
    assert state.nodes == serial
    assert [n.name for n in state.nodes] == ["db1", "db2", "db3", "db4"]
    by_name = {n.name: n for n in state.nodes}
    assert by_name["db1"].reachable
    assert by_name["db2"].ssh_error == "connection refused" and by_name["db2"].info is not None
    assert "Can't connect to MySQL server" in (by_name["db3"].mysql_error or "")
    assert by_name["db4"].replica is not None and by_name["db4"].replica.io_running == "Connecting"
    assert (state.mha, state.mha_error) == observe_mha(mha) == (None, "exit status 255")


def test_observations_reuse_the_host_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host calls run on one pool for the process: observing a group again starts no new
    threads (a pool per observation started ~7 for every group observed, thousands in a fleet
    run)."""
    world = FakeWorld.create(2)
    group = lab_group(2)
    connector = FakeConnector(world)
    mha = FakeMha(world, FakeShell(world, "mha"))
    started: list[str] = []
    start = threading.Thread.start

    def counted(self: threading.Thread) -> None:
        started.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counted)
    calls = 2 * len(group.db_nodes) + 1  # SSH and MySQL of each node, and MHA
    for _ in range(30):
        observe_group(group, connector, mha)
    assert len(started) <= 2 * calls, started  # the first observation's, give or take
