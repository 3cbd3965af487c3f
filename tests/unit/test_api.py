"""The HTTP API against its real server on 127.0.0.1:0, with fakes behind it (no hosts).

Every response code of the seed's table is produced by its trigger; the seed's example
exchange is sent byte for byte over a socket.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from harestart.domain.group import Group
from harestart.domain.judge import RunFacts, RunSummary
from harestart.domain.observation import GroupState
from harestart.domain.result import GroupStatus, RunResult, utc_now
from harestart.engine.observe import observe_group
from harestart.engine.sequencer.waiting import poll_until
from harestart.engine.state.lock import GroupLock
from harestart.errors import UsageError
from harestart.http import api as api_mod
from harestart.http.api import (
    Api,
    Observed,
    RunView,
    TokenMap,
    Unprocessable,
    parse_tokens,
)
from harestart.http.jobs import BackgroundRestarter, CachedObserver
from harestart.http.server import ApiServer, InventoryFile, load_tokens
from harestart.inventory.load import load_inventory

from .fakes import FakeConnector, FakeMha, FakeShell, FakeWorld

REPO = Path(__file__).resolve().parents[2]

# The seed's example: "Restart an HA instance", JSON request (Cloud Databases API reference).
SEED_TOKEN = "87c6033c-9ff6-405f-943e-2deb73f278b7"
SEED_ACCOUNT = "1234"
SEED_HA = "3a493f8c-9b9c-4ca1-845b-e3689abb1f5c"
OTHER_TOKEN = "token-of-account-5678-aaaaaaaa"
LONELY_TOKEN = "token-of-an-account-without-groups"
OPERATOR_TOKEN = "operator-token-0123456789abcdef"  # {operator: true}: /metrics, every account


def inventory_text(password_file: Path) -> str:
    return f"""
defaults:
  mysql: {{user: harestart, password_file: {password_file}}}
groups:
  - id: {SEED_HA}
    account: "{SEED_ACCOUNT}"
    name: orders
    source: {{name: db1, address: 10.0.0.1}}
    replicas:
      - {{name: db2, address: 10.0.0.2}}
    mha: {{manager: {{name: mha, address: 10.0.0.9}}, config: /etc/mha/app1.cnf}}
  - id: b-second
    account: "{SEED_ACCOUNT}"
    source: {{name: db1, address: 10.0.1.1}}
    replicas: [{{name: db2, address: 10.0.1.2}}]
    mha: {{manager: {{name: mha, address: 10.0.1.9}}, config: /etc/mha/app1.cnf}}
  - id: c-third
    account: "{SEED_ACCOUNT}"
    source: {{name: db1, address: 10.0.2.1}}
    replicas: [{{name: db2, address: 10.0.2.2}}]
    mha: {{manager: {{name: mha, address: 10.0.2.9}}, config: /etc/mha/app1.cnf}}
  - id: other
    account: "5678"
    source: {{name: db1, address: 10.0.3.1}}
    replicas: [{{name: db2, address: 10.0.3.2}}]
    mha: {{manager: {{name: mha, address: 10.0.3.9}}, config: /etc/mha/app1.cnf}}
