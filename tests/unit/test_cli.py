"""The CLI as a user runs it: a real process, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harestart import __version__

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harestart", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_version_and_help() -> None:
    v = run("--version")
    assert v.returncode == 0 and __version__ in v.stdout
    h = run("--help")
    assert h.returncode == 0 and "plan" in h.stdout and "Exit codes" in h.stdout


def test_plan_text_and_json_for_lab_inventory() -> None:
    text = run("plan", "inventories/lab.yml")
    assert text.returncode == 0, text.stderr
    assert "[stop_failover]" in text.stdout and "restart mysqld on source db1" in text.stdout
    js = run("plan", "inventories/lab.yml", "--format", "json")
    assert js.returncode == 0
    (doc,) = json.loads(js.stdout)
    assert doc["group"] == "lab" and next(s["action"] for s in doc["steps"]) == "preflight"


def test_bad_inventory_exits_2_with_every_problem_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - id: x\n    acount: 1\n")
    r = run("plan", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}:3: groups[0].acount: unknown key 'acount' (did you mean 'account'?)" in r.stderr
    assert "groups[0].source: required but missing" in r.stderr


def test_unknown_group_and_usage_errors_exit_2() -> None:
    r = run("plan", "inventories/lab.yml", "--group", "nope")
    assert r.returncode == 2 and "no group 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run("plan", "inventories/lab.yml", "--format", "xml")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_plan_never_needs_the_password(tmp_path: Path) -> None:
    r = run("plan", "inventories/example.yml", "--group", "6e3f8f53-a0ba-4bd2-a1b9-37c1f0e8d0a1")
    assert r.returncode == 0, r.stderr


def test_switchover_plan_needs_the_replication_account_and_says_no_switch_back(
    tmp_path: Path,
) -> None:
    lab = (REPO / "inventories" / "lab.yml").read_text()
    plain = lab.split("  replication:", 1)[0] + "  health:" + lab.split("  health:", 1)[1]
    inv = tmp_path / "inv.yml"
    inv.write_text(plain.replace("../lab/", str(REPO / "lab") + "/"))
    r = run("plan", str(inv), "--source-strategy", "switchover")
    assert r.returncode == 2 and "needs the replication account" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = run("plan", "inventories/lab.yml", "--source-strategy", "switchover", "--no-switch-back")
    assert r.returncode == 0, r.stderr
    assert "will END WITH db2 AS ITS SOURCE" in r.stderr
    assert "[switchover] switch the source role from db1 to db2" in r.stdout
    assert "switchover:db1" not in r.stdout and "`SET GLOBAL read_only = ON`" in r.stdout
    assert "super_read_only" not in r.stdout  # #22: in the words of the lab's `flavor: mariadb`
