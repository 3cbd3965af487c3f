"""Shared locks (``defaults.coordination``) through tooz's own ``file://`` driver.

The file driver is a real tooz driver (locks, groups, members with capabilities that expire
after the lease) on a temporary directory: the whole tooz path of harestart runs, on one
machine. Two state directories stand in for two bastions; the CLI runs in-process on the fakes
as in test_cli_run.py. The real services (etcd, Redis) are the integration tests' job.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from tooz import coordination as tooz_coordination

from harestart import cli
from harestart.adapters.coordination import ToozCoordination, display_url
from harestart.adapters.protocols import Coordination, HeldLock
from harestart.domain.coordination import HolderInfo, UnfinishedMark
from harestart.domain.group import CoordinationSettings, Group
from harestart.domain.judge import LockView
from harestart.engine.coordination import is_here, my_holder, my_mark, this_host
from harestart.engine.run import Environment
from harestart.engine.sequencer.interrupts import InterruptFlag
from harestart.engine.sequencer.waiting import poll_until
from harestart.engine.state.journal import Journal, journal_path
from harestart.errors import ExitCode, InventoryError, LeaseLost, LockHeld
from harestart.inventory.load import parse_inventory
from harestart.wiring import coordination as real_coordination

from .test_cli_run import ACCOUNT, Lab, Outcome, inventory_text

PASSWORD = "s3cret-coord-pw"  # a test value that must never be printed


class Spy:
    """The real backend of a group, remembering when a lease was reported lost."""

    def __init__(self, inner: Coordination, lost: threading.Event) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.stale_locks = inner.stale_locks
        self.lost = lost

    def acquire(
        self, group: Group, holder: HolderInfo, *, break_stale: bool, on_lost: Callable[[str], None]
    ) -> HeldLock:
        def lost(reason: str) -> None:
            on_lost(reason)
            self.lost.set()

        return self.inner.acquire(group, holder, break_stale=break_stale, on_lost=lost)

    def check_free(self, group: Group, *, break_stale: bool) -> None:
        self.inner.check_free(group, break_stale=break_stale)

    def lock_view(self, group: Group) -> LockView:
        return self.inner.lock_view(group)

    def mark_unfinished(self, group: Group, mark: UnfinishedMark) -> None:
        self.inner.mark_unfinished(group, mark)

    def unfinished(self, group: Group) -> UnfinishedMark | None:
        return self.inner.unfinished(group)

    def clear_unfinished(self, group: Group) -> None:
        self.inner.clear_unfinished(group)

    def close(self) -> None:
        self.inner.close()


class CoordLab(Lab):
    """test_cli_run's Lab with ``defaults.coordination`` set and a state directory per
    bastion (``use(name)`` switches)."""

    url: str = ""
    lost: threading.Event
    interval: float = 0.05

    def setup(self, url: str, *, lease: float = 2, password_env: str | None = None) -> None:
        self.url = url
        self.lost = threading.Event()
        extra = f", password_env: {password_env}" if password_env else ""
        text = inventory_text(self.group_ids).replace(
            "defaults: {", f"defaults: {{coordination: {{url: '{url}', lease: {lease}{extra}}}, "
        )
        self.inventory.write_text(text)
        self.use("bastion1")

    def use(self, bastion: str) -> CoordLab:
        self.state = self.tmp / bastion
        return self

    def coordination(self, group: Group, state_dir: Path) -> Coordination:
        if group.coordination is None or group.coordination.scheme != "file":
            return real_coordination(group, state_dir)
        # each state directory a bastion: a coordination session of its own
        inner = ToozCoordination(
            group.coordination, group.id, heartbeat_interval=self.interval, scope=str(state_dir)
        )
        return Spy(inner, self.lost)

    @property
    def env(self) -> Environment:
        return Environment(
            connector=self.connector,
            failover_manager=self.failover_manager,
            state_dir=self.state,
            clock=self.clock,
            wall=self.clock.now,
            coordination=self.coordination,
        )

    def group(self) -> Group:
        return parse_inventory(self.inventory.read_text(), "inv.yml").groups[0]

    def backend(self, scope: str = "backend") -> ToozCoordination:
        g = self.group()
        assert g.coordination is not None
        return ToozCoordination(g.coordination, g.id, heartbeat_interval=self.interval, scope=scope)


@pytest.fixture
def coord_lab(tmp_path: Path) -> Iterator[CoordLab]:
    lab = CoordLab(tmp_path, ["a"])
    lab.setup(f"file://{tmp_path / 'service'}")
    yield lab
    structlog.reset_defaults()


@pytest.fixture
def harestart(capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    def run(lab: Lab, *args: str) -> Outcome:
        command, *rest = args
        with pytest.raises(SystemExit) as exit_:
            cli.main([command, str(lab.inventory), *rest], env=lab.env)
        out, err = capsys.readouterr()
        code = exit_.value.code
        return Outcome(code if isinstance(code, int) else -1, out, err)

    return run


Harestart = Callable[..., Outcome]


def _holders_dir(lab: CoordLab) -> list[Path]:
    """The files of the holder group's members in the file driver's directory."""
    return list((lab.tmp / "service" / "groups").glob("*/*.raw"))


# --- the inventory ---------------------------------------------------------------------------


def test_inventory_coordination_is_typed_and_strict(tmp_path: Path) -> None:
    base = inventory_text(["a"])
    g = parse_inventory(base, "inv.yml").groups[0]
    assert g.coordination is None  # the local lock
    text = base.replace("defaults: {", "defaults: {coordination: {url: 'etcd3+http://e1:2379'}, ")
    g = parse_inventory(text, "inv.yml").groups[0]
    assert g.coordination == CoordinationSettings("etcd3+http://e1:2379", 30.0, None)
    for bad, said in [
        ("{url: 'etcd3+http://e1:2379', lease: '30'}", "lease: must be a number"),
        ("{url: 'etcd3+http://e1:2379', leese: 30}", "unknown key 'leese'"),
        ("{url: 'etcd3+http://e1:2379', lease: 0}", "lease"),
        ("{url: 'e1:2379'}", "is not a URL"),
        ("{url: 'redis://:hunter2pw@r1:6379'}", "password_env"),
    ]:
        with pytest.raises(InventoryError) as exc:
            parse_inventory(base.replace("defaults: {", f"defaults: {{coordination: {bad}, "), "i")
        assert said in str(exc.value), str(exc.value)
        assert "hunter2pw" not in str(exc.value)


def test_display_url_never_shows_a_password() -> None:
    assert display_url("redis://user:pw@r1:6379/0?x=1") == "redis://user@r1:6379/0"
    assert display_url("etcd3+http://e1:2379") == "etcd3+http://e1:2379"


# --- the lock --------------------------------------------------------------------------------


def test_a_run_from_another_bastion_exits_4_naming_the_holder(
    coord_lab: CoordLab, harestart: Harestart
) -> None:
    x = coord_lab
    other = x.backend()
    g = x.group()
    held = other.acquire(
        g,
        my_holder(command="harestart run", state_dir=x.tmp / "bastion1"),
        break_stale=False,
        on_lost=lambda _reason: None,
    )
    held.publish("run0000001")
    try:
        r = harestart(x.use("bastion2"), "run", "--yes")
        assert r.code == ExitCode.LOCKED, r.err
        for part in (this_host(), f"pid {os.getpid()}", "run run0000001", "since "):
            assert part in r.err
        assert x.restarts("a") == [0, 0, 0]
        # status on the other bastion names the same holder: the service is the truth
        s = harestart(x, "status", "--format", "json")
        lock = s.json()["lock"]
        assert lock["alive"] is True and lock["backend"] == "file"
        assert "run run0000001" in lock["holder"] and s.json()["state"] == "REBOOT"
    finally:
        held.release()
        other.close()
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    assert x.restarts("a") == [1, 1, 1]
    assert x.backend().lock_view(g) == LockView(backend="file")  # released


def test_a_new_runs_holder_record_names_its_run_from_the_start_and_is_written_once(
    coord_lab: CoordLab, harestart: Harestart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run id is chosen before the lock is taken: the holder record is published with it
    (no second write of the record once the journal exists: two requests per group on etcd)."""
    x = coord_lab
    published: list[str | None] = []
    joined: list[str | None] = []
    real_publish, real_join = ToozCoordination.publish, ToozCoordination._join

    def publish(self: ToozCoordination, group: Group, holder: HolderInfo) -> None:
        published.append(holder.run_id)
        real_publish(self, group, holder)

    def join(self: ToozCoordination, group: Group, holder: HolderInfo, **kw: bool) -> None:
        joined.append(holder.run_id)
        real_join(self, group, holder, **kw)

    monkeypatch.setattr(ToozCoordination, "publish", publish)
    monkeypatch.setattr(ToozCoordination, "_join", join)
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.OK, r.err
    journal = Journal.load(journal_path(x.state, ACCOUNT, "a"))
    assert journal is not None and joined == [journal.run_id] and published == []


