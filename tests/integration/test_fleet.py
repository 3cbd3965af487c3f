"""Fleet mode (#12): ``run --all`` on three bastions at once, one of them killed mid-way.

Six real MariaDB groups (1 source + 1 replica + MHA each) in one inventory whose
``defaults.coordination`` is a real etcd; three ``harestart run --all`` processes with separate
state directories stand in for three bastions. One starts first and the other two join once
it restarts a node of its first group; then it is killed (SIGKILL), mid-group. Every group must end restarted exactly once (each mysqld's "ready for
connections" count grows by exactly one), the survivors' JSON results must cover every group,
and the killed bastion's half-done group (refused to the survivors by its unfinished mark) is
finished by ``resume`` from the killed bastion's state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ClusterFactory
from .coord import CoordService
from .harestart_cli import finish, harestart, start_harestart, wait_for_event
from .lab import LabCluster, ready_count

pytestmark = pytest.mark.integration

LEASE = 5  # seconds
GROUPS = [f"g{i}" for i in range(1, 7)]


def fleet_inventory(clusters: dict[str, LabCluster], path: Path, url: str) -> Path:
    """One inventory of every cluster (each group with its own connection settings)."""
    groups = []
    for gid, c in clusters.items():
        doc = yaml.safe_load(
            c.write_inventory(path.parent / f"{gid}.yml", group_id=gid).read_text()
        )
        g = doc["groups"][0]
        for key in ("ssh", "mysql", "health", "restart_command"):
            g[key] = doc["defaults"][key]
        groups.append(g)
    doc = {"defaults": {"coordination": {"url": url, "lease": LEASE}}, "groups": groups}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def counts(clusters: dict[str, LabCluster]) -> dict[tuple[str, str], int]:
    return {
        (gid, n.name): ready_count(c, n.name) for gid, c in clusters.items() for n in c.db_nodes
    }


def test_three_bastions_restart_six_groups_exactly_once_with_one_killed(
    cluster_factory: ClusterFactory, etcd: CoordService, tmp_path: Path
) -> None:
    began = time.monotonic()
    # The first cluster alone (it makes the session's keys and image), the others in parallel.
    started = [cluster_factory(1, name=f"fleet{GROUPS[0]}")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        started += pool.map(lambda gid: cluster_factory(1, name=f"fleet{gid}"), GROUPS[1:])
    clusters = dict(zip(GROUPS, started, strict=True))
    setup_s = time.monotonic() - began
    inv = fleet_inventory(clusters, tmp_path / "fleet.yml", etcd.url)
    before = counts(clusters)

    states = {b: tmp_path / b for b in ("b1", "b2", "b3")}
    for d in states.values():
        d.mkdir(mode=0o700)
    logs = {b: tmp_path / f"{b}.jsonl" for b in states}

    def start(b: str) -> subprocess.Popen[str]:
        return start_harestart(
            "run", str(inv), "--all", "--yes", "--format", "json", "--log-file", str(logs[b]),
            state_dir=states[b],
        )  # fmt: skip

    run_began = time.monotonic()
    # b3 starts first and b1, b2 join once it is restarting a node of its first group: started
    # together, a loaded machine let b1 and b2 take all six groups before b3 had joined (CI).
    procs = {"b3": start("b3")}
    victim = procs["b3"]
    event = wait_for_event(
        logs["b3"], lambda e: e.get("event") == "restart.command", timeout=240, proc=victim
    )
    procs.update({b: start(b) for b in ("b1", "b2")})
    # b3 dies (kill -9) in the middle of its first group, while the others join the round.
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    half_done = str(event["group"])

    outs = {b: finish(procs[b], timeout=400) for b in ("b1", "b2")}
    run_s = time.monotonic() - run_began
    docs: dict[str, Any] = {}
    for b, out in outs.items():
        assert out.returncode in (0, 1), (b, out.returncode, out.stderr[-3000:])
        docs[b] = out.json()
    seen: dict[str, list[str]] = {}
    for b, doc in docs.items():
        fleet = doc["fleet"]
        assert fleet["complete"], (b, fleet)
        covered = set(fleet["restarted"]) | {x["group"] for x in fleet["skipped"]}
        covered |= {x["group"] for x in fleet["failed"]}
        assert covered == {f"100001/{g}" for g in GROUPS}, (b, fleet)
        for k in fleet["restarted"]:
            seen.setdefault(k, []).append(b)
        assert {r["group"] for r in doc["results"]} >= {k.split("/")[1] for k in fleet["restarted"]}
    assert all(len(v) == 1 for v in seen.values()), seen  # nothing restarted twice
    # The killed bastion's half-done group: refused to the survivors (its unfinished mark),
    # never restarted blindly; unless b3 was killed after its journal finished, it is failed.
    blocked = {
        x["group"]
        for doc in docs.values()
        for x in doc["fleet"]["failed"]
        if "blocked" in x["why"] or "unfinished" in x["why"]
    }
    assert blocked <= {f"100001/{half_done}"}, docs
    assert all(x["group"] in blocked for d in docs.values() for x in d["fleet"]["failed"])
    resumed_s = 0.0
    if blocked:
        assert f"100001/{half_done}" not in seen
        t = time.monotonic()
        out = harestart(
            "resume",
            str(inv),
            "--group",
            half_done,
            "--yes",
            "--format",
            "json",
            state_dir=states["b3"],
            timeout=300,
        )
        resumed_s = time.monotonic() - t
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.json()["ok"]
    after = counts(clusters)
    assert after == {k: v + 1 for k, v in before.items()}, (before, after)  # exactly once each
    # MHA monitors every group again (harestart's last gate saw PING_OK; on a loaded two-core
    # machine with 18 containers a ping may fail for a moment afterwards: PING_FAILING, 20).
    for c in clusters.values():
        c.wait_mha("PING_OK", timeout=60)
    print(f"fleet: setup {setup_s:.0f} s, run {run_s:.0f} s, resume {resumed_s:.0f} s")
