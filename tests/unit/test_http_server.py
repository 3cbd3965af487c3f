"""serve never stalls: a fixed worker pool (503 after a short wait when full), idle connections
that hold no worker, and GET answered from the background observer while a host hangs."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing

from harestart.domain.endpoints import MysqlEndpoint
from harestart.domain.group import Group
from harestart.domain.observation import GroupState
from harestart.engine.observe import observe_group
from harestart.engine.sequencer.waiting import poll_until
from harestart.http.jobs import BackgroundObserver, CachedObserver
from harestart.http.server import ApiServer
from harestart.inventory.load import load_inventory

from .fakes import FakeConnector, FakeMha, FakeProbe, FakeShell, FakeWorld
from .test_api import DETAIL, LIST, SEED_HA, SEED_TOKEN, Env, fault, make_env


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    structlog.configure(processors=[lambda *_: ""], logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


def get(server: ApiServer, path: str) -> tuple[int, bytes]:
    """One GET on a new connection; a generous client timeout is the only deadline."""
    c = http.client.HTTPConnection(*server.address, timeout=30)
    try:
        c.request("GET", path, headers={"X-Auth-Token": SEED_TOKEN})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def blocked_server(
    tmp_path: Path, **server: Any
) -> tuple[Env, threading.Semaphore, threading.Event]:
    """An API whose observations block until ``release`` is set (a handler stuck on a host;
    each one entering releases ``inside``), served by ``ApiServer(api, **server)``."""
    world = FakeWorld.create(replicas=1)
    release = threading.Event()
    inside = threading.Semaphore(0)

    def blocking_observe(g: Group) -> GroupState:
        inside.release()
        release.wait(30)
        return observe_group(g, FakeConnector(world), FakeMha(world, FakeShell(world, "mha")))

    e, _ = make_env(tmp_path, observe=blocking_observe)
    e.server.stop()
    e.server = ApiServer(e.api, **server).start()
    return e, inside, release


# --- the worker pool -------------------------------------------------------------------------


def test_a_full_worker_pool_answers_503_at_once_and_recovers(tmp_path: Path) -> None:
    e, inside, release = blocked_server(tmp_path, max_workers=2)
    answers: list[int] = []
    try:
        # Two requests for two groups occupy both workers.
        threads = [
            threading.Thread(target=lambda p=p: answers.append(e.request("GET", p)[0]))
            for p in (DETAIL, DETAIL.replace(SEED_HA, "b-second"))
        ]
        for t in threads:
            t.start()
        for _ in threads:
            assert inside.acquire(timeout=10)
        status, headers, body = e.request("GET", LIST)
        # Refused while both workers still hold their requests: it did not wait for them.
        assert status == 503 and answers == []
        assert headers["connection"] == "close" and headers["retry-after"] == "1"
        doc = json.loads(body)
        assert list(doc) == ["serviceUnavailable"] and doc["serviceUnavailable"]["code"] == 503
        assert "2 workers" in fault(body)["message"]
        release.set()
        for t in threads:
            t.join(10)
        assert answers == [200, 200]
        # Workers are free again (eventually: a worker frees its slot just after its answer
        # went out, so a client can be a moment faster).
        poll_until(lambda: e.request("GET", LIST)[0] == 200 or None, what="a 200 again", timeout=30)
    finally:
        release.set()
        e.server.stop()


def test_a_request_finding_every_worker_busy_waits_briefly_for_one(tmp_path: Path) -> None:
    """A burst (50 clients polling 16 workers) is answered, not refused: a request that finds
    every worker busy waits for one, up to the server's worker_wait, before a 503."""
    e, inside, release = blocked_server(tmp_path, max_workers=1, worker_wait=30.0)
    answers: dict[str, int] = {}
    busy = threading.Thread(target=lambda: answers.update(detail=e.request("GET", DETAIL)[0]))
    waiting = threading.Thread(target=lambda: answers.update(list=e.request("GET", LIST)[0]))
    try:
        busy.start()
        assert inside.acquire(timeout=10)  # the one worker is taken
        waiting.start()
        # the second request waits for the worker
        poll_until(lambda: e.server.waiting == 1 or None, what="one waiting", timeout=30)
        release.set()
        busy.join(10)
        waiting.join(10)
        assert answers == {"detail": 200, "list": 200}
    finally:
        release.set()
        e.server.stop()