def test_a_second_backend_object_sees_the_holder_and_cannot_take_the_lock(
    coord_lab: CoordLab,
) -> None:
    x = coord_lab
    g = x.group()
    first, second = x.backend(), x.backend()
    held = first.acquire(
        g,
        my_holder(command="harestart serve", state_dir=x.tmp / "b1"),
        break_stale=False,
        on_lost=lambda _r: None,
    )
    try:
        view = second.lock_view(g)
        assert view.alive and view.backend == "file" and "harestart serve" in (view.holder or "")
        with pytest.raises(LockHeld, match="harestart serve"):
            second.check_free(g, break_stale=True)  # --break-lock does not break a lease
    finally:
        held.release()
    assert not second.lock_view(g).held
    second.check_free(g, break_stale=False)
    first.close()
    second.close()


def test_a_holder_that_stops_heartbeating_expires_after_the_lease(coord_lab: CoordLab) -> None:
    x = coord_lab
    x.setup(x.url, lease=5)  # seconds of margin between the last heartbeat and the check
    g = x.group()
    first, second = x.backend("frozen"), x.backend()
    held = first.acquire(
        g,
        my_holder(command="harestart run", state_dir=x.tmp / "b1"),
        break_stale=False,
        on_lost=lambda _r: None,
    )
    first._session._stop.set()  # the process "froze": no more heartbeats
    assert second.lock_view(g).alive  # its last heartbeat's lease still runs
    # the holder record expires with the lease (a generous deadline: 30 s for a 5 s lease)
    poll_until(
        lambda: not second.lock_view(g).alive or None, what="the holder's expiry", timeout=30
    )
    assert not second.lock_view(g).held
    held.release()
    first.close()
    second.close()


