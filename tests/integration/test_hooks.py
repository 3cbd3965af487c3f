"""Hooks on a real MariaDB lab group (1 source + 1 replica): they run on the bastion around
each node's restart, in order, with their environment (an allow-list: no secret of harestart's
reaches them, #21 probe 8); a failing ``before_node_restart`` stops the run before its node is
touched and is reported with its (scrubbed) output."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harestart.domain.hooks import HOOK_VARIABLES

from .conftest import ClusterFactory
from .harestart_cli import harestart, journal, log_events
from .lab import LabCluster, ready_count

pytestmark = pytest.mark.integration

# Writes its HARESTART_* environment to calls/<n>-<point>-<node>.env, one file per call, and
# its whole environment (NUL-separated: a value may span lines) to envs/<point>-<node>.
RECORD = """#!/bin/sh
n=$(ls calls | wc -l)
env | grep '^HARESTART_' | sort > "calls/$n-$HARESTART_HOOK-$HARESTART_NODE.env"
env -0 > "envs/$HARESTART_HOOK-$HARESTART_NODE"
echo "recorded $HARESTART_HOOK for $HARESTART_NODE"
"""

# Refuses to drain db2, printing (among other things) the MySQL password it happens to see.
REFUSE = """#!/bin/sh
if [ "$HARESTART_NODE" = db2 ]; then
    echo "draining $HARESTART_NODE from the proxy"
    echo "proxy refused; password was $(cat "$1")" >&2
    exit 7