"""


@dataclass
class FakeRestarter:
    """Scripted states; ``start`` refuses unless ACTIVE, like the real one."""

    states: dict[str, GroupStatus] = field(default_factory=dict)
    started: list[tuple[str, str]] = field(default_factory=list)
    last: dict[str, Any] | None = None

    def view(self, group: Group) -> RunView:
        state = self.states.get(group.id, GroupStatus.ACTIVE)
        if state is GroupStatus.REBOOT:  # a restart of this server runs
            return RunView(RunFacts(running_here=True), "restart_replica:db2", self.last)
        if state is GroupStatus.ERROR:  # a run did not finish
            unfinished = RunSummary("r0", "t0", "failed", "run r0 failed")
            return RunView(RunFacts(unfinished=unfinished), None, self.last)
        return RunView(RunFacts(), None, self.last)

    def start(self, group: Group, request_id: str) -> None:
        state = self.states.get(group.id, GroupStatus.ACTIVE)
        if state is not GroupStatus.ACTIVE:
            raise Unprocessable(f"HA instance {group.id} is {state.value}")
        self.started.append((group.id, request_id))
        self.states[group.id] = GroupStatus.REBOOT


@dataclass
class Env:
    server: ApiServer
    api: Api
    restarter: Any
    inventory_file: Path
    world: FakeWorld
    shutting_down: threading.Event

    def conn(self) -> http.client.HTTPConnection:
        host, port = self.server.address
        return http.client.HTTPConnection(host, port, timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        token: str | None = SEED_TOKEN,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        h = {"Accept": "application/json", "Content-Type": "application/json"}
        if token is not None:
            h["X-Auth-Token"] = token
        h.update(headers or {})
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


def fault(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    assert isinstance(doc, dict) and len(doc) == 1
    ((name, inner),) = doc.items()
    assert inner["name"] == name and isinstance(inner["code"], int) and inner["message"]
    assert inner["request_id"]
    return dict(inner)


def make_env(
    tmp_path: Path,
    restarter: Any = None,
    observe: Any = None,
    ttl: float = 5.0,
    idle_timeout: float = 30.0,
    request_timeout: float = 10.0,
) -> tuple[Env, Any]:
    pw = tmp_path / "pw"
    pw.write_text("fake-password\n")
    inv_path = tmp_path / "inv.yml"
    inv_path.write_text(inventory_text(pw))
    world = FakeWorld.create(replicas=1)

    def fake_observe(g: Group) -> GroupState:
        return observe_group(g, FakeConnector(world), FakeMha(world, FakeShell(world, "mha")))

    restarter = restarter if restarter is not None else FakeRestarter()
    stopping = threading.Event()
    api = Api(
        tokens=TokenMap(
            {
                SEED_TOKEN: SEED_ACCOUNT,
                OTHER_TOKEN: "5678",
                LONELY_TOKEN: "9999",
                OPERATOR_TOKEN: api_mod.OPERATOR,
            }
        ),
        inventory=InventoryFile(str(inv_path), load_inventory(inv_path)),
        restarter=restarter,
        observer=CachedObserver(ttl, observe=observe or fake_observe),
        shutting_down=stopping.is_set,
    )
    server = ApiServer(api, idle_timeout=idle_timeout, request_timeout=request_timeout).start()
    return Env(server, api, restarter, inv_path, world, stopping), restarter


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Server threads log every request; drop them unless a test captures them."""
    structlog.configure(
        processors=[lambda *_: ""],  # every event rendered as nothing
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    yield
    structlog.reset_defaults()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e, _ = make_env(tmp_path)
    try:
        yield e
    finally:
        e.server.stop()


ACTION = f"/v1.0/{SEED_ACCOUNT}/ha/{SEED_HA}/action"
DETAIL = f"/v1.0/{SEED_ACCOUNT}/ha/{SEED_HA}"
LIST = f"/v1.0/{SEED_ACCOUNT}/ha"


# --- 202: the seed's exact exchange ----------------------------------------------------------


def test_seed_request_verbatim_gets_202_with_an_empty_body(env: Env) -> None:
    body = b'{      \n    "restart":{ \n    } \n}'
    raw = (
        f"POST /v1.0/{SEED_ACCOUNT}/ha/{SEED_HA}/action HTTP/1.1\r\n"
        "User-Agent: python-troveclient\r\n"
        "Host: ord.databases.api.rackspacecloud.com\r\n"
        f"X-Auth-Token: {SEED_TOKEN}\r\n"
        "Accept: application/json\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode() + body
    with socket.create_connection(env.server.address, timeout=10) as s:
        s.sendall(raw)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, rest = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 202 Accepted"
    headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    assert headers["content-length"] == "0" and rest == b""
    assert headers["content-type"] == "application/json"
    assert headers["date"] and headers["x-request-id"]
    assert env.restarter.started == [(SEED_HA, headers["x-request-id"])]


def test_client_request_id_is_echoed_and_used(env: Env) -> None:
    status, headers, _ = env.request(
        "POST", ACTION, '{"restart": {}}', headers={"X-Request-Id": "abc-123"}
    )
    assert status == 202 and headers["x-request-id"] == "abc-123"
    assert env.restarter.started == [(SEED_HA, "abc-123")]
    # an unusable id is replaced by a generated one
    _, headers, _ = env.request("GET", LIST, headers={"X-Request-Id": "bad id\x7f"})
    assert headers["x-request-id"].startswith("req-")


# --- 200: GET ----------------------------------------------------------------------------------


def test_get_shows_the_ha_instance_with_roles_states_and_last_restart(env: Env) -> None:
    env.restarter.last = {"request_id": "r1", "ok": True, "result": {"state": "ACTIVE"}}
    status, headers, body = env.request("GET", DETAIL)
    assert status == 200 and headers["content-type"] == "application/json"
    ha = json.loads(body)["ha_instance"]
    assert ha["id"] == SEED_HA and ha["name"] == "orders" and ha["tenant_id"] == SEED_ACCOUNT
    assert ha["state"] == "ACTIVE" and ha["healthy"] is True and ha["problems"] == []
    assert ha["datastore"]["type"] == "mariadb"
    (src,) = ha["replica_source"]
    assert (src["name"], src["role"], src["status"], src["server_id"]) == (
        "db1",
        "source",
        "ACTIVE",
        1,
    )
    assert src["replicas"] == [{"id": "db2", "name": "db2"}]
    (rep,) = ha["replicas"]
    assert (rep["name"], rep["role"], rep["status"]) == ("db2", "replica", "ACTIVE")
    assert rep["replica_of"]["id"] == "db1" and rep["replication"]["io_running"] == "Yes"
    assert ha["mha"]["state"] == "PING_OK"
    assert ha["last_restart"] == env.restarter.last
    assert ha["links"] == [{"href": DETAIL, "rel": "self"}]

    # While a restart runs: REBOOT, and the node being restarted is REBOOT too.
    env.restarter.states[SEED_HA] = GroupStatus.REBOOT
    ha = json.loads(env.request("GET", DETAIL)[2])["ha_instance"]
    assert ha["state"] == "REBOOT" and ha["replicas"][0]["status"] == "REBOOT"
    assert ha["current_step"] == "restart_replica:db2"


def test_get_observation_is_cached_for_a_few_seconds(tmp_path: Path) -> None:
    calls: list[str] = []
    world = FakeWorld.create(replicas=1)

    def observe(g: Group) -> GroupState:
        calls.append(g.id)
        return observe_group(g, FakeConnector(world), FakeMha(world, FakeShell(world, "mha")))

    e, _ = make_env(tmp_path, observe=observe, ttl=60)
    try:
        for _ in range(3):
            assert e.request("GET", DETAIL)[0] == 200
        assert calls == [SEED_HA]
        # A replica that stops replicating shows once the cache expires (ttl 0: always fresh).
        e.api.observer = CachedObserver(0, observe=observe)
        world.nodes["db2"].io = "No"
        ha = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]
        assert ha["replicas"][0]["status"] == "ERROR" and ha["healthy"] is False
    finally:
        e.server.stop()


def test_list_is_paged_with_limit_and_marker(env: Env) -> None:
    status, _, body = env.request("GET", LIST)
    assert status == 200
    doc = json.loads(body)
    assert [h["id"] for h in doc["ha_instances"]] == sorted([SEED_HA, "b-second", "c-third"])
    assert "links" not in doc and all(h["state"] == "ACTIVE" for h in doc["ha_instances"])

    doc = json.loads(env.request("GET", LIST + "?limit=2")[2])
    assert [h["id"] for h in doc["ha_instances"]] == [SEED_HA, "b-second"]
    assert doc["links"] == [{"href": f"{LIST}?limit=2&marker=b-second", "rel": "next"}]
    doc = json.loads(env.request("GET", doc["links"][0]["href"])[2])
    assert [h["id"] for h in doc["ha_instances"]] == ["c-third"] and "links" not in doc


# --- 400 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"restart": {}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("", "not valid JSON"),
        ('["restart"]', "must be a JSON object"),
        ('"restart"', "must be a JSON object"),
        ("{}", "exactly one action"),
        ('{"restart": {}, "resize": {}}', "exactly one action"),
        ('{"restart": {"force": true}}', "takes no arguments"),
        ('{"restart": null}', "takes no arguments"),
        ('{"restart": []}', "takes no arguments"),
    ],
)
def test_400_for_a_body_that_is_not_a_restart_object(
    env: Env, body: str | bytes, says: str
) -> None:
    status, _, resp = env.request("POST", ACTION, body)
    assert status == 400, resp
    f = fault(resp)
    assert f["code"] == 400 and f["name"] == "badRequest" and says in f["message"]
    assert env.restarter.started == []


