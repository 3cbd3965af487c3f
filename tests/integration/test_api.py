"""`harestart serve` as a real process against a real 1+1 lab cluster.

The seed's example request ("Restart an HA instance", Cloud Databases API reference) is sent
byte for byte; then an independent HTTP client (``requests``, standing in for
python-troveclient's HTTP layer, which is not installable here) polls with the seed's headers.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from . import harestart_cli
from .conftest import ClusterFactory
from .harestart_cli import harestart, log_events_tolerant
from .lab import ready_count, wait_for

pytestmark = pytest.mark.integration

# The values of the seed's example exchange.
SEED_TOKEN = "87c6033c-9ff6-405f-943e-2deb73f278b7"
SEED_ACCOUNT = "1234"
SEED_HA = "3a493f8c-9b9c-4ca1-845b-e3689abb1f5c"
SEED_HEADERS = {
    "User-Agent": "python-troveclient",
    "X-Auth-Token": SEED_TOKEN,
    "Accept": "application/json",
    "Content-Type": "application/json",
}


class Served(harestart_cli.Served):
    @property
    def base(self) -> str:
        return self.url(f"/v1.0/{SEED_ACCOUNT}")

    def events(self) -> list[dict[str, Any]]:
        return log_events_tolerant(self.log)


@pytest.fixture
def serve_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(inventory: Path) -> Served:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps({SEED_TOKEN: SEED_ACCOUNT}))
        tokens.chmod(0o600)
        s = harestart_cli.start_serve(inventory, state_dir=tmp_path, tokens=tokens)
        started.append(s.proc)
        return Served(s.proc, s.port, s.log)

    yield start
    for proc in started:  # never leave a server behind
        harestart_cli.stop_serve(proc)


def send_seed_request(port: int) -> tuple[str, dict[str, str], bytes]:
    """The seed's request, verbatim; only Content-Length (and the blank line before the body,
    which the documentation's rendering drops) are added, as every HTTP client does."""
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
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(raw)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, rest = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
    return status, headers, rest


def ha_instance(http: requests.Session, served: Served) -> dict[str, Any]:
    r = http.get(f"{served.base}/ha/{SEED_HA}", timeout=60)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()["ha_instance"]
    return doc