def test_one_worker_answers_a_keep_alive_client_s_every_request(tmp_path: Path) -> None:
    """The worker frees its slot before the connection goes back to the selector: a client
    that sends its next request at once never finds the worker it just left still taken."""
    e, _ = make_env(tmp_path)
    e.server.stop()
    e.server = ApiServer(e.api, max_workers=1, worker_wait=0.0).start()
    assert e.server.backlog >= 128  # clients reconnecting at once: no SYN drop
    c = http.client.HTTPConnection(*e.server.address, timeout=10)
    statuses = []
    try:
        for _ in range(300):
            c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
            r = c.getresponse()
            r.read()
            statuses.append(r.status)
    finally:
        c.close()
        e.server.stop()
    assert set(statuses) == {200}


def test_a_client_closing_its_connection_while_the_pool_is_full_is_no_503(
    tmp_path: Path,
) -> None:
    """50 clients ending their keep-alive connections at once (EOF, no request) while every
    worker is busy: closed quietly, not logged or counted as 503s; a real request still is."""
    e, inside, release = blocked_server(tmp_path, max_workers=1, worker_wait=0.0)
    busy = threading.Thread(target=lambda: e.request("GET", DETAIL))
    try:
        with structlog.testing.capture_logs() as logs:
            busy.start()
            assert inside.acquire(timeout=10)  # the one worker is taken
            silent = socket.create_connection(e.server.address, timeout=10)
            silent.close()  # EOF without a request
            status, _, _ = e.request("GET", LIST)
            assert status == 503
            release.set()
            busy.join(10)
    finally:
        release.set()
        e.server.stop()
    refused = [x for x in logs if x["event"] == "api.request" and x.get("status") == 503]
    assert len(refused) == 1


def test_500_idle_keep_alive_connections_do_not_block_a_new_get(tmp_path: Path) -> None:
    e, _ = make_env(tmp_path)
    e.server.stop()
    e.server = ApiServer(e.api, max_workers=4).start()
    held: list[http.client.HTTPConnection] = []
    threads_before = threading.active_count()
    try:
        for _ in range(500):  # each asked once, then left open and idle
            c = http.client.HTTPConnection(*e.server.address, timeout=10)
            c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
            r = c.getresponse()
            assert r.status == 200 and r.getheader("Connection") != "close"
            r.read()
            held.append(c)
        # a new client is answered beside them (bench/api.py measures how fast)
        assert get(e.server, LIST)[0] == 200
        # the idle connections hold no thread (4 workers and one selector serve them all)
        assert threading.active_count() - threads_before < 10
        # and each of them is still usable
        for c in held[:5]:
            c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read())["ha_instances"]
    finally:
        for c in held:
            c.close()
        e.server.stop()


def test_pipelined_requests_on_one_connection_are_all_answered(tmp_path: Path) -> None:
    e, _ = make_env(tmp_path)
    try:
        one = f"GET {LIST} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n\r\n"
        with socket.create_connection(e.server.address, timeout=10) as s:
            s.sendall((one * 3).encode())
            reply = b""
            while reply.count(b"HTTP/1.1 200 OK") < 3:
                chunk = s.recv(65536)
                assert chunk, reply
                reply += chunk
    finally:
        e.server.stop()


# --- the background observer -----------------------------------------------------------------


class HangingConnector(FakeConnector):
    """A host that accepts connections and then says nothing (a paused container): MySQL
    sessions to ``name`` wait until ``release`` is set. ``hanging`` counts the sessions
    waiting right now; ``entered`` is set when the first one starts waiting."""

    def __init__(
        self, world: FakeWorld, name: str, hang: threading.Event, release: threading.Event
    ):
        super().__init__(world)
        self.name, self.hang, self.release = name, hang, release

    hanging = 0
    entered = threading.Event()

    def mysql(self, name: str, endpoint: MysqlEndpoint) -> FakeProbe:
        if name == self.name and self.hang.is_set():
            cls = type(self)
            cls.hanging += 1
            cls.entered.set()
            try:
                self.release.wait(30)
            finally:
                cls.hanging -= 1
        return super().mysql(name, endpoint)