def test_400_for_bad_limit_and_chunked_bodies(env: Env) -> None:
    for q in ("limit=0", "limit=abc", "limit=-1", "limit="):
        status, _, body = env.request("GET", f"{LIST}?{q}")
        assert status == 400 and "limit must be a positive integer" in fault(body)["message"]
    c = env.conn()
    c.putrequest("POST", ACTION)
    c.putheader("X-Auth-Token", SEED_TOKEN)
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    c.send(b'f\r\n{"restart": {}}\r\n0\r\n\r\n')
    r = c.getresponse()
    assert r.status == 400 and "chunked" in fault(r.read())["message"]
    c.close()


# --- 401, 403 ------------------------------------------------------------------------------


def test_401_without_or_with_a_wrong_token_and_tokens_are_never_logged(env: Env) -> None:
    with capture_logs() as events:
        status, _, body = env.request("POST", ACTION, '{"restart": {}}', token=None)
        assert status == 401 and fault(body)["name"] == "unauthorized"
        assert "X-Auth-Token" in fault(body)["message"]
        wrong = SEED_TOKEN[:-1] + "0"
        status, _, body = env.request("GET", DETAIL, token=wrong)
        assert status == 401 and "not valid" in fault(body)["message"]
        assert env.request("GET", DETAIL)[0] == 200
        # The access line is written by the server thread just after the response is sent.
        poll_until(
            lambda: sum(e["event"] == "api.request" for e in events) >= 3 or None,
            what="three access lines",
            timeout=30,
        )
    assert env.restarter.started == []
    text = json.dumps(events, default=str)
    assert SEED_TOKEN not in text and wrong not in text
    assert [e["status"] for e in events if e["event"] == "api.request"] == [401, 401, 200]
    assert {e.get("account") for e in events if e["event"] == "api.request"} == {None, SEED_ACCOUNT}