fi
"""


def with_hooks(cluster: LabCluster, path: Path, hooks: dict[str, Any]) -> Path:
    inventory = cluster.write_inventory(path)
    doc = yaml.safe_load(inventory.read_text())
    doc["defaults"]["hooks"] = hooks
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inventory


def whole_env(path: Path) -> dict[str, str]:
    entries = path.read_bytes().decode().split("\0")
    return dict(e.split("=", 1) for e in entries if e)


def script(directory: Path, name: str, text: str) -> None:
    (directory / "hooks").mkdir(exist_ok=True)
    path = directory / "hooks" / name
    path.write_text(text)
    path.chmod(0o755)


def calls(directory: Path) -> list[tuple[str, dict[str, str]]]:
    files = sorted((directory / "calls").iterdir(), key=lambda p: int(p.name.split("-")[0]))
    out = []
    for f in files:
        env = dict(line.split("=", 1) for line in f.read_text().splitlines())
        out.append((f.name.split("-", 1)[1].removesuffix(".env"), env))
    return out


def test_hooks_run_around_each_restart_and_a_failing_one_stops_the_run(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    cluster = cluster_factory(1, flavor="mariadb")
    work = tmp_path / "inv"
    work.mkdir()
    (work / "calls").mkdir()
    (work / "envs").mkdir()
    script(work, "record.sh", RECORD)
    # Relative commands: they run in the inventory's directory (the CLI runs elsewhere).
    inventory = with_hooks(
        cluster,
        work / "inv.yml",
        {"before_node_restart": "hooks/record.sh", "after_node_restart": {
            "command": "hooks/record.sh", "timeout": 20}, "env_passthrough": ["PROXY_API"]},
    )  # fmt: skip
    # The MySQL password from harestart's environment (not the file), as on a bastion.
    doc = yaml.safe_load(inventory.read_text())
    doc["defaults"]["mysql"] = {
        **{k: v for k, v in doc["defaults"]["mysql"].items() if k != "password_file"},
        "password_env": "HARESTART_MYSQL_PASSWORD",
    }
    inventory.write_text(yaml.safe_dump(doc, sort_keys=False))
    token = "tok-b7e2c0d9-41f3-4a8e-9d5c"
    secrets = {
        "HARESTART_MYSQL_PASSWORD": cluster.admin_password,
        "HARESTART_TOKENS": f"{token}: '100001'",  # what serve --tokens-env would read
        "AWS_SECRET_ACCESS_KEY": "aws-secret-3f9a",  # anything else of the bastion's
    }
    allowed = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "PROXY_API": "10.0.0.9:9999"}
    log = tmp_path / "run.jsonl"
    out = harestart(
        "run", str(inventory), "--yes", "--format", "json", "--log-file", str(log),
        state_dir=tmp_path / "state", env={**secrets, **allowed},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.json()["ok"] is True

    # Probe 8: every hook saw the allow-list, its own variables and the passthrough; no secret.
    dumps = sorted((work / "envs").iterdir())
    assert [p.name for p in dumps] == [
        "after_node_restart-db1", "after_node_restart-db2",
        "before_node_restart-db1", "before_node_restart-db2",
    ]  # fmt: skip
    for dump in dumps:
        raw, env = dump.read_bytes().decode(), whole_env(dump)
        for name, value in secrets.items():
            assert name not in env and value not in raw, (dump.name, name)
        assert cluster.admin_password not in raw and token not in raw
        assert {k: env.get(k) for k in allowed} == allowed, dump.name
        assert env["PATH"] and env.get("HOME") == os.environ.get("HOME")
        assert {k for k in env if k.startswith("HARESTART_")} == set(HOOK_VARIABLES)
        inherited = {"PATH", "HOME", "TZ", "LANG"} | {k for k in env if k.startswith("LC_")}
        extra = set(env) - set(allowed) - set(HOOK_VARIABLES) - inherited
        assert extra <= {"PWD", "SHLVL", "_", "OLDPWD"}, extra  # what /bin/sh sets itself

    seen = calls(work)
    assert [name for name, _ in seen] == [
        "before_node_restart-db2",
        "after_node_restart-db2",
        "before_node_restart-db1",
        "after_node_restart-db1",
    ]
    run_ids = {env["HARESTART_RUN_ID"] for _, env in seen}
    assert run_ids == {journal(tmp_path / "state")["run_id"]}
    for name, env in seen:
        node = env["HARESTART_NODE"]
        assert env["HARESTART_HOOK"] == name.split("-")[0]
        assert env["HARESTART_ACCOUNT"] == "100001" and env["HARESTART_GROUP"] == "lab"
        assert env["HARESTART_NODE_HOST"] == cluster.node(node).address
        assert env["HARESTART_ROLE"] == ("source" if node == "db1" else "replica")
        assert env["HARESTART_OLD_SOURCE"] == env["HARESTART_NEW_SOURCE"] == "db1"
        assert env["HARESTART_STRATEGY"] == "restart"

    # Before each node's restart command, after it came back and its checks held (the run
    # log's order); each logged with its exit status, never its output.
    events = log_events(log)
    order = [
        (e["event"], e.get("point"), e.get("host"))
        for e in events
        if e["event"] == "hook.finished"
        or (e["event"] == "ssh.command" and cluster.restart_command in e.get("command", ""))
    ]
    assert [(ev, point) for ev, point, _ in order] == [
        ("hook.finished", "before_node_restart"),
        ("ssh.command", None),
        ("hook.finished", "after_node_restart"),
    ] * 2
    assert all(e["exit_status"] == 0 for e in events if e["event"] == "hook.finished")
    assert "recorded" not in log.read_text()
    passed = time.monotonic() - t0

    # A before_node_restart hook that fails on the replica: exit 1, the replica untouched.
    script(work, "refuse.sh", REFUSE)
    password_file = str(cluster.password_file.resolve())
    inventory = with_hooks(
        cluster, work / "inv.yml", {"before_node_restart": f"hooks/refuse.sh {password_file}"}
    )
    starts = ready_count(cluster, "db2")
    cluster.wait_mha("PING_OK")
    out = harestart("run", str(inventory), "--yes", "--format", "json",
                    state_dir=tmp_path / "state")  # fmt: skip
    assert out.returncode == 1, out.stderr
    result = out.json()
    failure = result["failure"]
    assert failure["step"] == "restart_replica:db2" and failure["host"] == "db2"
    reason = failure["reason"]
    assert reason.startswith(
        "hook before_node_restart for db2 failed: "
        f"`hooks/refuse.sh {password_file}` exited 7 after "
    )
    assert "  | draining db2 from the proxy\n  | proxy refused; password was ***" in reason
    assert cluster.admin_password not in out.stdout + out.stderr
    assert "db2 was not restarted" in failure["next_steps"][0]
    assert ready_count(cluster, "db2") == starts  # mysqld on db2 never restarted
    # MHA's state is reported: the group is healthy, so the failure policy started it again.
    assert failure["failover"] and "PING_OK" in result["mha_after"]
    assert result["failover_enabled"] is True and result["state"] == "ERROR"
    steps = {s["key"]: s for s in journal(tmp_path / "state")["steps"]}
    assert steps["restart_replica:db2"]["status"] == "failed"
    assert "hook before_node_restart for db2 failed" in steps["restart_replica:db2"]["detail"]
    print(
        f"first run (cluster + run with hooks) {passed:.0f} s, total {time.monotonic() - t0:.0f} s"
    )