def test_get_answers_at_once_from_an_old_observation_while_a_host_hangs(tmp_path: Path) -> None:
    world = FakeWorld.create(replicas=1)
    hang, release = threading.Event(), threading.Event()

    class Hanging(HangingConnector):  # its own counters, whatever other tests did
        hanging = 0
        entered = threading.Event()

    completed: list[str] = []  # the group ids, in the order their observations ended

    def observe(g: Group) -> GroupState:
        if g.id == SEED_HA:  # only this group's replica hangs
            connector: FakeConnector = Hanging(world, "db2", hang, release)
        else:
            connector = FakeConnector(world)
        state = observe_group(g, connector, FakeMha(world, FakeShell(world, "mha")))
        completed.append(g.id)
        return state

    e, _ = make_env(tmp_path, observe=observe)
    inventory = load_inventory(e.inventory_file)
    observer = BackgroundObserver(lambda: inventory.groups, interval=0.2, observe=observe)
    e.api.observer = observer
    group, other = inventory.groups[0], inventory.groups[1]

    def observed_again(g: Group, after: int) -> bool | None:
        """Has an observation of ``g`` ended since ``completed`` had ``after`` entries?"""
        return g.id in completed[after:] or None

    try:
        # Before the first observation (the observer has not started): answered from the
        # lock and journal, without observing.
        status, body = get(e.server, DETAIL)
        ha = json.loads(body)["ha_instance"]
        assert status == 200
        assert ha["observed_at"] is None and ha["state"] == "ACTIVE" and ha["healthy"] is None

        observer.start()
        poll_until(lambda: observer.latest(group), what="a first observation", timeout=30)
        first = json.loads(get(e.server, DETAIL)[1])["ha_instance"]
        assert first["observed_at"] is not None and first["healthy"] is True

        hang.set()  # db2 now hangs every observation
        assert Hanging.entered.wait(30), "the group's observation never reached db2"
        hung_at = len(completed)
        # the last observation that ended before the hang (the observer may have observed
        # the group again between the first GET and hang.set()): from now on it stays
        last = observer.latest(group)
        assert last is not None
        # the groups whose hosts answer go on being observed meanwhile
        poll_until(lambda: observed_again(other, hung_at), what="another group", timeout=30)
        seen = set()
        for _ in range(3):
            status, body = get(e.server, DETAIL)
            # answered while the group's observation still hangs on db2: it did not wait
            assert status == 200 and Hanging.hanging > 0
            ha = json.loads(body)["ha_instance"]
            assert ha["observed_at"] == last.observed_at and ha["healthy"] is True
            seen.add(ha["observed_at"])
        assert len(seen) == 1
        assert group.id not in completed[hung_at:]  # its data is the old observation

        released_at = len(completed)
        release.set()  # the host answers again: the group is observed again
        hang.clear()
        poll_until(lambda: observed_again(group, released_at), what="the group", timeout=30)
        assert json.loads(get(e.server, DETAIL)[1])["ha_instance"]["healthy"] is True
    finally:
        release.set()
        observer.stop()
        e.server.stop()


def test_a_get_in_another_run_state_has_the_group_observed_again_at_once() -> None:
    calls: list[str] = []
    context = ["REBOOT"]

    def observe(g: Group) -> GroupState:
        calls.append(g.id)
        return GroupState(group=g.id, nodes=(), mha=None, mha_error="not asked")

    inventory = load_inventory(Path(__file__).resolve().parents[2] / "inventories" / "lab.yml")
    group = inventory.groups[0]
    observer = BackgroundObserver(
        lambda: (group,), interval=3600, observe=observe, context_of=lambda g: context[0]
    )
    assert not observer.observed_all()
    observer.poll_once()
    poll_until(lambda: observer.latest(group), what="the group observed", timeout=30)
    assert observer.observed_all()
    first = observer.observe(group, context="REBOOT")
    assert first is not None
    assert observer.poll_once() == 0  # not due for an hour
    context[0] = "ACTIVE"  # the run ended since: the old observation still answers at once
    again = observer.observe(group, context="ACTIVE")
    assert again is not None and again.observed_at == first.observed_at
    assert observer.poll_once() == 1  # and the group is observed again at once
    poll_until(lambda: len(calls) >= 2 or None, what="a second observation", timeout=30)
    observer.refresh(group)  # a restart's thread observes before it reports the end
    assert len(calls) == 3


def test_cached_observer_still_serves_the_ttl_mode() -> None:
    """The request-thread observer (tests, embedding) reports the age of what it hands out."""
    t = [0.0]

    def observe(g: Group) -> GroupState:
        return GroupState(group=g.id, nodes=(), mha=None, mha_error="not asked")

    group = load_inventory(Path(__file__).resolve().parents[2] / "inventories" / "lab.yml").groups[
        0
    ]
    cache = CachedObserver(10, observe=observe, clock=lambda: t[0])
    first = cache.observe(group)
    t[0] = 4.0
    again = cache.observe(group)
    assert first.age_s == 0.0 and again.age_s == 4.0 and again.observed_at == first.observed_at