def test_403_for_a_valid_token_of_another_account(env: Env) -> None:
    status, _, body = env.request("POST", ACTION, '{"restart": {}}', token=OTHER_TOKEN)
    assert status == 403 and fault(body)["name"] == "forbidden"
    assert env.request("GET", LIST, token=OTHER_TOKEN)[0] == 403
    assert env.request("GET", "/v1.0/5678/ha/other", token=OTHER_TOKEN)[0] == 200
    assert env.restarter.started == []


# --- 404 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token", "says"),
    [
        ("/v1.0/9999/ha", LONELY_TOKEN, "account 9999 has no HA instances"),
        (f"/v1.0/{SEED_ACCOUNT}/ha/no-such-group", SEED_TOKEN, "no-such-group"),
        (f"/v1.0/{SEED_ACCOUNT}/ha/no-such-group/action", SEED_TOKEN, "no-such-group"),
        (f"/v1.0/{SEED_ACCOUNT}/instances", SEED_TOKEN, "no such resource"),
        (f"/v1.0/{SEED_ACCOUNT}/ha/{SEED_HA}/", SEED_TOKEN, "no such resource"),
        ("/", SEED_TOKEN, "no such resource"),
        (f"/v2.0/{SEED_ACCOUNT}/ha", SEED_TOKEN, "unknown API version"),
    ],
)
def test_404_for_unknown_account_ha_id_or_path(env: Env, path: str, token: str, says: str) -> None:
    method = "POST" if path.endswith("/action") else "GET"
    status, _, body = env.request(method, path, '{"restart": {}}', token=token)
    assert status == 404, body
    f = fault(body)
    assert f["name"] == "itemNotFound" and says in f["message"]


# --- 405 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", ACTION, "POST"),
        ("PUT", ACTION, "POST"),
        ("DELETE", DETAIL, "GET, HEAD"),
        ("PATCH", DETAIL, "GET, HEAD"),
        ("POST", DETAIL, "GET, HEAD"),
        ("POST", LIST, "GET, HEAD"),
        ("OPTIONS", LIST, "GET, HEAD"),
    ],
)
def test_405_with_allow_for_a_method_the_resource_does_not_allow(
    env: Env, method: str, path: str, allow: str
) -> None:
    status, headers, body = env.request(method, path, '{"restart": {}}')
    assert status == 405 and headers["allow"] == allow
    assert fault(body)["name"] == "badMethod"
    assert env.restarter.started == []


# --- 413 -----------------------------------------------------------------------------------


def test_413_for_a_body_over_the_limit_and_a_limit_over_the_page_size(env: Env) -> None:
    big = '{"restart": {}, "pad": "' + "x" * api_mod.MAX_BODY + '"}'
    status, headers, body = env.request("POST", ACTION, big)
    assert status == 413 and fault(body)["name"] == "overLimit"
    assert headers["connection"] == "close"  # the unread body ends the connection
    status, _, body = env.request("GET", f"{LIST}?limit={api_mod.MAX_LIMIT + 1}")
    assert status == 413 and "maximum page size" in fault(body)["message"]
    assert env.request("GET", f"{LIST}?limit={api_mod.MAX_LIMIT}")[0] == 200
    assert env.restarter.started == []


