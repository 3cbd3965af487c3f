"""One coordination session per bastion process (#24), on tooz's own ``file://`` driver.

Every group's ``ToozCoordination`` of one process (one *scope* here: a test process stands in
for several bastions) shares one tooz coordinator, one heartbeat thread and one watchdog,
whatever the number of groups it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tooz import coordination as tooz_coordination

from harestart.adapters.coordination import ToozCoordination
from harestart.adapters.coordination_session import sessions
from harestart.adapters.protocols import HeldLock
from harestart.domain.group import Group
from harestart.engine.coordination import my_holder
from harestart.engine.sequencer.waiting import poll_until
from harestart.errors import LockHeld
from harestart.inventory.load import parse_inventory

from .test_cli_run import inventory_text

N = 12
INTERVAL = 0.05


@pytest.fixture
def groups(tmp_path: Path) -> tuple[Group, ...]:
    url = f"file://{tmp_path / 'service'}"
    text = inventory_text([f"g{i}" for i in range(N)]).replace(
        "defaults: {", f"defaults: {{coordination: {{url: '{url}', lease: 2}}, "
    )
    return parse_inventory(text, "inv.yml").groups


class Bastion:
    """The backends of one bastion process: one per group, as the engine opens them."""

    def __init__(self, groups: tuple[Group, ...], scope: str) -> None:
        self.backends = {
            g.id: ToozCoordination(
                g.coordination,  # type: ignore[arg-type]  # set by the fixture
                g.id,
                heartbeat_interval=INTERVAL,
                scope=scope,
            )
            for g in groups
        }
        self.lost: dict[str, str] = {}
        self._mutex = threading.Lock()

    def acquire(self, group: Group, tmp: Path) -> HeldLock:
        def on_lost(reason: str) -> None:
            with self._mutex:
                self.lost[group.id] = reason

        return self.backends[group.id].acquire(
            group,
            my_holder(command="harestart run", state_dir=tmp),
            break_stale=False,
            on_lost=on_lost,
        )

    def close(self) -> None:
        for b in self.backends.values():
            b.close()


@pytest.fixture
def bastion(groups: tuple[Group, ...]) -> Iterator[Bastion]:
    b = Bastion(groups, "bastion-a")
    yield b
    b.close()


def _passes(backend: ToozCoordination, more_than: int) -> None:
    session = backend._session
    poll_until(lambda: session.passes > more_than or None, what="heartbeats", timeout=30)


def test_every_group_of_a_process_shares_one_session_kept_by_two_threads(
    groups: tuple[Group, ...], bastion: Bastion, tmp_path: Path
) -> None:
    held = [bastion.acquire(g, tmp_path) for g in groups]
    try:
        one = {id(b._session) for b in bastion.backends.values()}
        assert len(one) == 1  # one coordinator, one member id
        session = bastion.backends["g0"]._session
        assert session.threads() == 2  # a heartbeat and a watchdog for all twelve
        assert len(session.holds) == N
        names = [t.name for t in threading.enumerate()]
        assert not [n for n in names if n.startswith("lease-")]  # no thread per group
        _passes(bastion.backends["g0"], session.passes + 3)
        assert bastion.lost == {}
        other = Bastion(groups, "bastion-b")  # another bastion sees every holder
        try:
            for g in groups:
                view = other.backends[g.id].lock_view(g)
                assert view.alive and "harestart run" in (view.holder or "")
                with pytest.raises(LockHeld):
                    other.backends[g.id].check_free(g, break_stale=True)
        finally:
            other.close()
    finally:
        for h in held:
            h.release()


def test_releasing_one_group_leaves_the_others_held(
    groups: tuple[Group, ...], bastion: Bastion, tmp_path: Path
) -> None:
    first, *rest = groups
    held = {g.id: bastion.acquire(g, tmp_path) for g in groups}
    other = Bastion(groups, "bastion-b")
    try:
        held.pop(first.id).release()
        session = bastion.backends[first.id]._session
        assert {h.name for h in session.holds} == {
            f"harestart~1~{g.id}~lock".encode() for g in rest
        }
        _passes(bastion.backends[first.id], session.passes + 3)  # the others are still renewed
        assert bastion.lost == {}
        other.backends[first.id].check_free(first, break_stale=False)  # free for anyone
        for g in rest:
            assert other.backends[g.id].lock_view(g).alive
        again = other.acquire(first, tmp_path)  # another bastion takes the released one
        again.release()
    finally:
        other.close()
        for h in held.values():
            h.release()


def test_a_lost_session_tells_every_holder_and_a_lost_record_only_its_own(
    groups: tuple[Group, ...],
    bastion: Bastion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = [bastion.acquire(g, tmp_path) for g in groups]
    backend = bastion.backends["g0"]
    session = backend._session
    try:
        # One group's holder record vanishes (its lease ran out): that group alone is lost.
        backend.leave(groups[0])
        poll_until(lambda: "g0" in bastion.lost or None, what="g0 lost", timeout=30)
        assert "holder record expired" in bastion.lost["g0"]
        _passes(backend, session.passes + 2)
        assert set(bastion.lost) == {"g0"} and len(session.holds) == N - 1

        # Then the service stops answering: every group still held is told, once.
        def down() -> float:
            raise tooz_coordination.ToozConnectionError("connection refused")

        monkeypatch.setattr(session.coord, "heartbeat", down)
        poll_until(lambda: len(bastion.lost) == N or None, what="all lost", timeout=30)
        for g in groups[1:]:
            assert "no heartbeat reached the coordination service" in bastion.lost[g.id]
            assert "connection refused" in bastion.lost[g.id]
        assert session.holds == []
    finally:
        monkeypatch.undo()
        for h in held:
            h.release()


def test_the_last_backend_closed_ends_the_session(groups: tuple[Group, ...]) -> None:
    b = Bastion(groups[:3], "bastion-c")
    (session,) = {id(x._session): x._session for x in b.backends.values()}.values()
    assert session in sessions() and session.users == 3
    b.backends["g0"].close()
    b.backends["g0"].close()  # closing twice counts once
    assert session in sessions() and session.users == 2
    b.close()
    assert session not in sessions()


def test_a_session_opened_long_before_its_first_lock_is_renewed_when_it_takes_it(
    groups: tuple[Group, ...], tmp_path: Path
) -> None:
    """Opened before a long preflight (or a person's confirmation): the first acquire renews
    the session at once (on etcd the lock lease was granted at opening and may be about to
    expire), not an interval later."""
    now = [1000.0]
    g = groups[0]
    backend = ToozCoordination(
        g.coordination,  # type: ignore[arg-type]  # set by the fixture
        g.id,
        heartbeat_interval=60.0,
        clock=lambda: now[0],
        scope="slow-preflight",
    )
    try:
        session = backend._session
        now[0] += 59.0  # not an interval yet: nothing to renew
        held = backend.acquire(
            g,
            my_holder(command="harestart run", state_dir=tmp_path),
            break_stale=False,
            on_lost=lambda _r: None,
        )
        assert session.passes == 0
        held.release()
        now[0] += 61.0  # the next run of this process comes more than an interval later
        held = backend.acquire(
            g,
            my_holder(command="harestart run", state_dir=tmp_path),
            break_stale=False,
            on_lost=lambda _r: None,
        )
        assert session.passes == 1  # renewed there and then, before the lock was taken
        held.release()
    finally:
        backend.close()
