"""The group lock through a shared coordination service (issue #12): two bastions, one truth.

Two harestart processes with separate state directories stand in for two bastions ("a" and
"b"). They share one real MariaDB group (1 source + 2 replicas + MHA, started once for the
module) and one real coordination service: etcd 3.4 (Debian's ``etcd-server``) for most tests,
Redis 7.0 with a password for one. Every test uses a group id of its own, so a test's lock and
"unfinished" mark in the service never meet another test's; the group itself is left ACTIVE
and healthy by every test that passes. A short lease (``defaults.coordination.lease``) keeps
the tests that wait for one to expire fast.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from . import coord, harestart_cli, lab
from .coord import CoordService
from .harestart_cli import (
    finish,
    harestart,
    journal,
    start_harestart,
    wait_for_event,
)
from .lab import LabCluster, ready_count, wait_for, wait_restart_running

pytestmark = pytest.mark.integration

LEASE = 5  # seconds: defaults.coordination.lease of most tests
HOSTNAME = socket.gethostname()
PASSWORD_ENV = "HARESTART_TEST_REDIS_PASSWORD"


@pytest.fixture(scope="module")
def cluster(lab_docker: None, request: pytest.FixtureRequest) -> Iterator[LabCluster]:
    """One MariaDB 1 source + 2 replicas + MHA group for the whole module (this module's own
    ``cluster``: MariaDB only, not once per flavour; the lock does not depend on the server)."""
    artifacts = lab.ARTIFACTS_DIR / lab._safe_name(f"{request.node.name}-mariadb")
    c = lab.start_cluster(2, artifacts=artifacts, flavor="mariadb")
    try:
        yield c
    finally:
        c.stop()


@dataclass(frozen=True)
class Bastions:
    """Two state directories: two machines harestart runs on."""

    a: Path
    b: Path


@pytest.fixture
def bastions(tmp_path: Path) -> Bastions:
    a, b = tmp_path / "bastion-a", tmp_path / "bastion-b"
    for d in (a, b):
        d.mkdir(mode=0o700)
    return Bastions(a, b)


def coord_inventory(
    cluster: LabCluster,
    path: Path,
    url: str,
    *,
    group_id: str,
    lease: float = LEASE,
    password_env: str | None = None,
    account: str = "100001",
) -> Path:
    """The cluster's inventory with ``defaults.coordination`` set."""
    inv = cluster.write_inventory(path, group_id=group_id, account=account)
    doc = yaml.safe_load(inv.read_text())
    coordination: dict[str, Any] = {"url": url, "lease": lease}
    if password_env is not None:
        coordination["password_env"] = password_env
    doc["defaults"]["coordination"] = coordination
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv


def snapshot(cluster: LabCluster) -> dict[str, int]:
    """How many times each mysqld started (its error log's 'ready for connections' lines)."""
    return {n.name: ready_count(cluster, n.name) for n in cluster.db_nodes}


def plus_one(before: dict[str, int]) -> dict[str, int]:
    return {name: count + 1 for name, count in before.items()}


def journals(state: Path) -> list[Path]:
    return sorted((state / "journals").glob("*.json")) if (state / "journals").exists() else []


def names_pid(text: str, pid: int) -> bool:
    return re.search(rf"(?<!\d){pid}(?!\d)", text) is not None