# --- 422 -----------------------------------------------------------------------------------


def test_422_when_the_group_is_not_active(env: Env) -> None:
    assert env.request("POST", ACTION, '{"restart": {}}')[0] == 202
    status, _, body = env.request("POST", ACTION, '{"restart": {}}')
    assert status == 422 and "REBOOT" in fault(body)["message"]
    env.restarter.states["b-second"] = GroupStatus.ERROR
    status, _, body = env.request("POST", f"{LIST}/b-second/action", '{"restart": {}}')
    assert status == 422 and fault(body)["name"] == "unprocessableEntity"
    assert [g for g, _ in env.restarter.started] == [SEED_HA]


# --- 500 -----------------------------------------------------------------------------------


def test_500_carries_an_error_id_and_no_internals(tmp_path: Path) -> None:
    def broken(_g: Group) -> GroupState:
        raise RuntimeError("internal detail /etc/secret-path")

    e, _ = make_env(tmp_path, observe=broken)
    try:
        with capture_logs() as events:
            status, headers, body = e.request("GET", DETAIL)
        assert status == 500
        f = fault(body)
        assert f["name"] == "instanceFault" and headers["x-error-id"] in f["message"]
        assert "secret-path" not in body.decode() and "RuntimeError" not in body.decode()
        (err,) = [ev for ev in events if ev["event"] == "api.error"]
        assert err["error_id"] == headers["x-error-id"] and err["log_level"] == "error"
        assert err["request_id"] == headers["x-request-id"] == f["request_id"]
    finally:
        e.server.stop()


# --- 501 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ('{"resize": {"flavorRef": "2"}}', "does not implement the 'resize' action"),
        ('{"resize_volumes": {"size": 4}}', "does not implement the 'resize_volumes'"),
        ('{"add_replica": {"replica_details": {}}}', "does not implement the 'add_replica'"),
        ('{"frobnicate": {}}', "unknown action 'frobnicate'"),
    ],
)
def test_501_for_known_unimplemented_and_unknown_actions(env: Env, body: str, says: str) -> None:
    status, _, resp = env.request("POST", ACTION, body)
    assert status == 501
    f = fault(resp)
    assert f["name"] == "notImplemented" and says in f["message"]
    assert env.restarter.started == []


def test_501_json_fault_for_a_method_http_does_not_know(env: Env) -> None:
    status, _, body = env.request("BREW", ACTION)
    assert status == 501 and fault(body)["name"] == "notImplemented"


# --- 503 -----------------------------------------------------------------------------------


def test_503_while_shutting_down(env: Env) -> None:
    env.shutting_down.set()
    status, headers, body = env.request("POST", ACTION, '{"restart": {}}')
    assert status == 503 and fault(body)["name"] == "serviceUnavailable"
    assert "shutting down" in fault(body)["message"] and headers["retry-after"]
    assert env.restarter.started == []


def test_503_while_the_inventory_cannot_be_loaded_and_back_when_fixed(env: Env) -> None:
    good = env.inventory_file.read_text()
    env.inventory_file.write_text(good.replace("account:", "acount:", 1))
    status, _, body = env.request("GET", DETAIL)
    assert status == 503 and "inventory cannot be loaded" in fault(body)["message"]
    assert env.request("POST", ACTION, '{"restart": {}}')[0] == 503
    env.inventory_file.write_text(good + "\n")
    assert env.request("GET", DETAIL)[0] == 200
    env.inventory_file.unlink()
    assert env.request("GET", LIST)[0] == 503
    assert env.restarter.started == []


def test_503_when_a_groups_password_is_unavailable(env: Env) -> None:
    (env.inventory_file.parent / "pw").unlink()
    status, _, body = env.request("POST", ACTION, '{"restart": {}}')
    assert status == 503 and "cannot be used" in fault(body)["message"]
    assert env.restarter.started == []


# --- connections that say nothing ------------------------------------------------------------


