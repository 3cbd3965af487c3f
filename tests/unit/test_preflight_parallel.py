"""Preflight in parallel (#24): groups probed side by side up to a bound, a node's SSH and MySQL
asked together, results in inventory order, one group's crash that group's refusal.

The fakes block on Events: nothing here sleeps or measures time. Waits have generous deadlines
(a wrong implementation fails them, it never hangs).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
import structlog

from harestart.adapters.protocols import CommandResult, Connector, FailoverManager
from harestart.domain.endpoints import MysqlEndpoint, SshEndpoint
from harestart.domain.group import Group
from harestart.domain.topology import MhaStatus, ServerInfo
from harestart.engine import fanout
from harestart.engine.fanout import PREFLIGHT_PARALLEL, Together, fan_out
from harestart.engine.observe import observe_group
from harestart.engine.prepare import Prepared, prepare
from harestart.engine.run import RunRequest, observe_groups
from harestart.engine.sequencer.waiting import poll_until
from harestart.errors import ExitCode, MysqlError, PreflightRefused, SshError
from harestart.inventory.load import load_inventory
from tests.unit.fakes import FakeConnector, FakeMha, FakeProbe, FakeShell, FakeWorld
from tests.unit.test_cli_run import Harestart, Lab, harestart
from tests.unit.test_executor import lab_group

__all__ = ["harestart"]  # the fixture

WAIT = 10.0  # seconds: generous; only a wrong implementation ever reaches it
IDS = list("abcdefghijkl")  # 12 groups


# --- groups in flight ---------------------------------------------------------------------------


class InFlight:
    """Counts the groups whose probe is in flight (inside MHA's status, one per group) and
    holds each there until the test releases it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.now = 0
        self.most = 0
        self.entered: list[str] = []
        self.releases: dict[str, threading.Event] = {}
        self.threads: set[int] = set()  # the threads that probed (preflight's workers)

    def enter(self, group: str) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.entered.append(group)
            release = self.releases.setdefault(group, threading.Event())
            self.changed.notify_all()
        assert release.wait(WAIT), f"{group} was never released"

    def leave(self) -> None:
        with self.lock:
            self.now -= 1

    def step_through(self, total: int, bound: int) -> None:
        """Release the groups one at a time, first entered first: after each release one
        more may enter, never more. Waits each time for as many as the bound lets in."""
        for released in range(total):
            expected = min(total, released + bound)
            with self.changed:
                entered = self.changed.wait_for(
                    lambda n=expected: len(self.entered) >= n,  # type: ignore[misc]
                    timeout=WAIT,
                )
                assert entered, f"{len(self.entered)} groups entered, {expected} expected"
                assert self.now <= bound, f"{self.now} groups in flight"
                release = self.releases[self.entered[released]]
            release.set()


class HeldMha(FakeMha):
    def __init__(self, world: FakeWorld, shell: FakeShell, group: str, hold: InFlight) -> None:
        super().__init__(world, shell)
        self.group, self.hold = group, hold

    def status(self) -> MhaStatus:
        self.hold.enter(self.group)
        try:
            return super().status()
        finally:
            self.hold.leave()


@dataclass
class HeldLab(Lab):
    """A Lab whose groups' probes wait in MHA's status on ``hold``."""

    hold: InFlight = field(default_factory=InFlight)

    def failover_manager(self, group: Group, connector: Connector) -> FailoverManager:
        with self.hold.lock:  # on the thread that probes the group
            self.hold.threads.add(threading.get_ident())
        world = self.worlds[group.id]
        return HeldMha(world, FakeShell(world, f"mha-{group.id}"), group.id, self.hold)


@pytest.fixture
def held(tmp_path: Path) -> Iterator[HeldLab]:
    yield HeldLab(tmp_path, IDS)
    structlog.reset_defaults()


def groups_of(x: Lab) -> tuple[Group, ...]:
    return load_inventory(x.inventory).groups


@pytest.mark.parametrize("bound", [1, 4, 12])
def test_groups_are_probed_up_to_the_bound_at_once_and_never_more(
    held: HeldLab, bound: int
) -> None:
    request = RunRequest(inventory=str(held.inventory), preflight_parallel=bound)
    found: list[Prepared] = []
    runner = threading.Thread(
        target=lambda: found.append(prepare(groups_of(held), request, held.env))
    )
    runner.start()
    try:
        held.hold.step_through(len(IDS), bound)
    finally:
        for release in held.hold.releases.values():
            release.set()
        runner.join(WAIT)
    assert not runner.is_alive()
    assert held.hold.most == bound and len(held.hold.threads) <= bound
    (prepared,) = found
    assert [r.group.id for r in prepared.ready] == IDS and not prepared.refusals
    prepared.close()


def test_the_default_bound_is_32_on_the_command_line(tmp_path: Path, harestart: Harestart) -> None:
    ids = [f"g{i:02d}x" for i in range(40)]
    x = HeldLab(tmp_path, ids)
    result: list[int] = []

    def status() -> None:
        result.append(harestart(x, "status", "--format", "json").code)

    runner = threading.Thread(target=status)
    runner.start()
    try:
        x.hold.step_through(len(ids), PREFLIGHT_PARALLEL)
    finally:
        for release in x.hold.releases.values():
            release.set()
        runner.join(WAIT)
    assert result == [ExitCode.OK]
    assert x.hold.most == PREFLIGHT_PARALLEL == 32 and len(x.hold.threads) <= 32
    structlog.reset_defaults()


# --- inventory order ----------------------------------------------------------------------------


class ReverseMha(FakeMha):
    """Answers only once the next group (in inventory order) answered: the groups finish
    last-first."""

    def __init__(
        self,
        world: FakeWorld,
        shell: FakeShell,
        after: threading.Event | None,
        done: threading.Event,
        order: list[str],
    ) -> None:
        super().__init__(world, shell)
        self.after, self.done, self.order = after, done, order

    def status(self) -> MhaStatus:
        if self.after is not None:
            assert self.after.wait(WAIT), "the next group never answered"
        try:
            return super().status()
        finally:
            self.order.append(self.shell.host.removeprefix("mha-"))
            self.done.set()


@dataclass
class ReverseLab(Lab):
    """Its groups' probes finish last-first (``order``: the order they finished in)."""

    finished: dict[str, threading.Event] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reset()

    def reset(self) -> None:
        self.finished = {g: threading.Event() for g in self.group_ids}
        self.order = []

    def failover_manager(self, group: Group, connector: Connector) -> FailoverManager:
        ids = self.group_ids
        i = ids.index(group.id)
        after = self.finished[ids[i + 1]] if i + 1 < len(ids) else None
        world = self.worlds[group.id]
        return ReverseMha(
            world, FakeShell(world, f"mha-{group.id}"), after, self.finished[group.id], self.order
        )


def unhealthy(x: Lab, *group_ids: str) -> None:
    for g in group_ids:
        x.worlds[g].nodes[f"{g}2"].io = "No"


def test_results_and_refusals_come_in_inventory_order_whatever_order_the_probes_end(
    tmp_path: Path,
) -> None:
    x = ReverseLab(tmp_path, list("abcdef"))
    unhealthy(x, "b", "e")
    request = RunRequest(inventory=str(x.inventory), preflight_parallel=6)
    with prepare(groups_of(x), request, x.env) as prepared:
        assert x.order == list("fedcba")  # they finished last-first
        assert [r.group.id for r in prepared.ready] == list("acdf")
        assert [r.group.id for r in prepared.refusals] == list("be")
        assert all(isinstance(r.error, PreflightRefused) for r in prepared.refusals)
    structlog.reset_defaults()


def test_status_and_plan_probe_print_the_groups_in_inventory_order(
    tmp_path: Path, harestart: Harestart
) -> None:
    x = ReverseLab(tmp_path, list("abcd"))
    r = harestart(x, "status", "--format", "json", "--preflight-parallel", "4")
    assert r.code == ExitCode.OK, r.err
    assert x.order == list("dcba")
    assert [d["group"] for d in r.json()] == list("abcd")
    x.reset()
    unhealthy(x, "c", "a")
    r = harestart(x, "plan", "--probe", "--preflight-parallel", "4")
    assert r.code == ExitCode.PREFLIGHT_REFUSED, r.err
    assert x.order == list("dcba")
    problems = [line for line in r.err.splitlines() if line.startswith("  - ")]
    assert [p.split(":")[0] for p in problems] == ["  - a", "  - c"], r.err
    structlog.reset_defaults()


# --- one node: SSH and MySQL together -----------------------------------------------------------


@dataclass
class Frozen:
    """A host whose sshd and mysqld both hang: each side notes it was entered, waits (up to
    WAIT) for the other side to be entered too, then fails as a timeout would."""

    ssh_in: threading.Event = field(default_factory=threading.Event)
    mysql_in: threading.Event = field(default_factory=threading.Event)
    met: list[str] = field(default_factory=list)

    def ssh(self, host: str) -> NoReturn:
        self.ssh_in.set()
        if self.mysql_in.wait(WAIT):
            self.met.append("ssh")
        raise SshError(host, "connect", "timed out after 10 s")

    def mysql(self, host: str) -> NoReturn:
        self.mysql_in.set()
        if self.ssh_in.wait(WAIT):
            self.met.append("mysql")
        raise MysqlError(host, "connect", "(2003) timed out after 5 s")


class FrozenShell(FakeShell):
    def __init__(self, world: FakeWorld, name: str, frozen: Frozen) -> None:
        super().__init__(world, name)
        self.frozen = frozen

    def connect(self) -> None:
        self.frozen.ssh(self.host)

    def run(
        self,
        command: str,
        *,
        sudo: bool | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> CommandResult:
        self.frozen.ssh(self.host)


class FrozenProbe(FakeProbe):
    def __init__(self, world: FakeWorld, name: str, frozen: Frozen) -> None:
        super().__init__(world, name)
        self.frozen = frozen

    def server_info(self) -> ServerInfo:
        self.frozen.mysql(self.name)


class OneFrozenNode(FakeConnector):
    def __init__(self, world: FakeWorld, name: str, frozen: Frozen) -> None:
        super().__init__(world)
        self.name, self.frozen = name, frozen

    def shell(self, name: str, endpoint: SshEndpoint) -> FakeShell:
        if name == self.name:
            return FrozenShell(self.world, name, self.frozen)
        return super().shell(name, endpoint)

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        if name == self.name:
            return FrozenProbe(self.world, name, self.frozen)
        return super().mysql(name, endpoint)


@pytest.mark.parametrize("detect_pending", [False, True], ids=["run", "status"])
def test_a_frozen_hosts_ssh_and_mysql_are_waited_on_together_and_both_reported(
    detect_pending: bool,
) -> None:
    world = FakeWorld.create(2)
    frozen = Frozen()
    connector = OneFrozenNode(world, "db2", frozen)
    state = observe_group(
        lab_group(2),
        connector,
        FakeMha(world, FakeShell(world, "mha")),
        detect_pending=detect_pending,
    )
    assert sorted(frozen.met) == ["mysql", "ssh"]  # each side saw the other entered
    db2 = state.node("db2")
    assert db2.ssh_error == "timed out after 10 s"
    assert db2.mysql_error == "(2003) timed out after 5 s"
    assert [n.reachable for n in state.nodes] == [True, False, True]
    if detect_pending:
        assert [r.text for r in db2.pending_restart] == [
            "MySQL unreachable: (2003) timed out after 5 s"
        ]


# --- a crash is its group's problem -------------------------------------------------------------


@dataclass
class CrashingLab(Lab):
    """Group ``crash``'s probe meets a bug (not a host's error)."""

    crash: str = "b"

    def failover_manager(self, group: Group, connector: Connector) -> FailoverManager:
        if group.id == self.crash:
            raise KeyError("mha-b's secret config key")
        return super().failover_manager(group, connector)


def test_a_crash_in_one_groups_probe_refuses_that_group_only(
    tmp_path: Path, harestart: Harestart
) -> None:
    x = CrashingLab(tmp_path, list("abc"))
    with prepare(groups_of(x), RunRequest(inventory=str(x.inventory)), x.env) as prepared:
        assert [r.group.id for r in prepared.ready] == ["a", "c"]
        (refusal,) = prepared.refusals
        assert refusal.group.id == "b" and refusal.error.exit_code == ExitCode.PREFLIGHT_REFUSED
        assert "unexpected error" in str(refusal.error) and "KeyError" in str(refusal.error)
    r = harestart(x, "run", "--all", "--yes", "--format", "json")
    assert r.code == ExitCode.PREFLIGHT_REFUSED, r.err
    assert "Traceback" not in r.err and "unexpected error" in r.err
    assert "group b: preflight refused" in r.err and "group a" not in r.err, r.err
    # as with any refusal, nothing changed anywhere
    assert x.restarts("a") == x.restarts("b") == x.restarts("c") == [0, 0, 0]
    r = harestart(x, "status", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED and "Traceback" not in r.err
    docs = {d["group"]: d for d in r.json()}
    assert docs["a"]["healthy"] and not docs["b"]["healthy"] and docs["c"]["healthy"]
    assert "unexpected error" in r.out
    structlog.reset_defaults()


def test_observe_groups_keeps_every_group_when_one_crashes(tmp_path: Path) -> None:
    x = CrashingLab(tmp_path, list("abc"), crash="c")
    found = observe_groups(groups_of(x), env=x.env, parallel=3)
    assert [g.id for g, _ in found] == ["a", "b", "c"]
    _, crashed = found[2]
    assert crashed.mha is None and "unexpected error" in (crashed.mha_error or "")
    assert all(not n.reachable for n in crashed.nodes)
    structlog.reset_defaults()


# --- fan_out itself -----------------------------------------------------------------------------


def test_fan_out_gives_each_result_or_exception_at_its_items_place() -> None:
    def fn(i: int) -> int:
        if i == 2:
            raise ValueError("two")
        return i * 10

    for limit in (1, 3):
        found = fan_out(fn, [0, 1, 2, 3], limit=limit)
        assert found[:2] == [0, 10] and found[3] == 30
        assert isinstance(found[2], ValueError)
    with pytest.raises(ValueError, match="at least 1"):
        fan_out(fn, [0], limit=0)


def test_an_interrupted_fan_out_hands_the_unused_results_to_abandon() -> None:
    others_done = threading.Barrier(3, timeout=WAIT)
    abandoned: list[int] = []

    def fn(i: int) -> int:
        others_done.wait()  # all three started; 1 and 2 return, 0 is "interrupted"
        if i == 0:
            raise KeyboardInterrupt
        return i

    with pytest.raises(KeyboardInterrupt):
        fan_out(fn, [0, 1, 2], limit=3, abandon=abandoned.append)
    # each result reaches abandon once, whether it was there already or arrives later
    poll_until(lambda: sorted(abandoned) == [1, 2] or None, what="results abandoned", timeout=WAIT)
    assert sorted(abandoned) == [1, 2]


def test_together_runs_its_calls_at_once_and_gives_each_result_or_exception() -> None:
    met = threading.Barrier(3, timeout=WAIT)  # the three calls and nobody else

    def call(i: int) -> int:
        met.wait()
        if i == 1:
            raise ValueError("one")
        return i

    with Together() as calls:
        futures = [calls.start(lambda i=i: call(i)) for i in range(3)]  # type: ignore[misc]
    assert futures[0].result() == 0 and futures[2].result() == 2
    with pytest.raises(ValueError, match="one"):
        futures[1].result()


def test_an_interrupted_together_does_not_wait_for_the_host_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C while waiting: the running call is left to end with its own timeout, the caller
    goes at once."""
    frozen, release = threading.Event(), threading.Event()

    def interrupted(futures: object) -> NoReturn:
        frozen.wait(WAIT)
        raise KeyboardInterrupt

    monkeypatch.setattr(fanout, "wait", interrupted)

    def host() -> str:
        frozen.set()
        release.wait(WAIT)
        return "late"

    with pytest.raises(KeyboardInterrupt), Together() as calls:
        late = calls.start(host)
    assert not late.done()  # not waited for
    release.set()
    assert late.result(timeout=WAIT) == "late"


# --- the flag -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-1", "257", "99999999999999999999999", "many", ""])
@pytest.mark.parametrize("command", [("run", "--yes"), ("status",), ("plan", "--probe")])
def test_a_bad_preflight_parallel_is_a_usage_error(
    tmp_path: Path, harestart: Harestart, value: str, command: tuple[str, ...]
) -> None:
    x = Lab(tmp_path, ["a"])
    r = harestart(x, command[0], *command[1:], "--preflight-parallel", value)
    assert r.code == ExitCode.USAGE, r.err
    assert "Invalid value for '--preflight-parallel'" in r.err, r.err
    assert "Traceback" not in r.err and x.connectors_opened == 0
    assert x.restarts("a") == [0, 0, 0]


def test_one_and_256_are_accepted(tmp_path: Path, harestart: Harestart) -> None:
    x = Lab(tmp_path, list("ab"))
    for value in ("1", "256"):
        r = harestart(x, "status", "--format", "json", "--preflight-parallel", value)
        assert r.code == ExitCode.OK, r.err
        assert [d["group"] for d in r.json()] == ["a", "b"]
    structlog.reset_defaults()