def run_past_preflight(
    inv: Path, state: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`harestart run` in the background, returned once preflight passed and MHA is being
    stopped (it holds the lock then)."""
    log = state / "run.jsonl"
    proc = start_harestart(
        "run", str(inv), "--yes", *extra, "--log-file", str(log), state_dir=state, env=env
    )
    wait_for_event(
        log,
        lambda e: e.get("event") == "step.started" and e.get("step") == "stop_failover:mha",
        proc=proc,
    )
    return proc


def status_json(inv: Path, state: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = harestart("status", str(inv), "--format", "json", state_dir=state, env=env)
    try:
        doc: dict[str, Any] = out.json()
    except ValueError:
        raise AssertionError(
            f"status exited {out.returncode}: {out.stdout}\n{out.stderr}"
        ) from None
    return doc


def wait_lock_free(
    service: CoordService, inv: Path, state: Path, group_id: str, timeout: float
) -> None:
    """Until etcd holds neither the group's lock nor its holder record: both leases ran out
    (two leases, renewed by one heartbeat). Then ``status`` (from ``state``) shows no holder."""
    wait_for(
        "the lock's and the holder record's leases to expire",
        lambda: not service.leased_keys("100001", group_id),
        timeout=timeout,
        interval=0.5,
    )
    lock = status_json(inv, state)["lock"]
    assert lock is None or lock["alive"] is False, lock


def test_bad_coordination_settings_are_refused_before_anything_changes(
    cluster: LabCluster, bastions: Bastions, tmp_path: Path
) -> None:
    before = snapshot(cluster)
    closed = coord._free_port()  # nothing listens there
    secret = lab._random_password()
    h = lab.HOST
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        # (what, coordination settings, exit code, what the message must name)
        # An unknown scheme: the inventory is refused (exit 2, #22: checked at load).
        ("unknown scheme", {"url": f"nosuch://{h}:{closed}"}, 2, "unknown scheme 'nosuch'"),
        ("etcd not answering", {"url": f"etcd3+http://{h}:{closed}"}, 3, f"etcd3+http://{h}:{closed}"),
        ("redis not answering", {"url": f"redis://{h}:{closed}", "password_env": PASSWORD_ENV}, 3, f"redis://{h}:{closed}"),
        ("password env unset", {"url": f"redis://{h}:{closed}", "password_env": PASSWORD_ENV + "_UNSET"}, 3, PASSWORD_ENV + "_UNSET"),
        # A password written into the URL: the inventory itself is refused (exit 2, usage),
        # without echoing it; passwords come from password_env.
        ("password in the URL", {"url": f"redis://:{secret}@{h}:{closed}"}, 2, "password_env"),
    ]  # fmt: skip
    for i, (what, settings, code, named) in enumerate(cases):
        inv = cluster.write_inventory(tmp_path / f"inv{i}.yml", group_id="coord-bad")
        doc = yaml.safe_load(inv.read_text())
        doc["defaults"]["coordination"] = {**settings, "lease": LEASE}
        inv.write_text(yaml.safe_dump(doc, sort_keys=False))
        # Refused within a generous 60 s (the subprocess deadline), not after endless retries.
        out = harestart(
            "run", str(inv), "--yes", state_dir=bastions.a, env={PASSWORD_ENV: secret}, timeout=60
        )
        assert out.returncode == code, f"{what}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
        assert named in out.stderr, f"{what}: {out.stderr}"
        assert secret not in out.stdout + out.stderr, what
        assert "Traceback" not in out.stderr, what
    assert snapshot(cluster) == before
    assert cluster.mha_status()[0] == 0
    assert journals(bastions.a) == []
    for f in bastions.a.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


def test_two_bastions_run_at_once_one_restarts_the_other_exits_4_naming_it(
    cluster: LabCluster, etcd: CoordService, bastions: Bastions, tmp_path: Path
) -> None:
    inv = coord_inventory(cluster, tmp_path / "inv.yml", etcd.url, group_id="coord-concurrent")
    before = snapshot(cluster)
    first = run_past_preflight(inv, bastions.a)
    second = harestart("run", str(inv), "--yes", state_dir=bastions.b)
    assert second.returncode == 4, second.stdout + second.stderr
    assert names_pid(second.stderr, first.pid) and HOSTNAME in second.stderr, second.stderr
    # Who holds it is visible from the other bastion, with the backend that says so.
    lock = status_json(inv, bastions.b)["lock"]
    assert lock is not None and lock["alive"] is True, lock
    assert names_pid(lock["holder"], first.pid) and HOSTNAME in lock["holder"], lock
    assert lock["backend"] == "etcd3+http", lock
    out = finish(first)
    assert out.returncode == 0, out.stderr
    assert snapshot(cluster) == plus_one(before)  # every node restarted once, by one run
    assert journals(bastions.b) == []  # the refused run wrote nothing
    assert status_json(inv, bastions.b)["lock"] is None  # released at the end


def test_kill_9_of_the_holder_then_the_other_bastion_waits_for_the_lease_then_for_resume(
    cluster: LabCluster, etcd: CoordService, bastions: Bastions, tmp_path: Path
) -> None:
    lease = 20  # long enough for the other bastion's first try to land within it
    inv = coord_inventory(
        cluster, tmp_path / "inv.yml", etcd.url, group_id="coord-kill9", lease=lease
    )
    before = snapshot(cluster)
    log = bastions.a / "run.jsonl"
    proc = start_harestart("run", str(inv), "--yes", "--log-file", str(log), state_dir=bastions.a)

    def issued() -> bool:
        try:
            steps = journal(bastions.a)["steps"]
        except (ValueError, FileNotFoundError):
            return False
        return any(s["key"] == "restart_replica:db2" and s["restart_issued_at"] for s in steps)

    wait_for("db2's restart noted in the journal", issued, timeout=120, interval=0.02)
    wait_restart_running(cluster, "db2")
    proc.send_signal(signal.SIGKILL)  # mid-run, while db2 restarts
    proc.wait(timeout=30)
    run_id = journal(bastions.a)["run_id"]

    # While the dead holder's lease lives: refused, naming the holder.
    held = harestart("run", str(inv), "--yes", state_dir=bastions.b)
    # The premise, from the service (not the clock): the lease still lived after that run.
    assert etcd.leased_keys("100001", "coord-kill9"), "the lease ran out before the second try"
    assert held.returncode == 4, held.stdout + held.stderr
    assert names_pid(held.stderr, proc.pid) and HOSTNAME in held.stderr, held.stderr

    wait_for(
        "db2 back by itself",
        lambda: ready_count(cluster, "db2") == before["db2"] + 1 and cluster.sql("db2", "SELECT 1"),
        timeout=120,
    )
    wait_lock_free(etcd, inv, bastions.b, "coord-kill9", timeout=lease + 30)

    # The lease expired, the group is half done: refused, naming the bastion with the journal.
    refused = harestart("run", str(inv), "--yes", state_dir=bastions.b)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    for named in (HOSTNAME, str(bastions.a), run_id):
        assert named in refused.stderr, (named, refused.stderr)
    assert journals(bastions.b) == []
    assert snapshot(cluster) == {**before, "db2": before["db2"] + 1}  # nothing else restarted

    # Resume on the bastion that holds the journal finishes it; nothing restarts twice.
    done = harestart("resume", str(inv), "--yes", "--format", "json", state_dir=bastions.a)
    assert done.returncode == 0, done.stdout + done.stderr
    res = done.json()
    assert res["state"] == "ACTIVE" and res["resumed"] is True
    detail = next(
        s["detail"] for s in res["steps"] if s["host"] == "db2" and s["action"] == "restart_replica"
    )
    assert "not restarted again" in detail
    assert snapshot(cluster) == plus_one(before)
    assert cluster.mha_status()[0] == 0

    # The mark is gone: the other bastion may restart the group now.
    again = harestart("run", str(inv), "--yes", state_dir=bastions.b)
    assert again.returncode == 0, (again.stdout + again.stderr, etcd.dump())
    assert snapshot(cluster) == {n: c + 2 for n, c in before.items()}


def test_kill_9_in_the_source_step_the_other_bastion_exits_2_naming_the_run_then_resume(
    cluster: LabCluster, etcd: CoordService, bastions: Bastions, tmp_path: Path
) -> None:
    """#22: A dies while the source restarts, the replicas' IO threads stopped (detached) and
    MHA off. B's run is refused for A's unfinished run (exit 2, naming A's run, bastion, state
    directory and the resume to run there), not for the stopped IO threads (exit 3)."""
    group_id = "coord-kill9-source"
    inv = coord_inventory(cluster, tmp_path / "inv.yml", etcd.url, group_id=group_id)
    before = snapshot(cluster)
    log = bastions.a / "run.jsonl"
    proc = start_harestart(
        "run", str(inv), "--yes", "--detach-replicas", "--log-file", str(log), state_dir=bastions.a
    )
    wait_restart_running(cluster, "db1", timeout=300)  # the replicas were restarted first
    proc.send_signal(signal.SIGKILL)  # mid-run, while the source restarts
    proc.wait(timeout=30)
    run_id = journal(bastions.a)["run_id"]
    wait_for(
        "db1 back by itself",
        lambda: ready_count(cluster, "db1") == before["db1"] + 1 and cluster.sql("db1", "SELECT 1"),
        timeout=120,
    )
    # The premise: what B's health check sees (the run stopped these threads and died).
    for replica in ("db2", "db3"):
        assert cluster.replica_status(replica)["io_running"] == "No", replica
    assert cluster.mha_status()[0] != 0  # MHA stopped by A
    wait_lock_free(etcd, inv, bastions.b, group_id, timeout=LEASE + 30)

    refused = harestart("run", str(inv), "--yes", state_dir=bastions.b)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    resume = f"harestart resume {inv} --group {group_id}"
    for named in (run_id, HOSTNAME, str(bastions.a), resume, f"HARESTART_STATE_DIR={bastions.a}"):
        assert named in refused.stderr, (named, refused.stderr)
    assert "preflight refused" not in refused.stderr, refused.stderr
    assert journals(bastions.b) == []
    assert cluster.replica_status("db2")["io_running"] == "No"  # B changed nothing

    # The resume command it names, run on A's bastion, leaves the group ACTIVE.
    done = harestart("resume", str(inv), "--yes", "--format", "json", state_dir=bastions.a)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.json()["state"] == "ACTIVE" and done.json()["resumed"] is True
    assert snapshot(cluster) == plus_one(before)  # nothing restarted twice
    assert all(cluster.replicating(r) for r in ("db2", "db3"))
    assert cluster.mha_status()[0] == 0
    assert status_json(inv, bastions.b)["state"] == "ACTIVE"


def test_etcd_stopped_mid_run_stops_at_a_safe_point_and_resume_finishes_after_it_returns(
    cluster: LabCluster, bastions: Bastions, tmp_path: Path
) -> None:
    service = coord.start_etcd()  # its own: this test stops it
    try:
        _etcd_stopped_mid_run(cluster, service, bastions, tmp_path)
    except BaseException:
        service.save_logs(lab.ARTIFACTS_DIR / "test_etcd_stopped_mid_run" / service.name)
        raise
    finally:
        service.remove()


def _etcd_stopped_mid_run(
    cluster: LabCluster, service: CoordService, bastions: Bastions, tmp_path: Path
) -> None:
    inv = coord_inventory(cluster, tmp_path / "inv.yml", service.url, group_id="coord-etcd-down")
    before = snapshot(cluster)
    log = bastions.a / "run.jsonl"
    proc = start_harestart(
        "run", str(inv), "--yes", "--format", "json", "--log-file", str(log), state_dir=bastions.a
    )
    # Stopped as MHA is being stopped: the heartbeats fail from then on, and the run must stop
    # between two steps, long before it reaches the source.
    wait_for_event(
        log,
        lambda e: e.get("event") == "step.started" and e.get("step") == "stop_failover:mha",
        proc=proc,
    )
    service.stop()
    out = finish(proc)
    assert out.returncode == 1, out.stdout + out.stderr
    res = out.json()
    failure = res["failure"]
    assert "coordination lease lost" in failure["reason"], failure
    steps = {f"{s['action']}:{s['host']}" if s["host"] else s["action"]: s for s in res["steps"]}
    assert failure["step"] in steps and steps[failure["step"]]["status"] != "done", failure
    # The journal says why; MHA's state is reported (and true: still off).
    j = journal(bastions.a)
    assert j["finished"] is False and "coordination lease lost" in json.dumps(j)
    assert res["failover_enabled"] is False and "automatic failover is OFF" in failure["failover"]
    assert res["mha_after"] and cluster.mha_status()[0] == 2
    # Stopped between nodes, never in the middle of one: each restarted at most once, all up.
    mid = snapshot(cluster)
    assert all(mid[n] - before[n] in (0, 1) for n in before), (before, mid)
    assert all(cluster.sql(n.name, "SELECT 1") for n in cluster.db_nodes)
    assert mid["db1"] == before["db1"]  # the source comes last: not touched

    service.start()
    wait_lock_free(service, inv, bastions.a, "coord-etcd-down", timeout=LEASE + 30)
    done = harestart("resume", str(inv), "--yes", "--format", "json", state_dir=bastions.a)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.json()["state"] == "ACTIVE"
    assert snapshot(cluster) == plus_one(before)
    assert cluster.mha_status()[0] == 0


# --------------------------------------------------------------------------- two serve instances

TOKEN = "coordination-test-token"
ACCOUNT = "4321"
HA_ID = "coord-serve"


class Served(harestart_cli.Served):
    @property
    def ha(self) -> str:
        return self.url(f"/v1.0/{ACCOUNT}/ha/{HA_ID}")


@pytest.fixture
def serve_two(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []
    tokens = tmp_path / "tokens.json"
    # an operator's token: the test reads the lock holder, which a tenant's does not show (#21)
    tokens.write_text(json.dumps({TOKEN: {"operator": True}}))
    tokens.chmod(0o600)

    def start(inventory: Path, state: Path) -> Served:
        s = harestart_cli.start_serve(inventory, state_dir=state, tokens=tokens)
        started.append(s.proc)
        return Served(s.proc, s.port, s.log)

    yield start
    for proc in started:
        harestart_cli.stop_serve(proc)


def test_two_serve_instances_give_one_answer(
    cluster: LabCluster, etcd: CoordService, bastions: Bastions, tmp_path: Path, serve_two: Any
) -> None:
    inv = coord_inventory(cluster, tmp_path / "inv.yml", etcd.url, group_id=HA_ID, account=ACCOUNT)
    before = snapshot(cluster)
    one, other = serve_two(inv, bastions.a), serve_two(inv, bastions.b)
    http = requests.Session()
    http.headers.update({"X-Auth-Token": TOKEN, "Accept": "application/json"})

    def show(served: Served) -> dict[str, Any]:
        r = http.get(served.ha, timeout=60)
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()["ha_instance"]
        return doc

    assert show(one)["state"] == "ACTIVE" and show(other)["state"] == "ACTIVE"
    accepted = http.post(f"{one.ha}/action", json={"restart": {}}, timeout=60)
    assert accepted.status_code == 202, accepted.text

    # The other instance sees the run of the first through the lock: REBOOT, holder named.
    seen = wait_for(
        "REBOOT on the other instance",
        lambda: (d := show(other))["state"] == "REBOOT" and d,
        timeout=60,
        interval=0.1,
    )
    assert seen["lock"]["alive"] is True and names_pid(seen["lock"]["holder"], one.proc.pid)
    refused = http.post(f"{other.ha}/action", json={"restart": {}}, timeout=60)
    assert refused.status_code == 422, refused.text
    assert refused.json()["unprocessableEntity"]["code"] == 422

    def active() -> dict[str, Any] | None:
        d = show(one)
        return d if d["state"] == "ACTIVE" and d["last_restart"] else None

    after = wait_for("ACTIVE again", active, timeout=400, interval=0.5)
    assert after["last_restart"]["ok"] is True, after["last_restart"]
    assert show(other)["state"] == "ACTIVE" and show(other)["lock"] is None
    assert snapshot(cluster) == plus_one(before)  # one restart, not two
    assert cluster.mha_status()[0] == 0


# --------------------------------------------------------------------------- a second backend


def test_redis_backend_two_bastions_one_restarts_and_its_password_is_never_shown(
    cluster: LabCluster, redis_server: CoordService, bastions: Bastions, tmp_path: Path
) -> None:
    password = redis_server.password
    assert password is not None
    env = {PASSWORD_ENV: password}
    inv = coord_inventory(
        cluster,
        tmp_path / "inv.yml",
        redis_server.url,
        group_id="coord-redis",
        password_env=PASSWORD_ENV,
    )
    before = snapshot(cluster)
    first = run_past_preflight(inv, bastions.a, env=env)
    second = harestart("run", str(inv), "--yes", state_dir=bastions.b, env=env)
    assert second.returncode == 4, second.stdout + second.stderr
    assert names_pid(second.stderr, first.pid) and HOSTNAME in second.stderr, second.stderr
    status = harestart("status", str(inv), "--format", "json", state_dir=bastions.b, env=env)
    lock = status.json()["lock"]
    assert lock is not None and lock["alive"] is True and lock["backend"] == "redis", lock
    out = finish(first)
    assert out.returncode == 0, out.stderr
    assert snapshot(cluster) == plus_one(before)

    # With a wrong password the service refuses harestart: exit 3, the URL named, no secret.
    # (Slow: tooz's Redis driver retries a refused AUTH, a redis ConnectionError, 15 times;
    # about 55 s here.)
    wrong_password = lab._random_password()
    wrong = harestart(
        "run", str(inv), "--yes", state_dir=bastions.b, env={PASSWORD_ENV: wrong_password}
    )
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert redis_server.url in wrong.stderr, wrong.stderr

    for what, shown in (("first", out), ("second", second), ("status", status), ("wrong", wrong)):
        text = shown.stdout + shown.stderr
        assert password not in text and wrong_password not in text, what
    for state in (bastions.a, bastions.b):
        for f in state.rglob("*"):
            if f.is_file():
                text = f.read_text(errors="replace")
                assert password not in text and wrong_password not in text, f
    assert password not in json.dumps(redis_server.dump())