def test_silent_and_idle_keep_alive_connections_are_closed_others_still_answered(
    tmp_path: Path,
) -> None:
    e, _ = make_env(tmp_path, idle_timeout=1.0)
    try:
        host, port = e.server.address
        silent = socket.create_connection((host, port), timeout=20)  # connects, sends nothing
        keep_alive = e.conn()  # one request answered, then the connection stays open, idle
        keep_alive.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN})
        response = keep_alive.getresponse()
        assert response.status == 200 and response.getheader("Connection") != "close"
        response.read()
        assert keep_alive.sock is not None
        keep_alive.sock.settimeout(20)
        for _ in range(3):  # meanwhile every other client is answered
            assert e.request("GET", LIST)[0] == 200
        assert silent.recv(1) == b""  # closed by the server (a hang would time out after 20 s)
        assert keep_alive.sock.recv(1) == b""
        silent.close()
        keep_alive.close()
        assert e.request("GET", LIST)[0] == 200
    finally:
        e.server.stop()


def test_a_body_that_never_arrives_gets_400_and_the_connection_is_closed(tmp_path: Path) -> None:
    """Since #21 the deadline is the whole request's (--request-timeout), not a read's."""
    e, _ = make_env(tmp_path, request_timeout=0.5)
    try:
        with socket.create_connection(e.server.address, timeout=20) as s:
            s.sendall(
                f"POST {ACTION} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {SEED_TOKEN}\r\n"
                'Content-Length: 15\r\n\r\n{"rest'.encode()
            )
            answer = b""
            while chunk := s.recv(4096):  # until the server closes the connection
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in head
        assert "did not arrive within 0.5 s" in fault(body)["message"]
        assert e.restarter.started == []
    finally:
        e.server.stop()


# --- the real BackgroundRestarter: the group lock decides -----------------------------------


@dataclass
class BlockingRestart:
    """Stands in for engine.run.restart: takes the real group lock, begins, blocks."""

    state_dir: Path
    release: threading.Event = field(default_factory=threading.Event)
    calls: int = 0

    def __call__(self, group: Group, reporter: Any, options: Any, **kw: Any) -> RunResult:
        self.calls += 1
        with GroupLock(self.state_dir, group.account, group.id, command=options.command):
            from harestart.domain.plan.build import build_plan

            step = build_plan(group).steps[2]  # restart_replica:db2
            reporter.step_started(group.id, step)
            while not self.release.wait(0.01):
                kw["interrupts"].check()  # a stop request ends the wait like a safe point
            now = utc_now()
            return RunResult(
                group.id, group.account, GroupStatus.ACTIVE, now, now, 0.1, (), None, None
            )


def test_real_restarter_lock_decides_between_api_and_cli_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARESTART_STATE_DIR", str(tmp_path / "state"))
    fake = BlockingRestart(tmp_path / "state")
    restarter = BackgroundRestarter("inv.yml", restart=fake)
    e, _ = make_env(tmp_path, restarter=restarter)
    try:
        assert e.request("POST", ACTION, '{"restart": {}}')[0] == 202
        ha = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]
        assert ha["state"] == "REBOOT" and ha["current_step"] == "restart_replica:db2"
        assert ha["replicas"][0]["status"] == "REBOOT" and ha["lock"]["alive"] is True
        # A second request while REBOOT: 422.
        status, _, body = e.request("POST", ACTION, '{"restart": {}}')
        assert status == 422 and "REBOOT" in fault(body)["message"]
        fake.release.set()
        poll_until(
            lambda: (
                json.loads(e.request("GET", DETAIL)[2])["ha_instance"]["state"] == "ACTIVE" or None
            ),
            what="ACTIVE again",
            timeout=30,
        )
        last = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]["last_restart"]
        assert last["ok"] is True and last["running"] is False and last["result"]["ok"] is True

        # A `harestart run` in a shell holds the lock: the API's run is refused by the lock.
        fake.release.clear()
        with GroupLock(tmp_path / "state", SEED_ACCOUNT, SEED_HA, command="harestart run"):
            ha = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]
            assert ha["state"] == "REBOOT" and "another harestart run" in ha["state_reason"]
            status, _, body = e.request("POST", ACTION, '{"restart": {}}')
            assert status == 422 and "another harestart run holds group" in fault(body)["message"]
        # The 422 while REBOOT was decided in-process (no run started); the one under the
        # shell's lock started a run that the lock stopped.
        assert fake.calls == 2

        # SIGTERM path: a running restart is asked to stop at its next safe point.
        assert e.request("POST", ACTION, '{"restart": {}}')[0] == 202
        assert restarter.stop_all("SIGTERM") == 1
        assert restarter.wait(timeout=10)
        last = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]["last_restart"]
        assert last["ok"] is False and last["error"]["name"] == "Interrupted"
        status, _, body = e.request("POST", ACTION, '{"restart": {}}')
        assert status == 422 and "shutting down" in fault(body)["message"]
    finally:
        fake.release.set()
        e.server.stop()