def test_seed_request_restarts_the_group_reboot_then_active(
    cluster_factory: ClusterFactory, tmp_path: Path, serve_factory: Any, flavor: str
) -> None:
    cluster = cluster_factory(1, flavor=flavor)
    inventory = cluster.write_inventory(
        tmp_path / "inv.yml", group_id=SEED_HA, account=SEED_ACCOUNT
    )
    starts = {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}
    served = serve_factory(inventory)
    http = requests.Session()
    http.headers.update(SEED_HEADERS)

    before = ha_instance(http, served)
    assert before["state"] == "ACTIVE" and before["healthy"] is True
    assert before["datastore"]["type"] == flavor
    assert [n["role"] for n in before["replica_source"] + before["replicas"]] == [
        "source",
        "replica",
    ]
    assert before["replica_source"][0]["server_id"] == cluster.source.server_id
    assert before["mha"]["state"] == "PING_OK" and before["last_restart"] is None

    status, headers, body = send_seed_request(served.port)
    assert status == "HTTP/1.1 202 Accepted"
    assert headers["content-length"] == "0" and body == b""
    assert headers["content-type"] == "application/json"
    accepted_id = headers["x-request-id"]

    # REBOOT while the run holds the group; a second request then gets 422.
    doc = wait_for("state REBOOT", lambda: (d := ha_instance(http, served))["state"] == "REBOOT" and d, timeout=60, interval=0.1)  # fmt: skip
    assert doc["lock"]["alive"] is True
    again = http.post(f"{served.base}/ha/{SEED_HA}/action", json={"restart": {}}, timeout=60)
    assert again.status_code == 422, again.text
    assert again.json()["unprocessableEntity"]["code"] == 422

    seen_reboot_nodes: set[str] = set()

    def active() -> dict[str, Any] | None:
        d = ha_instance(http, served)
        seen_reboot_nodes.update(
            n["name"] for n in d["replica_source"] + d["replicas"] if n["status"] == "REBOOT"
        )
        return d if d["state"] == "ACTIVE" else None

    after = wait_for("state ACTIVE again", active, timeout=400, interval=0.5)
    last = after["last_restart"]
    assert last["request_id"] == accepted_id and last["running"] is False
    assert last["ok"] is True and last["error"] is None, last
    result = last["result"]
    assert result["state"] == "ACTIVE" and result["ok"] is True and result["failure"] is None
    assert [(s["action"], s["host"], s["status"]) for s in result["steps"]] == [
        ("preflight", None, "done"),
        ("stop_failover", "mha", "done"),
        ("restart_replica", "db2", "done"),
        ("restart_source", "db1", "done"),
        ("start_failover", "mha", "done"),
        ("verify", None, "done"),
    ]
    assert all(s["duration_s"] is not None for s in result["steps"])
    assert seen_reboot_nodes  # some node showed REBOOT while it was being restarted
    # The servers themselves say each mysqld restarted exactly once; MHA monitors again.
    for n in cluster.db_nodes:
        assert ready_count(cluster, n.name) == starts[n.name] + 1, n.name
    assert "PING_OK" in cluster.mha_status()[1] and after["mha"]["state"] == "PING_OK"

    listed = http.get(f"{served.base}/ha", timeout=60)
    assert listed.status_code == 200
    assert listed.json()["ha_instances"][0]["id"] == SEED_HA
    assert listed.json()["ha_instances"][0]["state"] == "ACTIVE"

    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=30) == 0  # stops by itself (the deadline: a generous 30 s)

    events = served.events()
    requests_logged = [e for e in events if e["event"] == "api.request"]
    assert {e["status"] for e in requests_logged} >= {200, 202, 422}
    assert any(e["request_id"] == accepted_id and e["status"] == 202 for e in requests_logged)
    # The run's own events carry the request that started it.
    assert any(e["event"] == "ssh.command" and e.get("request_id") == accepted_id for e in events)
    assert SEED_TOKEN not in served.log.read_text()
    assert cluster.password_file.read_text().strip() not in served.log.read_text()


def test_sigterm_mid_restart_stops_at_a_safe_point_and_exits_0(
    cluster_factory: ClusterFactory, tmp_path: Path, serve_factory: Any
) -> None:
    cluster = cluster_factory(1)
    inventory = cluster.write_inventory(
        tmp_path / "inv.yml", group_id=SEED_HA, account=SEED_ACCOUNT
    )
    served = serve_factory(inventory)
    http = requests.Session()
    http.headers.update(SEED_HEADERS)
    r = http.post(f"{served.base}/ha/{SEED_HA}/action", json={"restart": {}}, timeout=60)
    assert r.status_code == 202 and r.content == b""

    def restarting_replica() -> bool:
        return any(
            e["event"] == "step.started" and e.get("step") == "restart_replica:db2"
            for e in served.events()
        )

    wait_for("the replica's restart began", restarting_replica, timeout=120, interval=0.1)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=300) == 0
    events = served.events()
    names = [e["event"] for e in events]
    assert "api.stopping" in names and names[-1] == "api.stopped"
    finished = next(e for e in events if e["event"] == "api.restart.finished")
    assert finished["interrupted"] == "SIGTERM" and finished["ok"] is False
    # The source was not touched; the journal says where the run stopped; resume finishes it.
    assert not any(
        e["event"] == "ssh.command" and "restart" in e["command"] and e.get("host") == "db1"
        for e in events
    )
    out = harestart("status", str(inventory), "--format", "json", state_dir=tmp_path)
    assert out.json()["state"] == "ERROR" and out.json()["unfinished_run"] is not None
    out = harestart("resume", str(inventory), "--yes", "--format", "json", state_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.json()["state"] == "ACTIVE"