# --- lease loss ------------------------------------------------------------------------------


def test_heartbeats_that_keep_failing_report_the_lease_lost(
    coord_lab: CoordLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = coord_lab
    g = x.group()
    backend = x.backend()
    lost: list[str] = []
    got = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append(reason)
        got.set()

    beats = threading.Semaphore(0)
    session = backend._session
    beat = session.beat

    def counted_beat() -> None:
        beat()
        beats.release()

    monkeypatch.setattr(session, "beat", counted_beat)
    held = backend.acquire(
        g,
        my_holder(command="harestart run", state_dir=x.tmp / "b1"),
        break_stale=False,
        on_lost=on_lost,
    )
    try:
        for _ in range(3):  # heartbeats get through...
            assert beats.acquire(timeout=30)
        assert not got.is_set()  # ...and none reported the lease lost
        coordinator: Any = backend._coord

        def down() -> float:
            raise tooz_coordination.ToozConnectionError("connection refused")

        monkeypatch.setattr(coordinator, "heartbeat", down)
        assert got.wait(10)
        assert "no heartbeat reached the coordination service" in lost[0]
        assert "connection refused" in lost[0]
    finally:
        held.release()
        backend.close()


def test_a_lost_lease_stops_the_run_between_steps_exit_1_then_resume_finishes(
    coord_lab: CoordLab, harestart: Harestart
) -> None:
    x = coord_lab
    world = x.worlds["a"]
    restart = world.restart

    def restart_then_lose_the_lease(name: str) -> None:
        restart(name)
        if name == "a2":
            # The service forgets this run's holder (its lease ran out): the heartbeat notices
            # while a2's restart is in flight; a2 is still proven, then the run stops.
            for member in _holders_dir(x):
                member.unlink()
            assert x.lost.wait(10)

    world.restart = restart_then_lose_the_lease  # type: ignore[method-assign]
    r = harestart(x, "run", "--yes", "--format", "json")
    assert r.code == ExitCode.RUN_FAILED, r.err
    doc = r.json()
    assert doc["interrupted"] is None and doc["ok"] is False
    assert doc["failure"]["reason"].startswith("coordination lease lost: ")
    assert "holder record expired" in doc["failure"]["reason"]
    assert doc["failure"]["step"] == "restart_replica:a3"
    steps = {s["action"] + ":" + str(s["host"]): s for s in doc["steps"]}
    assert steps["restart_replica:a2"]["status"] == "done"  # finished and proven
    assert steps["restart_replica:a3"]["status"] == "pending"
    assert "coordination lease lost" in steps["restart_replica:a3"]["detail"]
    assert x.restarts("a") == [0, 1, 0]  # a1 (source), a2, a3
    journal = x.journal("a")
    assert journal is not None and not journal.finished and journal.outcome == "lease-lost"
    assert "not started again without the group's lock" in doc["failure"]["failover"]
    assert doc["failover_enabled"] is False and doc["mha_after"].startswith("MHA NOT_RUNNING")
    # the unfinished mark outlives the lease: the other bastion refuses and names this one
    run_id = journal.run_id
    r2 = harestart(x.use("bastion2"), "run", "--yes")
    assert r2.code == ExitCode.USAGE, r2.err
    for part in (this_host(), str(x.tmp / "bastion1"), run_id, "--discard-unfinished"):
        assert part in r2.err
    r2 = harestart(x, "resume", "--yes")  # nothing to resume here, and it says where
    assert r2.code == ExitCode.USAGE and str(x.tmp / "bastion1") in r2.err, r2.err
    s = harestart(x, "status", "--format", "json")
    assert s.json()["state"] == "ERROR" and s.json()["unfinished_run"]["run_id"] == run_id
    assert "on another bastion" in s.json()["unfinished_run"]["summary"]
    # resume on the bastion holding the journal finishes and clears the mark
    world.restart = restart  # type: ignore[method-assign]
    r3 = harestart(x.use("bastion1"), "resume", "--yes", "--format", "json")
    assert r3.code == ExitCode.OK, r3.err
    assert x.restarts("a") == [1, 1, 1]  # nobody restarted twice
    assert x.backend().unfinished(x.group()) is None
    r4 = harestart(x.use("bastion2"), "run", "--yes")
    assert r4.code == ExitCode.OK, r4.err


def test_a_lease_lost_by_one_run_does_not_stop_another_run() -> None:
    parent = InterruptFlag()
    one, two = parent.scoped(), parent.scoped()
    one.lose_lease("gone")
    with pytest.raises(LeaseLost, match="coordination lease lost: gone"):
        one.check_between_steps()
    one.check()  # inside a step (a wait) a lost lease does not stop it
    two.check_between_steps()
    parent.request("SIGTERM")
    assert two.requested == "SIGTERM"


def test_discard_unfinished_starts_over_and_clears_the_other_bastions_mark(
    coord_lab: CoordLab, harestart: Harestart
) -> None:
    x = coord_lab
    g = x.group()
    backend = x.backend()
    mark = my_mark(
        run_id="feedc0ffee00", started_at="2026-01-01T00:00:00Z", state_dir=x.tmp / "bastion1"
    )
    backend.mark_unfinished(g, mark)
    r = harestart(x.use("bastion2"), "run", "--yes")
    assert r.code == ExitCode.USAGE and "feedc0ffee00" in r.err and "bastion1" in r.err
    assert x.restarts("a") == [0, 0, 0]
    r = harestart(x, "run", "--yes", "--discard-unfinished")
    assert r.code == ExitCode.OK, r.err
    assert backend.unfinished(g) is None and x.restarts("a") == [1, 1, 1]
    backend.close()


# --- refused before anything changes ------------------------------------------------------------


def _assert_no_password(lab: Lab, *outputs: str) -> None:
    for text in outputs:
        assert PASSWORD not in text
    for path in lab.tmp.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_an_unknown_scheme_is_an_inventory_error_exit_2_without_the_password(
    tmp_path: Path, harestart: Harestart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#22: what a coordination setting needs is checked when the inventory is loaded (it was
    exit 3 at connect): the same line for plan, run and serve."""
    monkeypatch.setenv("HARESTART_TEST_COORD_PW", PASSWORD)
    x = CoordLab(tmp_path, ["a"])
    x.setup("consul://c1:8500", password_env="HARESTART_TEST_COORD_PW")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.USAGE, r.err
    assert "defaults.coordination.url: unknown scheme 'consul' (known: etcd3+http," in r.err
    assert x.restarts("a") == [0, 0, 0]
    _assert_no_password(x, r.out, r.err)
    structlog.reset_defaults()


def test_a_service_that_does_not_answer_exits_3_naming_it_without_the_password(
    tmp_path: Path, harestart: Harestart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARESTART_TEST_COORD_PW", PASSWORD)
    x = CoordLab(tmp_path, ["a"])
    x.setup("redis://127.0.0.1:1", password_env="HARESTART_TEST_COORD_PW")  # nothing listens
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.PREFLIGHT_REFUSED, r.err
    assert "coordination service redis://127.0.0.1:1 does not answer" in r.err
    assert x.restarts("a") == [0, 0, 0]
    s = harestart(x, "status", "--format", "json")  # status still answers, naming the problem
    assert "does not answer" in s.json()["lock"]["holder"] and s.json()["state"] == "ERROR"
    _assert_no_password(x, r.out, r.err, s.out, s.err)
    structlog.reset_defaults()


def test_an_unset_password_variable_exits_3_naming_it(
    tmp_path: Path, harestart: Harestart, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARESTART_TEST_COORD_PW", raising=False)
    x = CoordLab(tmp_path, ["a"])
    x.setup("redis://127.0.0.1:1", password_env="HARESTART_TEST_COORD_PW")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.PREFLIGHT_REFUSED
    assert "HARESTART_TEST_COORD_PW" in r.err and "not set" in r.err
    structlog.reset_defaults()


def test_a_missing_driver_names_the_extra_to_install(
    tmp_path: Path, harestart: Harestart, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "etcd3gw" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    x = CoordLab(tmp_path, ["a"])
    x.setup("etcd3+http://127.0.0.1:2379")
    r = harestart(x, "run", "--yes")
    assert r.code == ExitCode.PREFLIGHT_REFUSED
    assert "pip install harestart[etcd]" in r.err
    structlog.reset_defaults()


def test_the_local_backend_is_the_default_and_says_so(tmp_path: Path, harestart: Harestart) -> None:
    x = Lab(tmp_path, ["a"])
    x.lock("a")
    r = harestart(x, "status", "--format", "json")
    assert json.loads(r.out)["lock"]["backend"] == "local"
    for lock in x.held:
        lock.release()
    structlog.reset_defaults()


def test_holder_and_mark_documents_round_trip() -> None:
    h = my_holder(command="harestart run", state_dir=Path("/s"))
    assert HolderInfo.from_dict(h.to_dict()) == h and HolderInfo.from_dict("x") is None
    m = my_mark(run_id="r1", started_at="t", state_dir=Path("/s"))
    assert UnfinishedMark.from_json(m.to_json()) == m and UnfinishedMark.from_json("{") is None
    assert is_here(m, Path("/s")) and not is_here(m, Path("/other"))
    assert ACCOUNT == "1"


# --- two `serve` instances ------------------------------------------------------------------------


def test_two_servers_on_one_service_give_one_answer(coord_lab: CoordLab) -> None:
    from harestart.domain.result import GroupStatus
    from harestart.http.api import Unprocessable
    from harestart.http.jobs import BackgroundRestarter

    x = coord_lab
    g = x.group()
    world = x.worlds["a"]
    restart = world.restart
    inside, go_on = threading.Event(), threading.Event()

    def slow_restart(name: str) -> None:
        restart(name)
        inside.set()
        assert go_on.wait(10)

    world.restart = slow_restart  # type: ignore[method-assign]
    one = BackgroundRestarter(str(x.inventory), env=x.use("serve1").env)
    two = BackgroundRestarter(str(x.inventory), env=x.use("serve2").env)
    try:
        one.start(g, "req-1")
        assert inside.wait(10)
        for server in (one, two):
            view = server.view(g)
            assert view.verdict(g).state is GroupStatus.REBOOT
            assert view.facts.lock.backend == "file" and view.facts.lock.alive
        with pytest.raises(Unprocessable, match="another harestart run holds group a"):
            two.start(g, "req-2")
    finally:
        go_on.set()
        assert one.wait(20) and two.wait(20)
    assert x.restarts("a") == [1, 1, 1]
    assert two.view(g).verdict(g).state is GroupStatus.ACTIVE


def test_connect_url_puts_the_password_and_the_lease_in_only_at_connect_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from harestart.adapters.coordination import connect_url
    from harestart.domain.secret import scrub

    monkeypatch.setenv("HARESTART_TEST_COORD_PW", "p@ss/w:rd")
    url = connect_url(CoordinationSettings("redis://r1:6379", 30, "HARESTART_TEST_COORD_PW"), "g1")
    assert url.startswith("redis://:p%40ss%2Fw%3Ard@r1:6379?")
    assert "lock_timeout=30" in url and "membership_timeout=30" in url and "timeout=10" in url
    assert "p@ss/w:rd" not in scrub("error: p@ss/w:rd")  # known to the scrubber from now on
    etcd = connect_url(CoordinationSettings("etcd3+http://e1:2379", 6, None), "g1")
    assert etcd == (
        "etcd3+http://e1:2379?timeout=2&lock_timeout=6&membership_timeout=6&executor=synchronous"
    )