def test_unfinished_journal_makes_the_group_error_and_refuses_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harestart.engine.state.journal import Journal, journal_path

    state = tmp_path / "state"
    monkeypatch.setenv("HARESTART_STATE_DIR", str(state))
    j = Journal(journal_path(state, SEED_ACCOUNT, SEED_HA), SEED_HA, SEED_ACCOUNT, "inv.yml")
    j.started_at, j.outcome = utc_now(), "failed"
    j.step("restart_replica:db2").status = "failed"
    j.save()

    def refuse_like_runner(group: Group, reporter: Any, options: Any, **kw: Any) -> RunResult:
        from harestart.engine.run import journal_for
        from harestart.wiring import environment

        journal_for(group, options, env=environment(), resume=False)  # raises: unfinished run
        raise AssertionError("not reached")

    e, _ = make_env(tmp_path, restarter=BackgroundRestarter("inv.yml", restart=refuse_like_runner))
    try:
        ha = json.loads(e.request("GET", DETAIL)[2])["ha_instance"]
        assert ha["state"] == "ERROR" and ha["unfinished_run"]["outcome"] == "failed"
        # a tenant is not shown the server's inventory path (#21), an operator is
        assert ha["unfinished_run"]["resume"] == f"harestart resume INVENTORY --group {SEED_HA}"
        ha = json.loads(e.request("GET", DETAIL, token=OPERATOR_TOKEN)[2])["ha_instance"]
        assert ha["unfinished_run"]["resume"] == f"harestart resume inv.yml --group {SEED_HA}"
        status, _, body = e.request("POST", ACTION, '{"restart": {}}')
        assert status == 422 and "unfinished run" in fault(body)["message"]
        listed = json.loads(e.request("GET", LIST)[2])["ha_instances"]
        assert {h["id"]: h["state"] for h in listed}[SEED_HA] == "ERROR"
    finally:
        e.server.stop()


# --- tokens ----------------------------------------------------------------------------------


def test_tokens_from_yaml_json_or_env_and_their_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "tokens.yml"
    f.write_text(f'"{SEED_TOKEN}": "1234"\nanother-token-0123456789: 5678\n')
    tokens = load_tokens(str(f), None)
    assert (
        tokens.account(SEED_TOKEN) == "1234"
        and tokens.account("another-token-0123456789") == "5678"
    )
    assert tokens.account(SEED_TOKEN + "x") is None and tokens.account("") is None
    monkeypatch.setenv("API_TOKENS", json.dumps({SEED_TOKEN: "1234"}))
    assert load_tokens(None, "API_TOKENS").account(SEED_TOKEN) == "1234"
    for bad, says in [
        ("[]", "mapping"),
        ("{", "not YAML or JSON"),
        ('{"short": "1"}', "at least 16 characters"),
        (f'{{"{SEED_TOKEN}": null}}', "account must be"),
    ]:
        with pytest.raises(UsageError, match=says) as exc:
            parse_tokens(bad, "t.yml")
        assert SEED_TOKEN not in str(exc.value)
    with pytest.raises(UsageError, match="exactly one of"):
        load_tokens(None, None)
    with pytest.raises(UsageError, match="exactly one of"):
        load_tokens(str(f), "API_TOKENS")
    with pytest.raises(UsageError, match="NOPE_UNSET"):
        load_tokens(None, "NOPE_UNSET")


SECOND_TOKEN = "another-token-0123456789"


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        (
            f'"{SEED_TOKEN}": "1234"\n{SECOND_TOKEN}: 5678\n"{SEED_TOKEN}": "9999"\n',
            3,
            "duplicate key",
        ),
        (
            f'"{SEED_TOKEN}": &acct "1234"\n{SECOND_TOKEN}: *acct\n',
            1,
            "anchors (&) are not allowed",
        ),
        (f'"{SEED_TOKEN}": "1234"\n{SECOND_TOKEN}: *acct\n', 2, "undefined alias"),
        (f'"{SEED_TOKEN}": "1234"\n{SECOND_TOKEN}: !vault "5678"\n', 2, "unsupported YAML value"),
        (f'"{SEED_TOKEN}": "1234"\n<<: {{{SECOND_TOKEN}: "1"}}\n', 2, "'<<' merge keys"),
    ],
    ids=["duplicate-key", "anchor-alias", "undefined-alias", "tag", "merge-key"],
)
def test_tokens_file_is_read_with_the_safe_loader_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    f = tmp_path / "tokens.yml"
    f.write_text(text)
    with pytest.raises(UsageError) as exc:
        load_tokens(str(f), None)
    message = str(exc.value)
    assert says in message
    assert f"{f}:{line}: " in message
    assert int(exc.value.exit_code) == 2
    assert SEED_TOKEN not in message and SECOND_TOKEN not in message


def test_tokens_file_alias_is_reported_on_its_own_line(tmp_path: Path) -> None:
    f = tmp_path / "tokens.yml"
    f.write_text(f'"{SEED_TOKEN}": &acct "1234"\n{SECOND_TOKEN}: *acct\n')
    with pytest.raises(UsageError) as exc:
        load_tokens(str(f), None)
    assert f"{f}:1: YAML anchors (&)" in str(exc.value)
    assert f"{f}:2: YAML aliases (*)" in str(exc.value)


def test_serve_with_a_bad_tokens_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yml"
    tokens.write_text(f'"{SEED_TOKEN}": "1234"\n"{SEED_TOKEN}": "5678"\n')
    tokens.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "harestart", "serve", "inventories/lab.yml", "--port", "0",
         "--tokens", str(tokens)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"{tokens}:2: duplicate key" in proc.stderr and "Traceback" not in proc.stderr
    assert SEED_TOKEN not in proc.stderr


# --- the real process: harestart serve, then SIGTERM -----------------------------------------


def test_serve_process_answers_then_exits_0_on_sigterm(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory_text(pw))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({SEED_TOKEN: SEED_ACCOUNT}))
    tokens.chmod(0o600)
    log = tmp_path / "serve.log"
    env = {**os.environ, "HARESTART_STATE_DIR": str(tmp_path / "state")}
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harestart", "serve", str(inv), "--port", "0",
             "--tokens", str(tokens)],
            stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=env,
        )  # fmt: skip
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            for line in log.read_text().splitlines():
                event = json.loads(line)
                if event["event"] == "api.listening":
                    assert event["host"] == "127.0.0.1"
                    port = event["port"]
            time.sleep(0.05)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", LIST, headers={"X-Auth-Token": SEED_TOKEN, "Accept": "application/json"})
        r = c.getresponse()
        assert r.status == 200 and len(json.loads(r.read())["ha_instances"]) == 3
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # stops by itself (the deadline: a generous 30 s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "api.request" in names and names[-1] == "api.stopped" and "api.stopping" in names
    (req,) = [e for e in events if e["event"] == "api.request"]
    assert (
        req["status"] == 200
        and req["request_id"].startswith("req-")
        and req["account"] == SEED_ACCOUNT
    )
    assert SEED_TOKEN not in log.read_text()


def test_serve_refuses_without_tokens(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harestart", "serve", "inventories/lab.yml", "--port", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "--tokens FILE or --tokens-env NAME" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_observed_document_builder_is_pure(tmp_path: Path) -> None:
    """ha_instance() turns an observation into the seed's shape without I/O."""
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    inv = tmp_path / "inv.yml"
    inv.write_text(inventory_text(pw))
    group = load_inventory(inv).groups[0]
    world = FakeWorld.create(replicas=1)
    world.nodes["db1"].ssh_unreachable = True
    state = observe_group(group, FakeConnector(world), FakeMha(world, FakeShell(world, "mha")))
    doc = api_mod.ha_instance(group, RunView(), Observed(state, "t"), "/x")
    assert doc["replica_source"][0]["status"] == "SHUTDOWN" and doc["healthy"] is False
    assert doc["state"] == "ERROR" and "db1" in doc["state_reason"]
    assert any("db1" in p for p in doc["problems"])


def test_cached_observation_is_not_reused_across_a_state_or_step_change() -> None:
    calls: list[str] = []

    def observe(g: Group) -> GroupState:
        calls.append(g.id)
        return GroupState(group=g.id, nodes=(), mha=None, mha_error="not asked")

    group = load_inventory(REPO / "inventories" / "lab.yml").groups[0]
    cache = CachedObserver(3600, observe=observe)
    cache.observe(group, context=("REBOOT", "start_failover:mha"))
    cache.observe(group, context=("REBOOT", "start_failover:mha"))
    assert len(calls) == 1  # same step: cached
    cache.observe(group, context=("ACTIVE", None))
    assert len(calls) == 2  # the run finished: observed again
